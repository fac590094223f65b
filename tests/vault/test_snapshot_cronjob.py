"""The Vault snapshot CronJob the platform deploys, run for real: its container's command and
environment, with the code taken from its ConfigMap, against OpenBao on Raft and S3 in moto."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import uuid

import boto3
import kubernetes_validate
import pytest

from components import versions
from components.platform.vault_snapshots import MODULES, REQUIREMENTS
from components.vault.bootstrap import (
    AUDIENCE,
    SNAPSHOT_SERVICE_ACCOUNT,
    bootstrap,
    platform_spec,
)
from components.vault.snapshot import list_snapshots


def _objects(result) -> dict[str, dict]:
    return {
        reg.plain_inputs["kind"]: reg.plain_inputs
        for reg in result.registrations
        if reg.type.startswith("kubernetes:") and "vault-snapshots" in reg.urn
    }


@pytest.fixture(scope="module")
def prod_objects(synth_results):
    return _objects(synth_results["prod"])


def test_only_aws_stacks_snapshot_to_s3(synth_results, prod_objects):
    assert set(prod_objects) == {"ServiceAccount", "ConfigMap", "CronJob"}
    assert _objects(synth_results["local"]) == {}


def test_objects_validate_strictly(prod_objects):
    for obj in prod_objects.values():
        kubernetes_validate.validate(obj, f"{versions.kubernetes_minor()}.0", strict=True)


def test_the_job_runs_the_committed_code_with_its_role(prod_objects, synth_results):
    job = prod_objects["CronJob"]
    pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == SNAPSHOT_SERVICE_ACCOUNT
    assert prod_objects["ServiceAccount"]["metadata"]["name"] == SNAPSHOT_SERVICE_ACCOUNT
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    bucket = synth_results["prod"].by_name("gitops-platform-prod-snapshots").id
    assert (env["SNAPSHOT_BUCKET"], env["SNAPSHOT_PREFIX"]) == (bucket, "vault")
    assert pod["nodeSelector"] == {"node-role.kubernetes.io/control-plane": "true"}
    # Vault's role only accepts tokens for its audience: the job must mount one.
    token = next(v for v in pod["volumes"] if v["name"] == "vault-token")
    (source,) = token["projected"]["sources"]
    assert source["serviceAccountToken"]["audience"] == AUDIENCE
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "vault-token")
    assert (
        env["VAULT_K8S_JWT_FILE"] == f"{mount['mountPath']}/{source['serviceAccountToken']['path']}"
    )


def test_pinned_dependencies_are_the_tested_ones():
    for requirement in REQUIREMENTS:
        name, version = requirement.split("==")
        assert importlib.metadata.version(name) == version, requirement


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


def test_the_cronjob_command_takes_a_snapshot(prod_objects, bao, snapshot_env, tmp_path):
    pod = prod_objects["CronJob"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    code = tmp_path / "code"
    volume = next(v for v in pod["volumes"] if v["name"] == "code")
    for item in volume["configMap"]["items"]:
        target = code / item["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(prod_objects["ConfigMap"]["data"][item["key"]])
    assert sorted(i["path"] for i in volume["configMap"]["items"]) == sorted(MODULES)

    container = pod["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    # Only what differs between a pod and this machine: where the servers and files are.
    env |= {
        "PYTHONPATH": str(code),
        "VAULT_ADDR": bao.url,
        "VAULT_K8S_JWT_FILE": str(snapshot_env["jwt"]),
        "SNAPSHOT_BUCKET": snapshot_env["bucket"],
        **snapshot_env["aws"],
    }
    env.pop("VAULT_CACERT")
    command = [sys.executable, *container["command"][1:]]
    run = subprocess.run(
        command,
        env={"PATH": os.environ["PATH"], **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    keys = list_snapshots(snapshot_env["s3"], snapshot_env["bucket"], "vault")
    assert len(keys) == 1 and keys[0].startswith("vault/raft-")
    assert "stored" in run.stdout + run.stderr
