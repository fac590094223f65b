"""Rancher, served on its hostname with a certificate from the stack's ClusterIssuer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi

from components import versions
from components.cluster_access import ClusterAccess
from components.password import GeneratedPassword
from components.platform.base import ChartSource, chart_release, owned_namespace
from components.platform.cert_manager import PRODUCTION_ISSUER

# The chart refuses any other namespace or release name.
NAMESPACE = "cattle-system"
RELEASE_NAME = "rancher"


@dataclass(frozen=True)
class RancherArgs:
    """Rancher's hostname, issuer and size."""

    hostname: pulumi.Input[str]
    cluster_issuer: str
    """ClusterIssuer that signs `tls-rancher-ingress` through the Ingress annotation."""
    production: bool = False
    """Three replicas kept on different nodes; one otherwise."""
    depends_on: Sequence[pulumi.Resource] = field(default_factory=tuple)
    """The issuer objects: the Ingress annotation names one that must exist."""
    charts: ChartSource = ChartSource()
    """Where the release's chart comes from (`platform:charts`)."""

    def __post_init__(self) -> None:
        if not self.cluster_issuer:
            raise ValueError("cluster_issuer is required: Rancher's Ingress certificate needs one")


def release_values(args: RancherArgs, bootstrap_password: pulumi.Input[str]) -> dict[str, Any]:
    return {
        "hostname": args.hostname,
        "bootstrapPassword": bootstrap_password,
        "replicas": 3 if args.production else 1,
        # Agents (downstream clusters) check Rancher's certificate against the system store:
        # right for Let's Encrypt production. A staging or private CA certificate would need
        # privateCA and its CA in `tls-ca` (docs/platform.md).
        "agentTLSMode": "system-store" if args.cluster_issuer == PRODUCTION_ISSUER else "strict",
        # Three replicas on one node would die together; "required" refuses to co-locate them.
        "antiAffinity": "required" if args.production else "preferred",
        "ingress": {
            # `secret`: Rancher uses tls-rancher-ingress, which cert-manager's ingress shim fills
            # from the annotated issuer; Rancher's own cert-manager objects stay unused.
            "tls": {"source": "secret"},
            "extraAnnotations": {"cert-manager.io/cluster-issuer": args.cluster_issuer},
        },
    }


class Rancher(pulumi.ComponentResource):
    """The Rancher chart in cattle-system with a generated bootstrap password."""

    url: pulumi.Output[str]
    bootstrap_password: pulumi.Output[str]
    """First login's password (secret); Rancher asks to change it."""

    def __init__(
        self,
        name: str,
        access: ClusterAccess,
        args: RancherArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("platform:rancher:Rancher", name, None, opts)
        password = GeneratedPassword(
            f"{name}-bootstrap-password", length=24, opts=pulumi.ResourceOptions(parent=self)
        )
        self.bootstrap_password = pulumi.Output.secret(password.result)
        namespace = owned_namespace(f"{name}-namespace", self, access, NAMESPACE)
        self.release = chart_release(
            f"{name}-release",
            self,
            access,
            versions.RANCHER,
            namespace=namespace,
            charts=args.charts,
            release_name=RELEASE_NAME,
            values=release_values(args, self.bootstrap_password),
            depends_on=args.depends_on,
        )
        self.url = pulumi.Output.concat("https://", args.hostname)
        self.register_outputs({"url": self.url, "bootstrapPassword": self.bootstrap_password})
