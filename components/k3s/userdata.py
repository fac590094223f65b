"""User data (cloud-init) of the K3s nodes. Nothing secret goes in here: user data is readable
through IMDS by every pod on the node and through the EC2 API; secrets come from Secrets Manager
at boot."""

from __future__ import annotations

import base64
import gzip
import shlex
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from components import versions
from components.cluster_access import SERVER_TAINT

USER_DATA_LIMIT = 16 * 1024
"""EC2 rejects user data above 16 KB."""
BOOT_SCRIPT = Path(__file__).with_name("boot.sh").read_text()
BOOT_SCRIPT_PATH = "/usr/local/sbin/platform-boot"


def packed(text: str) -> str:
    """gzip (reproducible: no timestamp) and base64 in 76-column lines, for `encoding: gz+b64`.
    The boot script is most of the user data and compresses to a third: packed, every node
    kind keeps well under EC2's limit."""
    encoded = base64.b64encode(gzip.compress(text.encode(), mtime=0)).decode()
    return "\n".join(textwrap.wrap(encoded, 76)) + "\n"


# CIS hardening guide for K3s: sysctls that protect-kernel-defaults requires to be set.
KUBELET_SYSCTLS = """\
vm.panic_on_oom=0
vm.overcommit_memory=1
kernel.panic=10
kernel.panic_on_oops=1
"""

# Baseline is enforced everywhere (platform charts such as Rancher and NodeLocal DNS need host
# access); restricted is audited and warned about, and app namespaces opt in to enforcing it with
# the pod-security.kubernetes.io/enforce label.
PSA_CONFIG = {
    "apiVersion": "apiserver.config.k8s.io/v1",
    "kind": "AdmissionConfiguration",
    "plugins": [
        {
            "name": "PodSecurity",
            "configuration": {
                "apiVersion": "pod-security.admission.config.k8s.io/v1",
                "kind": "PodSecurityConfiguration",
                "defaults": {
                    "enforce": "baseline",
                    "enforce-version": "latest",
                    "audit": "restricted",
                    "audit-version": "latest",
                    "warn": "restricted",
                    "warn-version": "latest",
                },
                "exemptions": {
                    "usernames": [],
                    "runtimeClasses": [],
                    "namespaces": ["kube-system"],
                },
            },
        }
    ],
}

# Metadata for everything, never request bodies: Secrets must not land in the audit log.
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "None", "users": ["system:kube-proxy"]},
        {"level": "None", "nonResourceURLs": ["/healthz*", "/readyz*", "/livez*", "/version"]},
        {"level": "Metadata"},
    ],
}

SERVER_DIR = "/var/lib/rancher/k3s/server"
K3S_RELEASES = "https://github.com/k3s-io/k3s/releases/download"
TLS_CIPHERS = ",".join(
    [
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
    ]
)
KUBELET_ARGS = ["streaming-connection-idle-timeout=5m", f"tls-cipher-suites={TLS_CIPHERS}"]

CREDENTIAL_PROVIDER_DIR = "/var/lib/rancher/credentialprovider"
# containerd cannot pull from ECR with the node role alone: the kubelet asks this plugin for a
# short-lived registry token, which it gets with the node role's ecr:GetAuthorizationToken.
ECR_CREDENTIAL_PROVIDER_CONFIG = {
    "apiVersion": "kubelet.config.k8s.io/v1",
    "kind": "CredentialProviderConfig",
    "providers": [
        {
            "name": "ecr-credential-provider",
            "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
            "matchImages": ["*.dkr.ecr.*.amazonaws.com", "*.dkr.ecr.*.amazonaws.com.cn"],
            "defaultCacheDuration": "12h",
        }
    ],
}
ECR_KUBELET_ARGS = [
    f"image-credential-provider-bin-dir={CREDENTIAL_PROVIDER_DIR}/bin",
    f"image-credential-provider-config={CREDENTIAL_PROVIDER_DIR}/config.yaml",
]


GOARCH = {"x86_64": "amd64", "arm64": "arm64"}


@dataclass(frozen=True)
class Download:
    """A file a node fetches at boot and checks before it runs it."""

    url: str
    sha256: str
    """Hex digest; empty means the publisher's `<url>.sha256` file is the reference."""


def k3s_binary(version: str, arch: str) -> Download:
    goarch = GOARCH[arch]
    pins = versions.K3S_BINARY_SHA256.get(version)
    if not pins:
        raise ValueError(
            f"K3s {version} has no pinned sha256 in components/versions.py K3S_BINARY_SHA256"
        )
    name = "k3s" if goarch == "amd64" else f"k3s-{goarch}"
    return Download(f"{K3S_RELEASES}/{version.replace('+', '%2B')}/{name}", pins[goarch])


def k3s_installer() -> Download:
    commit = versions.K3S_INSTALL_SCRIPT_COMMIT
    return Download(
        f"https://raw.githubusercontent.com/k3s-io/k3s/{commit}/install.sh",
        versions.K3S_INSTALL_SCRIPT_SHA256,
    )


def ecr_credential_provider(arch: str) -> Download:
    goarch = GOARCH[arch]
    version = versions.ECR_CREDENTIAL_PROVIDER_VERSION
    return Download(
        f"https://artifacts.k8s.io/binaries/cloud-provider-aws/{version}/linux/{goarch}/"
        f"ecr-credential-provider-linux-{goarch}",
        versions.ECR_CREDENTIAL_PROVIDER_SHA256.get(goarch, ""),
    )


def with_ecr_pulls(k3s_config: dict) -> dict:
    """The node config plus the kubelet flags that enable the ECR credential provider."""
    return {**k3s_config, "kubelet-arg": [*k3s_config.get("kubelet-arg", []), *ECR_KUBELET_ARGS]}


@dataclass(frozen=True)
class EtcdSnapshots:
    bucket: str
    region: str
    schedule: str
    retention: int
    name: str = "etcd-snapshot"
    """Snapshot file prefix; it carries the cluster's generation, so a founding server restores
    only snapshots of the cluster it replaces."""
    folder: str = "etcd"


def server_k3s_config(tls_sans: list[str], snapshots: EtcdSnapshots, dedicated: bool) -> dict:
    """K3s server settings shared by every server (they must match across servers).

    `dedicated`: taint the servers so only platform pods that tolerate it run there."""
    taint = {"node-taint": [SERVER_TAINT]} if dedicated else {}
    return taint | {
        # Node names carry a random suffix: a replacement instance that reuses a private
        # address (and so the ip-... hostname) is a new node, not an impostor of the old one.
        "with-node-id": True,
        "write-kubeconfig-mode": "0600",
        "tls-san": tls_sans,
        "secrets-encryption": True,
        "protect-kernel-defaults": True,
        "etcd-snapshot-schedule-cron": snapshots.schedule,
        "etcd-snapshot-retention": snapshots.retention,
        "etcd-snapshot-compress": True,
        # Credentials come from the instance profile; no access keys on disk.
        "etcd-s3": True,
        "etcd-s3-bucket": snapshots.bucket,
        "etcd-s3-region": snapshots.region,
        "etcd-s3-folder": snapshots.folder,
        "etcd-snapshot-name": snapshots.name,
        "kube-apiserver-arg": [
            "enable-admission-plugins=NodeRestriction",
            f"admission-control-config-file={SERVER_DIR}/psa.yaml",
            f"audit-log-path={SERVER_DIR}/logs/audit.log",
            f"audit-policy-file={SERVER_DIR}/audit.yaml",
            "audit-log-maxage=30",
            "audit-log-maxbackup=10",
            "audit-log-maxsize=100",
            "service-account-extend-token-expiration=false",
        ],
        "kube-controller-manager-arg": ["terminated-pod-gc-threshold=100"],
        "kubelet-arg": KUBELET_ARGS,
    }


def agent_k3s_config() -> dict:
    return {"with-node-id": True, "protect-kernel-defaults": True, "kubelet-arg": KUBELET_ARGS}


@dataclass(frozen=True)
class NodeBoot:
    """Everything a node kind needs at first boot, none of it secret."""

    kind: str
    """`server-init` (founds the cluster), `server` (joins as a server) or `agent`."""
    region: str
    secret_id: str
    """ARN of the Secrets Manager secret this node kind may read."""
    k3s_version: str
    k3s_binary: Download
    k3s_installer: Download
    server_addresses: list[str]
    """Fixed private addresses of the servers, tried in order to join."""
    k3s_config: dict
    extra_files: dict[str, str] = field(default_factory=dict)
    """Extra non-secret files (path -> content), e.g. K3s auto-deploy manifests."""
    credential_provider: Download | None = None
    """ecr-credential-provider; None when nodes don't pull from ECR."""
    snapshots: EtcdSnapshots | None = None
    """Where a server that founds the cluster looks for a snapshot of it to restore."""
    ca_secret_id: str = ""
    """ARN of the secret with the CA keys; only the server that may found the cluster has one."""


class _Literal(str):
    """Multi-line strings rendered as YAML literal blocks so the user data stays readable."""


yaml.SafeDumper.add_representer(
    _Literal, lambda d, s: d.represent_scalar("tag:yaml.org,2002:str", s, style="|")
)


def _dump(obj: object) -> str:
    return yaml.safe_dump(obj, sort_keys=False, default_flow_style=False, width=1000)


def boot_env(boot: NodeBoot) -> str:
    provider = boot.credential_provider or Download("", "")
    values = {
        "NODE_ROLE": "agent" if boot.kind == "agent" else "server",
        "CLUSTER_INIT": "true" if boot.kind == "server-init" else "false",
        "SECRET_ID": boot.secret_id,
        "CA_SECRET_ID": boot.ca_secret_id,
        "AWS_REGION": boot.region,
        "K3S_VERSION": boot.k3s_version,
        "K3S_BINARY_URL": boot.k3s_binary.url,
        "K3S_BINARY_SHA256": boot.k3s_binary.sha256,
        "K3S_INSTALL_URL": boot.k3s_installer.url,
        "K3S_INSTALL_SHA256": boot.k3s_installer.sha256,
        "SERVER_ADDRESSES": " ".join(boot.server_addresses),
        "ECR_CREDENTIAL_PROVIDER_URL": provider.url,
        "ECR_CREDENTIAL_PROVIDER_SHA256": provider.sha256,
        "SNAPSHOT_BUCKET": boot.snapshots.bucket if boot.snapshots else "",
        "SNAPSHOT_PREFIX": (
            f"{boot.snapshots.folder}/{boot.snapshots.name}-" if boot.snapshots else ""
        ),
    }
    return "".join(f"{k}={shlex.quote(v)}\n" for k, v in values.items())


def render_user_data(boot: NodeBoot) -> str:
    """The `#cloud-config` document of one node kind."""
    if boot.kind not in ("server-init", "server", "agent"):
        raise ValueError(f"unknown node kind {boot.kind!r}")
    files = [
        ("/etc/platform/boot.env", boot_env(boot), "0644"),
        ("/etc/platform/k3s-config.yaml", _dump(boot.k3s_config), "0600"),
        ("/etc/sysctl.d/90-kubelet.conf", KUBELET_SYSCTLS, "0644"),
        (BOOT_SCRIPT_PATH, packed(BOOT_SCRIPT), "0755"),
    ]
    if boot.kind != "agent":
        files += [
            (f"{SERVER_DIR}/psa.yaml", _dump(PSA_CONFIG), "0600"),
            (f"{SERVER_DIR}/audit.yaml", _dump(AUDIT_POLICY), "0600"),
        ]
    if boot.credential_provider:
        files.append(
            (
                f"{CREDENTIAL_PROVIDER_DIR}/config.yaml",
                _dump(ECR_CREDENTIAL_PROVIDER_CONFIG),
                "0644",
            )
        )
    files += [(path, content, "0600") for path, content in sorted(boot.extra_files.items())]
    doc = {
        "write_files": [
            {
                "path": path,
                "owner": "root:root",
                "permissions": mode,
                **({"encoding": "gz+b64"} if path == BOOT_SCRIPT_PATH else {}),
                "content": _Literal(content),
            }
            for path, content, mode in files
        ],
        "runcmd": [["/usr/local/sbin/platform-boot"]],
    }
    text = "#cloud-config\n" + _dump(doc)
    if len(text.encode()) > USER_DATA_LIMIT:
        raise ValueError(
            f"user data of {boot.kind} is {len(text.encode())} bytes; EC2 allows {USER_DATA_LIMIT}"
        )
    return text
