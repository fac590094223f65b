"""Scheduled Raft snapshots of Vault to the cluster's S3 bucket (prefix `vault/`), with retention.

Automated snapshots are a Vault Enterprise feature, so a CronJob takes them with tools that
already ship in public images, installing nothing at run time: an init container runs the
server's own image (the `vault` / `bao` CLI that matches the server) to log in as the
`raft-snapshot` role and save a snapshot into a memory-backed volume; the container then runs the
AWS CLI image to upload it under a sortable key and delete all but the newest `keep`. The job runs
on the servers, whose role alone may write `vault/` in the bucket; the role can read snapshots
and nothing else. Restores are an operator's task: `python -m components.vault.snapshot restore`
(docs/vault.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components import versions
from components.cluster_access import CONTROL_PLANE_SELECTOR, SERVER_TOLERATIONS, ClusterAccess
from components.platform.base import PULL_POLICY, k8s_opts
from components.vault.bootstrap import AUDIENCE, SNAPSHOT_ROLE, SNAPSHOT_SERVICE_ACCOUNT

SERVER_IMAGES = {
    "vault": ("vault", "VAULT", f"docker.io/hashicorp/vault:{versions.VAULT.app_version}"),
    "openbao": ("bao", "BAO", f"quay.io/openbao/openbao:{versions.OPENBAO.app_version}"),
}
"""Per flavor: the CLI, its environment prefix and the image the chart runs the server with."""
AWS_CLI_IMAGE = "public.ecr.aws/aws-cli/aws-cli:2.37.5"
"""AWS's own CLI image, from ECR Public (no Docker Hub pull limits on the nodes)."""
PREFIX = "vault"
SNAPSHOT_DIR = "/snapshot"
SNAPSHOT_FILE = f"{SNAPSHOT_DIR}/raft.snap"
CA_DIR = "/vault-tls"
TOKEN_DIR = "/var/run/secrets/vault"
USER = 65532
"""Neither image needs root; a numeric ID lets the kubelet prove runAsNonRoot."""

SAVE_SCRIPT = """set -eu
# The role accepts tokens for Vault's audience only; the login answer is kept in this process.
token=$("$CLI" write -field=token "auth/kubernetes/login" role="$SNAPSHOT_ROLE" jwt=@"$JWT_FILE")
export "${ENV_PREFIX}_TOKEN=$token"
"$CLI" operator raft snapshot save "$SNAPSHOT_FILE"
echo "saved a $(wc -c < "$SNAPSHOT_FILE")-byte Raft snapshot"
"""
"""Runs in the server image (a POSIX shell): log in with the projected token, save a snapshot."""

UPLOAD_SCRIPT = """set -euo pipefail
key="$SNAPSHOT_PREFIX/raft-$(date -u +%Y%m%dT%H%M%SZ).snap"
aws s3 cp --only-show-errors --content-type application/gzip "$SNAPSHOT_FILE" \
  "s3://$SNAPSHOT_BUCKET/$key"
echo "stored s3://$SNAPSHOT_BUCKET/$key"
# Names sort in time order; other objects under the prefix are never touched.
aws s3api list-objects-v2 --bucket "$SNAPSHOT_BUCKET" --prefix "$SNAPSHOT_PREFIX/raft-" \
    --query 'Contents[].Key' --output text \
  | tr '\t' '\n' \
  | grep -E "^$SNAPSHOT_PREFIX/raft-[0-9]{8}T[0-9]{6}Z\\.snap$" \
  | sort | head -n "-$SNAPSHOT_KEEP" \
  | while read -r old; do
      aws s3 rm --only-show-errors "s3://$SNAPSHOT_BUCKET/$old"
      echo "deleted s3://$SNAPSHOT_BUCKET/$old"
    done
"""
"""Runs in the AWS CLI image (bash, GNU coreutils): upload, then keep the newest SNAPSHOT_KEEP."""


@dataclass(frozen=True)
class VaultSnapshotsArgs:
    namespace: str
    """Vault's namespace (the `raft-snapshot` role is bound to it)."""
    vault_address: str
    ca_secret: str
    """Secret with `ca.crt` that verifies Vault's listener."""
    bucket: pulumi.Input[str]
    region: str
    flavor: str = "vault"
    """`platform:services.secretsServer`: whose image and CLI take the snapshot."""
    schedule: str = "30 */6 * * *"
    keep: int = 28
    """Snapshots kept (a week at four a day)."""

    def __post_init__(self) -> None:
        if self.flavor not in SERVER_IMAGES:
            raise ValueError(f"flavor {self.flavor!r} must be one of {sorted(SERVER_IMAGES)}")
        if self.keep < 1:
            raise ValueError(f"keep must be at least 1, got {self.keep}")


def _container(
    name: str, image: str, command: list[str], env: dict[str, str], mounts: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": PULL_POLICY,
        "command": command,
        "env": [{"name": k, "value": v} for k, v in (env | {"HOME": "/tmp"}).items()],
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": USER,
            "runAsGroup": USER,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"cpu": "200m", "memory": "256Mi"},
        },
        "volumeMounts": [*mounts, {"name": "home", "mountPath": "/tmp"}],
    }


def cron_job(args: VaultSnapshotsArgs, bucket: str) -> dict[str, Any]:
    """The CronJob object; a plain function so tests can run exactly what it runs."""
    cli, prefix, image = SERVER_IMAGES[args.flavor]
    snapshot = {"name": "snapshot", "mountPath": SNAPSHOT_DIR}
    save = _container(
        "save",
        image,
        ["/bin/sh", "-c", SAVE_SCRIPT],
        {
            "CLI": cli,
            "ENV_PREFIX": prefix,
            f"{prefix}_ADDR": args.vault_address,
            f"{prefix}_CACERT": f"{CA_DIR}/ca.crt",
            "SNAPSHOT_ROLE": SNAPSHOT_ROLE,
            "JWT_FILE": f"{TOKEN_DIR}/token",
            "SNAPSHOT_FILE": SNAPSHOT_FILE,
        },
        [
            snapshot,
            {"name": "vault-tls", "mountPath": CA_DIR, "readOnly": True},
            {"name": "vault-token", "mountPath": TOKEN_DIR, "readOnly": True},
        ],
    )
    upload = _container(
        "upload",
        AWS_CLI_IMAGE,
        ["/bin/bash", "-c", UPLOAD_SCRIPT],
        {
            "SNAPSHOT_FILE": SNAPSHOT_FILE,
            "SNAPSHOT_BUCKET": bucket,
            "SNAPSHOT_PREFIX": PREFIX,
            "SNAPSHOT_KEEP": str(args.keep),
            "AWS_REGION": args.region,
        },
        [{**snapshot, "readOnly": True}],
    )
    pod = {
        "serviceAccountName": SNAPSHOT_SERVICE_ACCOUNT,
        "automountServiceAccountToken": False,
        "restartPolicy": "Never",
        # Only the servers' instance role may write the bucket's vault/ prefix.
        "nodeSelector": CONTROL_PLANE_SELECTOR,
        "tolerations": SERVER_TOLERATIONS,
        "securityContext": {
            "runAsNonRoot": True,
            "fsGroup": USER,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        # Parallel A/AAAA lookups of the S3 and Vault names would otherwise hit the conntrack race.
        "dnsConfig": {"options": [{"name": "single-request-reopen"}]},
        "initContainers": [save],
        "containers": [upload],
        "volumes": [
            # In memory: the snapshot holds every secret (encrypted by the barrier) and never
            # touches the node's disk.
            {"name": "snapshot", "emptyDir": {"medium": "Memory", "sizeLimit": "512Mi"}},
            {"name": "home", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
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
    """The snapshot CronJob and its service account."""

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
        job = pulumi.Output.from_input(args.bucket).apply(lambda bucket: cron_job(args, bucket))
        self.cron_job = k8s.batch.v1.CronJob(
            f"{name}-cron",
            metadata=job["metadata"],
            spec=job["spec"],
            opts=k8s_opts(self, access, account),
        )
        self.register_outputs({"schedule": args.schedule})
