"""Raft snapshots for real: OpenBao on Raft storage, S3 in a moto server, the CronJob entry."""

from __future__ import annotations

import datetime as dt
import uuid

import boto3
import pytest
from hvac import exceptions as hvac_errors

from components.vault.bootstrap import SNAPSHOT_ROLE, bootstrap, platform_spec
from components.vault.snapshot import (
    SnapshotError,
    list_snapshots,
    main,
    prune_snapshots,
    restore_snapshot,
    snapshot_key,
    take_snapshot,
    upload_snapshot,
)


@pytest.fixture(scope="module")
def root_token(bao, tokenreview) -> str:
    spec = platform_spec(
        ["team-a"],
        seal="shamir",
        kubernetes_host=tokenreview.url,
        kubernetes_ca_cert=tokenreview.ca_pem,
    )
    return bootstrap(bao.client(), spec).root_token


@pytest.fixture
def s3(moto_server, monkeypatch):
    """An S3 client on the moto server and a new bucket; boto3 finds both through the env."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": moto_server.endpoint,
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
    client = boto3.client("s3")
    bucket = f"snapshots-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    return client, bucket


def _password(client, path: str) -> str:
    secret = client.secrets.kv.v2.read_secret_version(
        path, mount_point="secret", raise_on_deleted_version=True
    )
    return secret["data"]["data"]["password"]


def test_backup_then_restore_brings_back_the_data_of_the_snapshot(
    bao, root_token, s3, tokenreview, tmp_path, monkeypatch, capsys
):
    s3_client, bucket = s3
    root = bao.client(root_token)
    kv = root.secrets.kv.v2
    kv.create_or_update_secret("apps/team-a/db", {"password": "before"}, mount_point="secret")

    jwt_file = tmp_path / "sa-token"
    jwt_file.write_text(tokenreview.jwt("vault", "vault-snapshot"))
    for name, value in {
        "VAULT_ADDR": bao.url,
        "VAULT_K8S_ROLE": SNAPSHOT_ROLE,
        "VAULT_K8S_JWT_FILE": str(jwt_file),
        "SNAPSHOT_BUCKET": bucket,
        "SNAPSHOT_PREFIX": "vault",
        "SNAPSHOT_KEEP": "5",
    }.items():
        monkeypatch.setenv(name, value)
    assert main(["backup"]) == 0
    [key] = list_snapshots(s3_client, bucket, "vault")

    kv.create_or_update_secret("apps/team-a/db", {"password": "after"}, mount_point="secret")
    kv.create_or_update_secret("apps/team-a/new", {"password": "new"}, mount_point="secret")
    assert _password(root, "apps/team-a/db") == "after"

    snapshot_client = bao.client()
    snapshot_client.auth.kubernetes.login(SNAPSHOT_ROLE, jwt_file.read_text())
    with pytest.raises(SnapshotError, match="permission denied"):
        restore_snapshot(snapshot_client, take_snapshot(snapshot_client))

    monkeypatch.delenv("VAULT_K8S_ROLE")
    monkeypatch.setenv("VAULT_TOKEN", root_token)
    assert main(["restore"]) == 0
    assert _password(root, "apps/team-a/db") == "before"
    with pytest.raises(hvac_errors.InvalidPath):
        _password(root, "apps/team-a/new")
    output = capsys.readouterr()
    assert f"restored s3://{bucket}/{key}\n" in output.out
    assert root_token not in output.out + output.err


def test_prune_keeps_the_newest_snapshots_and_nothing_else_is_touched(bao, root_token, s3):
    s3_client, bucket = s3
    data = take_snapshot(bao.client(root_token))
    hours = [3, 1, 4, 0, 2]
    for hour in hours:
        upload_snapshot(
            s3_client, bucket, "vault/", data, dt.datetime(2026, 11, 25, hour, tzinfo=dt.UTC)
        )
    foreign = [
        "vault/notes.txt",
        "vault/old/raft-20200101T000000Z.snap",
        "etcd/raft-20200101T000000Z.snap",
    ]
    for key in foreign:
        s3_client.put_object(Bucket=bucket, Key=key, Body=b"x")

    deleted = prune_snapshots(s3_client, bucket, "vault", keep=2)

    assert deleted == [f"vault/raft-20261125T0{h}0000Z.snap" for h in (0, 1, 2)]
    remaining = {o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket)["Contents"]}
    assert remaining == {
        "vault/raft-20261125T030000Z.snap",
        "vault/raft-20261125T040000Z.snap",
        *foreign,
    }
    assert prune_snapshots(s3_client, bucket, "vault", keep=2) == []
    with pytest.raises(ValueError, match="keep must be at least 1"):
        prune_snapshots(s3_client, bucket, "vault", keep=0)


def test_snapshot_keys_are_utc_and_sort_by_time():
    two_hours_east = dt.timezone(dt.timedelta(hours=2))
    key = snapshot_key("/vault/", dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=two_hours_east))
    assert key == "vault/raft-20260102T010405Z.snap"
    times = [dt.datetime(2026, m, d, tzinfo=dt.UTC) for m, d in [(12, 1), (2, 10), (11, 30)]]
    assert sorted(snapshot_key("v", t) for t in times) == [
        snapshot_key("v", t) for t in sorted(times)
    ]
    with pytest.raises(ValueError, match="timezone-aware"):
        snapshot_key("vault", dt.datetime(2026, 1, 1))


def test_main_reports_missing_settings(monkeypatch, capsys):
    monkeypatch.delenv("SNAPSHOT_BUCKET", raising=False)
    assert main(["backup"]) == 1
    assert "snapshot backup failed: SNAPSHOT_BUCKET is not set" in capsys.readouterr().err
