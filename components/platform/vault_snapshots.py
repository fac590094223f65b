"""Scheduled Raft snapshots of Vault to the cluster's S3 bucket (prefix `vault/`), with retention.

Automated snapshots are a Vault Enterprise feature, so a CronJob runs the same code the test suite
runs against a real OpenBao server: `python -m components.vault.snapshot backup`. The code comes
from a ConfigMap and its pinned dependencies are installed into an emptyDir by an init container,
so no custom image has to be built. The job runs on the servers, whose role alone may write
`vault/` in the bucket; it logs in to Vault as the `raft-snapshot` role, which can read snapshots
and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.cluster_access import CONTROL_PLANE_SELECTOR, SERVER_TOLERATIONS, ClusterAccess
from components.platform.base import k8s_opts
from components.vault.bootstrap import AUDIENCE, SNAPSHOT_ROLE, SNAPSHOT_SERVICE_ACCOUNT

REPO = Path(__file__).resolve().parents[2]
MODULES = (
    "components/__init__.py",
    "components/vault/__init__.py",
    "components/vault/bootstrap.py",
    "components/vault/snapshot.py",
)
"""The files `python -m components.vault.snapshot` imports."""
IMAGE = "python:3.11.7-slim-bookworm"
"""The interpreter version the test suite runs the snapshot code with."""
REQUIREMENTS = (
    "hvac==2.4.0",
    "requests==2.34.2",
    "urllib3==2.8.0",
    "certifi==2026.10.19.post1",
    "idna==3.20",
    "charset-normalizer==3.5.3",
    "boto3==1.44.8",
    "botocore==1.44.8",
    "s3transfer==0.19.3",
    "jmespath==1.1.0",
    "python-dateutil==2.9.0.post0",
    "six==1.17.0",
)
"""Exactly the versions of requirements*.txt, with every transitive dependency pinned."""
PREFIX = "vault"
CODE_DIR = "/app"
DEPS_DIR = "/deps"
CA_DIR = "/vault-tls"
TOKEN_DIR = "/var/run/secrets/vault"


def config_map_key(path: str) -> str:
    """ConfigMap keys cannot hold `/`; the volume's items map them back to paths."""
    return path.replace("/", "__")


@dataclass(frozen=True)
class VaultSnapshotsArgs:
    namespace: str
    """Vault's namespace (the `raft-snapshot` role is bound to it)."""
    vault_address: str
    ca_secret: str
    """Secret with `ca.crt` that verifies Vault's listener."""
    bucket: pulumi.Input[str]
    region: str
    schedule: str = "30 */6 * * *"
    keep: int = 28
    """Snapshots kept (a week at four a day)."""


def cron_job(args: VaultSnapshotsArgs, bucket: str, config_map: str) -> dict[str, Any]:
    """The CronJob object; a plain function so tests can run exactly what it runs."""
    container_security = {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    resources = {
        "requests": {"cpu": "100m", "memory": "128Mi"},
        "limits": {"cpu": "200m", "memory": "256Mi"},
    }
    scratch = [
        {"name": "deps", "mountPath": DEPS_DIR},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    env = {
        "PYTHONPATH": f"{DEPS_DIR}:{CODE_DIR}",
        "HOME": "/tmp",
        "VAULT_ADDR": args.vault_address,
        "VAULT_CACERT": f"{CA_DIR}/ca.crt",
        "VAULT_K8S_ROLE": SNAPSHOT_ROLE,
        # The role accepts tokens for Vault's audience only, not the default API-server token.
        "VAULT_K8S_JWT_FILE": f"{TOKEN_DIR}/token",
        "SNAPSHOT_BUCKET": bucket,
        "SNAPSHOT_PREFIX": PREFIX,
        "SNAPSHOT_KEEP": str(args.keep),
        "AWS_REGION": args.region,
    }
    pod = {
        "serviceAccountName": SNAPSHOT_SERVICE_ACCOUNT,
        "automountServiceAccountToken": False,
        "restartPolicy": "Never",
        # Only the servers' instance role may write the bucket's vault/ prefix.
        "nodeSelector": CONTROL_PLANE_SELECTOR,
        "tolerations": SERVER_TOLERATIONS,
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}, "fsGroup": 65532},
        # Parallel A/AAAA lookups of the S3 and Vault names would otherwise hit the conntrack race.
        "dnsConfig": {"options": [{"name": "single-request-reopen"}]},
        "initContainers": [
            {
                "name": "dependencies",
                "image": IMAGE,
                "command": ["pip", "install", "--no-cache-dir", "--no-deps", "--target", DEPS_DIR],
                "args": list(REQUIREMENTS),
                "env": [{"name": "HOME", "value": "/tmp"}],
                "securityContext": container_security,
                "resources": resources,
                "volumeMounts": scratch,
            }
        ],
        "containers": [
            {
                "name": "snapshot",
                "image": IMAGE,
                "command": ["python", "-m", "components.vault.snapshot", "backup"],
                "env": [{"name": k, "value": v} for k, v in env.items()],
                "securityContext": container_security,
                "resources": resources,
                "volumeMounts": [
                    *scratch,
                    {"name": "code", "mountPath": CODE_DIR, "readOnly": True},
                    {"name": "vault-tls", "mountPath": CA_DIR, "readOnly": True},
                    {"name": "vault-token", "mountPath": TOKEN_DIR, "readOnly": True},
                ],
            }
        ],
        "volumes": [
            {"name": "deps", "emptyDir": {}},
            {"name": "tmp", "emptyDir": {}},
            {
                "name": "code",
                "configMap": {
                    "name": config_map,
                    "items": [{"key": config_map_key(p), "path": p} for p in MODULES],
                },
            },
            {
                "name": "vault-token",
                "projected": {
                    "sources": [
                        {
                            "serviceAccountToken": {
                                "audience": AUDIENCE,
                                "expirationSeconds": 600,
                                "path": "token",
                            }
                        }
                    ]
                },
            },
            {
                "name": "vault-tls",
                "secret": {
                    "secretName": args.ca_secret,
                    "items": [{"key": "ca.crt", "path": "ca.crt"}],
                },
            },
        ],
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "vault-snapshot", "namespace": args.namespace},
        "spec": {
            "schedule": args.schedule,
            "concurrencyPolicy": "Forbid",
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {
                "spec": {
                    "backoffLimit": 2,
                    "activeDeadlineSeconds": 900,
                    "template": {"metadata": {"labels": {"app": "vault-snapshot"}}, "spec": pod},
                }
            },
        },
    }


class VaultSnapshots(pulumi.ComponentResource):
    """The snapshot CronJob, its code and its service account."""

    def __init__(
        self,
        name: str,
        access: ClusterAccess,
        args: VaultSnapshotsArgs,
        depends_on: list[pulumi.Resource],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("platform:vault:Snapshots", name, None, opts)
        account = k8s.core.v1.ServiceAccount(
            f"{name}-account",
            metadata={"name": SNAPSHOT_SERVICE_ACCOUNT, "namespace": args.namespace},
            opts=k8s_opts(self, access, *depends_on),
        )
        code = k8s.core.v1.ConfigMap(
            f"{name}-code",
            metadata={"name": "vault-snapshot-code", "namespace": args.namespace},
            data={config_map_key(p): (REPO / p).read_text() for p in MODULES},
            opts=k8s_opts(self, access, *depends_on),
        )
        job = pulumi.Output.from_input(args.bucket).apply(
            lambda bucket: cron_job(args, bucket, "vault-snapshot-code")
        )
        self.cron_job = k8s.batch.v1.CronJob(
            f"{name}-cron",
            metadata=job["metadata"],
            spec=job["spec"],
            opts=k8s_opts(self, access, account, code),
        )
        self.register_outputs({"schedule": args.schedule})
