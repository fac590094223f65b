"""An existing cluster (k3d, kind...) for the local stack: no AWS, same platform components."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.cluster_access import ClusterAccess
from components.config import LocalConfig
from components.k3s.readiness import ApiReadiness


@dataclass
class ExistingClusterArgs:
    config: LocalConfig
    """`platform:local` of the stack."""


class ExistingCluster(pulumi.ComponentResource):
    """Reaches a running cluster through a kubeconfig, behind the same readiness gate as AWS."""

    access: ClusterAccess

    def __init__(
        self, name: str, args: ExistingClusterArgs, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("platform:local:ExistingCluster", name, None, opts)
        cfg = args.config
        # The kubeconfig is read when the gate runs, not when the program starts, so a preview
        # works on a machine without the cluster and the file's contents stay out of the inputs.
        ready = ApiReadiness(
            f"{name}-ready",
            kubeconfig_path=cfg.kubeconfig,
            context=cfg.context,
            timeout_seconds=120,
            opts=pulumi.ResourceOptions(parent=self),
        )
        kubeconfig = pulumi.Output.secret(ready.kubeconfig)
        provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=kubeconfig,
            context=cfg.context,
            cluster_identifier=name,
            enable_server_side_apply=True,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[ready]),
        )
        self.access = ClusterAccess(
            name=name,
            provider=provider,
            api_url=ready.api_url,
            ca_pem=ready.ca_pem,
            client_cert_pem=ready.client_cert_pem,
            client_key_pem=pulumi.Output.secret(ready.client_key_pem),
            kubeconfig=kubeconfig,
            ingress_ip=pulumi.Output.from_input(cfg.ingress_ip),
            ingress_ips=pulumi.Output.from_input([cfg.ingress_ip]),
            ready=ready,
        )
        self.register_outputs({"apiUrl": ready.api_url, "ingressIp": cfg.ingress_ip})
