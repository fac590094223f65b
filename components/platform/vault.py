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
from components.cluster_access import (
    CONTROL_PLANE_SELECTOR,
    SERVER_TOLERATIONS,
    AwsFacts,
    ClusterAccess,
)
from components.platform import sizing
from components.platform.base import (
    IGNORE_ANNOTATION,
    PULL_POLICY,
    SINGLE_REPLICA_EXEMPTION,
    ChartSource,
    chart_release,
    create_chain,
    custom_resource,
    k8s_opts,
)
from components.platform.cert_manager import INGRESS_CLASS, private_ca
from components.vault.bootstrap import platform_spec
from components.vault.provider import VaultBootstrap

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
    binary: str
    """The server process's name (what the TLS reloader signals)."""

    @property
    def root(self) -> str:
        return f"/{self.name}"


FLAVORS = {
    "vault": Flavor("vault", versions.VAULT, "VAULT", "vault"),
    "openbao": Flavor("openbao", versions.OPENBAO, "BAO", "bao"),
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
    hostname: pulumi.Input[str] | None = None
    """Public name of the UI and API (an Ingress through Traefik); None: in-cluster only."""
    cluster_issuer: str | None = None
    """ClusterIssuer of the public name's certificate."""
    allowed_cidrs: Sequence[str] = ()
    """Client CIDRs Traefik lets through to the public name (`platform:services.vaultIngress`)."""
    revoke_root: bool = False
    """Hand over from the root token to a scoped one (`platform:services.vaultRevokeRoot`)."""
    charts: ChartSource = ChartSource()
    """Where the release's chart comes from (`platform:charts`)."""

    def __post_init__(self) -> None:
        if (self.hostname is None) != (self.cluster_issuer is None):
            raise ValueError("hostname and cluster_issuer go together (the Ingress needs both)")
        if (self.hostname is None) != (not self.allowed_cidrs):
            raise ValueError(
                "hostname and allowed_cidrs go together: Vault's login is public only for the "
                "listed sources (platform:services.vaultIngress.allowedCidrs)"
            )
        if self.flavor not in FLAVORS:
            raise ValueError(f"flavor {self.flavor!r} must be one of {sorted(FLAVORS)}")

    @property
    def replicas(self) -> int:
        return sizing.replicas("vault", "server", sizing.size_of(self.production))


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


RELOADER_IMAGE = "busybox:1.37.0"
SERVER_UID = 100
"""The user both images run the server as; only that user (or root) may signal it."""


SERVER_SECURITY_CONTEXT = {
    "pod": {
        "runAsNonRoot": True,
        "runAsUser": SERVER_UID,
        "runAsGroup": 1000,
        "fsGroup": 1000,
        "seccompProfile": {"type": "RuntimeDefault"},
    },
    "container": {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    },
}
"""The chart's defaults (user 100, group 1000) plus what Pod Security "restricted" asks."""


def tls_reloader(flavor: Flavor, cert: str | None = None, interval: float = 60) -> dict[str, Any]:
    """A sidecar that sends SIGHUP when cert-manager renews the listener's certificate: the server
    reads its certificate only at start and on SIGHUP, and the chart's OnDelete update strategy
    never restarts the pods, so without it the listener would expire."""
    cert = cert or f"{tls_paths(flavor)['folder']}/tls.crt"
    script = (
        f'last=$(md5sum "{cert}")\n'
        f"while sleep {interval:g}; do\n"
        f'  now=$(md5sum "{cert}")\n'
        f'  if [ "$now" != "$last" ] && pkill -HUP -x {flavor.binary}; then last=$now; fi\n'
        "done\n"
    )
    return {
        "name": "tls-reloader",
        "image": RELOADER_IMAGE,
        "imagePullPolicy": PULL_POLICY,
        "command": ["sh", "-c", script],
        "securityContext": {
            "runAsUser": SERVER_UID,
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "resources": sizing.resources("vault", "tls-reloader", "small"),
        "volumeMounts": [
            {"name": "tls", "mountPath": tls_paths(flavor)["folder"], "readOnly": True}
        ],
        # Vault's Services select the whole pod: the sidecar is ready once the certificate is
        # mounted, and leaves with the server.
        "readinessProbe": {"exec": {"command": ["test", "-s", cert]}, "periodSeconds": 10},
        "lifecycle": {"preStop": {"sleep": {"seconds": 5}}},
    }


def allow_list_middleware(flavor: Flavor, namespace: str, cidrs: Sequence[str]) -> dict[str, Any]:
    """Traefik answers 403 to any client outside `cidrs` before a request reaches Vault."""
    return {
        "apiVersion": "traefik.io/v1alpha1",
        "kind": "Middleware",
        "metadata": {"name": f"{flavor.name}-allow-list", "namespace": namespace},
        "spec": {"ipAllowList": {"sourceRange": list(cidrs)}},
    }


def ingress_values(flavor: Flavor, namespace: str, hostname: str, issuer: str) -> dict[str, Any]:
    """The public Ingress to the active node behind the allow-list, and how Traefik reaches
    Vault's TLS listener."""
    transport = f"{namespace}-{flavor.name}@kubernetescrd"
    allow_list = f"{namespace}-{flavor.name}-allow-list@kubernetescrd"
    backend = {
        # Traefik speaks HTTPS to the listener and verifies it with the private CA.
        "traefik.ingress.kubernetes.io/service.serversscheme": "https",
        "traefik.ingress.kubernetes.io/service.serverstransport": transport,
    }
    return {
        "ingress": {
            "enabled": True,
            "activeService": True,
            "ingressClassName": INGRESS_CLASS,
            "annotations": {
                "cert-manager.io/cluster-issuer": issuer,
                "traefik.ingress.kubernetes.io/router.middlewares": allow_list,
            },
            "hosts": [{"host": hostname, "paths": []}],
            "tls": [{"secretName": f"{flavor.name}-ingress-tls", "hosts": [hostname]}],
        },
        "service": {"annotations": backend, "active": {"annotations": backend}},
    }


def servers_transport(flavor: Flavor, namespace: str) -> dict[str, Any]:
    """Traefik's view of the listener: its name in the certificate and the CA that signed it."""
    return {
        "apiVersion": "traefik.io/v1alpha1",
        "kind": "ServersTransport",
        "metadata": {"name": flavor.name, "namespace": namespace},
        "spec": {
            "serverName": f"{flavor.name}-active.{namespace}.svc",
            "rootCAs": [{"secret": TLS_SECRET}],
        },
    }


def release_values(
    args: VaultArgs, seal: tuple[str, str] | None, hostname: str | None = None
) -> dict[str, Any]:
    """Chart values; `seal` is (region, KMS key id) on AWS, None for the Shamir seal; with a
    `hostname`, the public Ingress."""
    flavor = FLAVORS[args.flavor]
    tls = tls_paths(flavor)
    size = sizing.size_of(args.production)
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
        # The reloader must see the server's process to signal it.
        "shareProcessNamespace": True,
        "extraContainers": [tls_reloader(flavor)],
        "resources": sizing.resources("vault", "server", size),
        "statefulSet": {"securityContext": SERVER_SECURITY_CONTEXT},
        "image": {"pullPolicy": PULL_POLICY},
        # Alive while the listener answers: a sealed or uninitialised server answers 204 here,
        # so the probe never restarts one that waits for the bootstrap or its seal.
        "livenessProbe": {
            "enabled": True,
            "path": "/v1/sys/health?standbyok=true&sealedcode=204&uninitcode=204",
        },
    }
    # The server writes only its Raft data (a volume) and the config the chart's start command
    # copies to /tmp, so the image runs with a read-only root filesystem and /tmp in memory.
    server["volumes"].append({"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}})
    server["volumeMounts"].append({"name": "tmp", "mountPath": "/tmp"})
    if size == "small":
        server["annotations"] = {IGNORE_ANNOTATION: SINGLE_REPLICA_EXEMPTION}
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
        server["tolerations"] = SERVER_TOLERATIONS
    if hostname is not None:
        assert args.cluster_issuer is not None
        server |= ingress_values(flavor, flavor.name, hostname, args.cluster_issuer)
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
    url: pulumi.Output[str] | None
    """Public https URL of the UI and API; None without a hostname."""
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
        self.url = None
        before_release: list[pulumi.Resource] = [certificates[-1]]
        if args.hostname is not None:
            # Traefik's CRDs come with K3s (and k3d); the transport must exist before the Ingress
            # routes to the listener, and it reads the CA from the TLS Secret.
            custom_resource(
                f"{name}-servers-transport",
                self,
                access,
                servers_transport(flavor, self.namespace),
                certificates[-1],
            )
            # Before the Ingress: Traefik does not serve a router whose middleware is missing.
            before_release.append(
                custom_resource(
                    f"{name}-allow-list",
                    self,
                    access,
                    allow_list_middleware(flavor, self.namespace, args.allowed_cidrs),
                    namespace,
                )
            )
            self.url = pulumi.Output.concat("https://", args.hostname)
        self.release = chart_release(
            f"{name}-release",
            self,
            access,
            flavor.chart,
            namespace=namespace,
            charts=args.charts,
            release_name=flavor.name,
            values=pulumi.Output.all(seal_of(access.aws), args.hostname).apply(
                lambda a: release_values(args, a[0], a[1])
            ),
            # Pods stay unready until initialised and unsealed, which the bootstrap does; waiting
            # here would time out. The bootstrap reaches the unready pod through the pod proxy.
            skip_await=True,
            depends_on=before_release,
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
                revoke_root=args.revoke_root,
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
            {
                "address": self.address,
                "url": self.url,
                "rootToken": self.root_token,
                "keys": self.keys,
            }
        )
