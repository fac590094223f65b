"""Vault (or OpenBao) on Raft, TLS from a private CA, auto-unsealed by AWS KMS on AWS, then
initialised and configured by `VaultBootstrap` through the API server's service proxy.

Production runs three Raft voters on different nodes; other stacks one. On AWS the `awskms` seal
uses the cluster's KMS key with the node role's credentials from IMDS; only the server role may
use the key, so Vault is pinned to the control-plane nodes. Without AWS (the local stack) Vault
uses the Shamir seal: the bootstrap keeps the unseal keys as secret outputs and unseals on `up`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pulumi
import pulumi_kubernetes as k8s

from components import versions
from components.cluster_access import AwsFacts, ClusterAccess
from components.platform.base import chart_release, create_chain, k8s_opts
from components.platform.cert_manager import private_ca
from components.vault.bootstrap import platform_spec
from components.vault.provider import VaultBootstrap

CONTROL_PLANE_SELECTOR = {"node-role.kubernetes.io/control-plane": "true"}
PORT = 8200
TLS_SECRET = "vault-server-tls"
CA_NAME = "vault-ca"


@dataclass(frozen=True)
class Flavor:
    """What differs between the Vault and OpenBao charts for the same layout."""

    name: str
    """Release, Service and namespace name."""
    chart: versions.ChartPin
    env_prefix: str
    """Prefix of the server's environment variables (VAULT_CACERT / BAO_CACERT)."""

    @property
    def root(self) -> str:
        return f"/{self.name}"


FLAVORS = {
    "vault": Flavor("vault", versions.VAULT, "VAULT"),
    "openbao": Flavor("openbao", versions.OPENBAO, "BAO"),
}


@dataclass(frozen=True)
class VaultArgs:
    """Which server, how many replicas, and what the bootstrap configures."""

    flavor: Literal["vault", "openbao"] = "vault"
    production: bool = False
    app_namespaces: Sequence[str] = field(default_factory=tuple)
    """Namespaces that get their own policy and role (`apps-<ns>`) besides External Secrets'."""
    depends_on: Sequence[pulumi.Resource] = field(default_factory=tuple)
    """cert-manager's Release: the TLS chain is made of its custom resources."""

    def __post_init__(self) -> None:
        if self.flavor not in FLAVORS:
            raise ValueError(f"flavor {self.flavor!r} must be one of {sorted(FLAVORS)}")

    @property
    def replicas(self) -> int:
        return 3 if self.production else 1


def tls_paths(flavor: Flavor) -> dict[str, str]:
    folder = f"{flavor.root}/userconfig/{TLS_SECRET}"
    return {
        "cert": f"{folder}/tls.crt",
        "key": f"{folder}/tls.key",
        "ca": f"{folder}/ca.crt",
        "folder": folder,
    }


def server_config(flavor: Flavor, replicas: int, seal: tuple[str, str] | None) -> str:
    """The server's HCL: TLS listener, Raft joined through the pods' stable names, and the
    `awskms` seal when `seal` is (region, key id)."""
    tls = tls_paths(flavor)
    joins = "".join(
        f'  retry_join {{\n    leader_api_addr = "https://{flavor.name}-{i}.{flavor.name}-internal:{PORT}"\n'
        f'    leader_ca_cert_file = "{tls["ca"]}"\n  }}\n'
        for i in range(replicas)
    )
    hcl = (
        "ui = true\n"
        # Containers cannot mlock without IPC_LOCK; Raft's own docs advise disabling it.
        "disable_mlock = true\n"
        'listener "tcp" {\n'
        f'  address = "[::]:{PORT}"\n'
        f'  cluster_address = "[::]:{PORT + 1}"\n'
        f'  tls_cert_file = "{tls["cert"]}"\n'
        f'  tls_key_file = "{tls["key"]}"\n'
        "}\n"
        f'storage "raft" {{\n  path = "{flavor.root}/data"\n{joins}}}\n'
        'service_registration "kubernetes" {}\n'
    )
    if seal:
        region, key_id = seal
        hcl += f'seal "awskms" {{\n  region = "{region}"\n  kms_key_id = "{key_id}"\n}}\n'
    return hcl


def release_values(args: VaultArgs, seal: tuple[str, str] | None) -> dict[str, Any]:
    """Chart values; `seal` is (region, KMS key id) on AWS, None for the Shamir seal."""
    flavor = FLAVORS[args.flavor]
    tls = tls_paths(flavor)
    server: dict[str, Any] = {
        "ha": {
            "enabled": True,
            "replicas": args.replicas,
            "raft": {
                "enabled": True,
                "setNodeId": True,
                "config": server_config(flavor, args.replicas, seal),
            },
        },
        "dataStorage": {"enabled": True, "size": "10Gi", "mountPath": f"{flavor.root}/data"},
        # The CLI in the pod (readiness probe, `operator` commands) verifies the listener.
        "extraEnvironmentVars": {f"{flavor.env_prefix}_CACERT": tls["ca"]},
        "volumes": [{"name": "tls", "secret": {"secretName": TLS_SECRET}}],
        "volumeMounts": [{"name": "tls", "mountPath": tls["folder"], "readOnly": True}],
        # Kubernetes auth reviews service account tokens with Vault's own account.
        "authDelegator": {"enabled": True},
    }
    if args.production:
        server["affinity"] = {
            "podAntiAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "labelSelector": {
                            "matchLabels": {
                                "app.kubernetes.io/name": flavor.name,
                                "component": "server",
                            }
                        },
                        "topologyKey": "kubernetes.io/hostname",
                    }
                ]
            }
        }
    if seal:
        server["nodeSelector"] = CONTROL_PLANE_SELECTOR
    return {
        "global": {"enabled": True, "tlsDisable": False},
        # Apps get secrets through External Secrets, not the sidecar injector.
        "injector": {"enabled": False},
        "server": server,
        "ui": {"enabled": True},
    }


def tls_certificate(flavor: Flavor, namespace: str) -> dict[str, Any]:
    """The listener's certificate: the Services, every pod's stable name, and localhost."""
    service = f"{namespace}.svc"
    names = [
        flavor.name,
        f"{flavor.name}.{namespace}",
        f"{flavor.name}.{service}",
        f"{flavor.name}.{service}.cluster.local",
        f"{flavor.name}-active.{service}",
        f"*.{flavor.name}-internal",
        f"*.{flavor.name}-internal.{service}",
    ]
    return {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {"name": TLS_SECRET, "namespace": namespace},
        "spec": {
            "secretName": TLS_SECRET,
            "dnsNames": names,
            "ipAddresses": ["127.0.0.1"],
            "privateKey": {"algorithm": "ECDSA", "size": 256},
            "issuerRef": {"name": CA_NAME, "kind": "Issuer", "group": "cert-manager.io"},
        },
    }


def seal_of(aws_facts: AwsFacts | None) -> pulumi.Output[tuple[str, str] | None]:
    if aws_facts is None:
        return pulumi.Output.from_input(None)
    return pulumi.Output.from_input(aws_facts.kms_key_arn).apply(
        lambda arn: (aws_facts.region, arn)
    )


class Vault(pulumi.ComponentResource):
    """The secrets server, its TLS chain and its bootstrap."""

    namespace: str
    service: str
    address: str
    """In-cluster URL (`https://vault.vault.svc:8200`)."""
    ca_secret: str
    """Secret in `namespace` whose `ca.crt` verifies `address`."""
    release: pulumi.Resource
    bootstrap: pulumi.Resource
    root_token: pulumi.Output[str]
    keys: pulumi.Output[list[str]]

    def __init__(
        self,
        name: str,
        access: ClusterAccess,
        args: VaultArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("platform:vault:Vault", name, None, opts)
        flavor = FLAVORS[args.flavor]
        self.namespace = self.service = flavor.name
        self.address = f"https://{flavor.name}.{self.namespace}.svc:{PORT}"
        self.ca_secret = TLS_SECRET
        # The namespace comes first: the certificate must exist before the pods that mount it.
        namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata={"name": self.namespace},
            opts=k8s_opts(self, access, *args.depends_on),
        )
        chain = private_ca(CA_NAME, self.namespace, cluster_scoped=False)
        chain.append(tls_certificate(flavor, self.namespace))
        certificates = create_chain(name, self, access, chain, namespace)
        self.release = chart_release(
            f"{name}-release",
            self,
            access,
            flavor.chart,
            namespace=self.namespace,
            release_name=flavor.name,
            values=seal_of(access.aws).apply(lambda seal: release_values(args, seal)),
            # Pods stay unready until initialised and unsealed, which the bootstrap does; waiting
            # here would time out. The bootstrap reaches the unready pod through the pod proxy.
            skip_await=True,
            depends_on=[certificates[-1]],
        )
        bootstrap = VaultBootstrap(
            f"{name}-bootstrap",
            api_url=access.api_url,
            ca_pem=access.ca_pem,
            client_cert_pem=access.client_cert_pem,
            client_key_pem=access.client_key_pem,
            spec=platform_spec(
                args.app_namespaces,
                seal="auto" if access.aws else "shamir",
                vault_namespace=self.namespace,
            ),
            namespace=self.namespace,
            # The first pod, not the load-balanced service: in HA the others join it through
            # retry_join, and a request landing on a pod that has not joined yet would fail init.
            target=f"{flavor.name}-0",
            target_kind="pods",
            port=PORT,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[access.ready, self.release]),
        )
        self.bootstrap = bootstrap
        self.root_token = pulumi.Output.secret(bootstrap.root_token)
        self.keys = pulumi.Output.secret(bootstrap.keys)
        self.register_outputs(
            {"address": self.address, "rootToken": self.root_token, "keys": self.keys}
        )
