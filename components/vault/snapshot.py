"""Raft snapshots of Vault/OpenBao to S3 and back.

`python -m components.vault.snapshot` logs in, takes a snapshot through
`sys/storage/raft/snapshot`, uploads it under the key the platform's CronJob uses and prunes old
ones; `python -m components.vault.snapshot restore [--key KEY]` puts one back (the newest by
default). The CronJob itself (components/platform/vault_snapshots.py) does the backup with the
server image's CLI and the AWS CLI, so nothing is installed in a pod.

Environment:
  VAULT_ADDR          Vault API URL (required); VAULT_CACERT: CA bundle that verifies it.
  VAULT_K8S_ROLE      log in with Kubernetes auth as this role (`raft-snapshot` in the platform),
                      using VAULT_K8S_JWT_FILE (default: the pod's service-account token) on mount
                      VAULT_K8S_MOUNT (default `kubernetes`);
  VAULT_TOKEN_FILE    otherwise read the token from this file;
  VAULT_TOKEN         otherwise use this token (restores need a privileged one, e.g. root).
  SNAPSHOT_BUCKET     S3 bucket (required); SNAPSHOT_PREFIX key prefix (default `vault`);
  SNAPSHOT_KEEP       how many snapshots to keep (default 30).
  AWS_*               read by boto3 (region, credentials, AWS_ENDPOINT_URL).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import hvac
import requests
from hvac import exceptions as hvac_errors

from components.vault.bootstrap import BootstrapError, Progress, read_health, wait_until

DEFAULT_PREFIX = "vault"
DEFAULT_KEEP = 30
SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"
_NAME_RE = re.compile(r"^raft-\d{8}T\d{6}Z\.snap$")
_GZIP_MAGIC = b"\x1f\x8b"


class SnapshotError(RuntimeError):
    """A snapshot could not be taken, stored, found or restored."""


def _print(message: str) -> None:
    print(message, flush=True)


def take_snapshot(client: hvac.Client) -> bytes:
    """The Raft snapshot of the server behind `client` (a gzip archive)."""
    try:
        data = client.sys.take_raft_snapshot().content
    except (hvac_errors.VaultError, requests.RequestException) as exc:
        raise SnapshotError(f"taking a Raft snapshot from {client.url} failed: {exc}") from exc
    if not data.startswith(_GZIP_MAGIC):
        raise SnapshotError(
            f"{client.url} answered the snapshot request with {len(data)} bytes that are not a "
            "Raft snapshot (gzip)"
        )
    return data


def restore_snapshot(
    client: hvac.Client, data: bytes, *, timeout: float = 60.0, progress: Progress = _print
) -> bool:
    """Force-restore `data`; True once the server is active with it, False if it sealed itself.

    Force skips the check that the snapshot's seal keys match the server's, so a snapshot can go
    into a rebuilt cluster. The server then holds the snapshot's data, tokens and keyring: a
    shamir server seals itself until it gets the unseal keys of the snapshot's cluster (False);
    an auto-unseal server needs the same KMS key.
    """
    if not data.startswith(_GZIP_MAGIC):
        raise SnapshotError("refusing to restore: the data is not a Raft snapshot (gzip)")
    try:
        before = client.sys.read_leader_status().get("active_time")
        progress(f"restoring a {len(data)}-byte Raft snapshot into {client.url}")
        client.sys.force_restore_raft_snapshot(data)
    except (hvac_errors.VaultError, requests.RequestException) as exc:
        raise SnapshotError(f"restoring the snapshot into {client.url} failed: {exc}") from exc

    # The server answers before it applies the snapshot (in the background, then it becomes
    # active anew), so only a new active time shows that the restore has finished.
    def probe() -> tuple[bool, str]:
        if read_health(client)["sealed"]:
            return True, "sealed"
        active_time = client.sys.read_leader_status().get("active_time")
        return active_time not in (None, "", before), f"active since {active_time}"

    wait_until(
        f"Vault at {client.url} to finish restoring the snapshot",
        probe,
        timeout=timeout,
        progress=progress,
    )
    return not read_health(client)["sealed"]


def _prefix(prefix: str) -> str:
    return prefix.strip("/")


def snapshot_key(prefix: str, now: dt.datetime) -> str:
    """`<prefix>/raft-<UTC YYYYmmddTHHMMSSZ>.snap`: names sort in time order."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware so the key is in UTC")
    stamp = now.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{_prefix(prefix)}/raft-{stamp}.snap"


def upload_snapshot(s3_client: Any, bucket: str, prefix: str, data: bytes, now: dt.datetime) -> str:
    """Store `data` under `snapshot_key(prefix, now)`; returns the key."""
    key = snapshot_key(prefix, now)
    s3_client.put_object(Bucket=bucket, Key=key, Body=data, ContentType="application/gzip")
    return key


def list_snapshots(s3_client: Any, bucket: str, prefix: str) -> list[str]:
    """Snapshot keys directly under `prefix`, oldest first; other objects are ignored."""
    keys = []
    paginator = s3_client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=f"{_prefix(prefix)}/"):
        for item in page.get("Contents", []):
            directory, _, name = item["Key"].rpartition("/")
            if directory == _prefix(prefix) and _NAME_RE.match(name):
                keys.append(item["Key"])
    return sorted(keys)


def download_snapshot(s3_client: Any, bucket: str, key: str) -> bytes:
    """The snapshot stored under `key`."""
    return s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()


def prune_snapshots(s3_client: Any, bucket: str, prefix: str, keep: int) -> list[str]:
    """Delete all but the newest `keep` snapshots under `prefix`; returns the deleted keys."""
    if keep < 1:
        raise ValueError(f"keep must be at least 1, got {keep}")
    doomed = list_snapshots(s3_client, bucket, prefix)[:-keep]
    for start in range(0, len(doomed), 1000):  # DeleteObjects takes at most 1000 keys
        batch = doomed[start : start + 1000]
        response = s3_client.delete_objects(
            Bucket=bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
        )
        errors = response.get("Errors") or []
        if errors:
            failed = ", ".join(f"{e['Key']} ({e.get('Code')})" for e in errors)
            raise SnapshotError(f"deleting old snapshots from s3://{bucket} failed: {failed}")
    return doomed


def _require(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise SnapshotError(f"{name} is not set")
    return value


def vault_client(env: Mapping[str, str]) -> hvac.Client:
    """A client logged in as the environment says (see the module docstring)."""
    client = hvac.Client(
        url=_require(env, "VAULT_ADDR"), token="", verify=env.get("VAULT_CACERT") or True
    )
    role = env.get("VAULT_K8S_ROLE")
    if role:
        jwt = Path(env.get("VAULT_K8S_JWT_FILE") or SERVICE_ACCOUNT_TOKEN).read_text().strip()
        mount = env.get("VAULT_K8S_MOUNT") or "kubernetes"
        try:
            client.auth.kubernetes.login(role, jwt, mount_point=mount)
        except (hvac_errors.VaultError, requests.RequestException) as exc:
            raise SnapshotError(f"Kubernetes login as role {role!r} failed: {exc}") from exc
    elif env.get("VAULT_TOKEN_FILE"):
        client.token = Path(env["VAULT_TOKEN_FILE"]).read_text().strip()
    elif env.get("VAULT_TOKEN"):
        client.token = env["VAULT_TOKEN"]
    else:
        raise SnapshotError("no credentials: set VAULT_K8S_ROLE, VAULT_TOKEN_FILE or VAULT_TOKEN")
    return client


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m components.vault.snapshot`; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m components.vault.snapshot",
        description="Back up Vault's Raft storage to S3 (default) or restore it.",
    )
    parser.add_argument("action", nargs="?", choices=["backup", "restore"], default="backup")
    parser.add_argument("--key", help="snapshot to restore (default: the newest)")
    args = parser.parse_args(argv)
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    env = os.environ
    try:
        bucket = _require(env, "SNAPSHOT_BUCKET")
        prefix = env.get("SNAPSHOT_PREFIX") or DEFAULT_PREFIX
        s3 = boto3.client("s3")
        client = vault_client(env)
        if args.action == "backup":
            keep = int(env.get("SNAPSHOT_KEEP") or DEFAULT_KEEP)
            data = take_snapshot(client)
            key = upload_snapshot(s3, bucket, prefix, data, dt.datetime.now(dt.UTC))
            _print(f"stored {len(data)} bytes as s3://{bucket}/{key}")
            for old in prune_snapshots(s3, bucket, prefix, keep):
                _print(f"deleted s3://{bucket}/{old}")
        else:
            stored = list_snapshots(s3, bucket, prefix)
            key = args.key or (stored[-1] if stored else None)
            if key is None:
                raise SnapshotError(f"no snapshots under s3://{bucket}/{_prefix(prefix)}/")
            if restore_snapshot(client, download_snapshot(s3, bucket, key)):
                _print(f"restored s3://{bucket}/{key}")
            else:
                _print(
                    f"restored s3://{bucket}/{key}; Vault sealed itself because the snapshot comes"
                    " from a cluster with other unseal keys: unseal it with that cluster's keys"
                )
    except (SnapshotError, BootstrapError, ValueError, OSError, BotoCoreError, ClientError) as exc:
        print(f"snapshot {args.action} failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
