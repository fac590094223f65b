"""The node boot script, run for real in a sandbox directory against an AWS API emulator (moto
server on 127.0.0.1) and a release server on 127.0.0.1 that serves the K3s binary, install.sh
and the ECR credential provider; the served install.sh records how it was called."""

from __future__ import annotations

import hashlib
import json
import os
import ssl
import stat
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import pytest
import yaml

from components.k3s.userdata import (
    Download,
    EtcdSnapshots,
    NodeBoot,
    agent_k3s_config,
    boot_env,
)
from tests.conftest import REPO, free_port

BOOT = REPO / "components" / "k3s" / "boot.sh"
VENV_BIN = Path(sys.executable).parent
REGION = "eu-west-1"
SERVER_SECRET = {
    "token": "K10" + "a" * 64 + "::server:server-password-value",
    "agentToken": "agent-password-value",
}
CA_SECRET = {
    "caFiles": {
        "server-ca.crt": "-----BEGIN CERTIFICATE-----\nserver\n-----END CERTIFICATE-----\n",
        "server-ca.key": "-----BEGIN EC PRIVATE KEY-----\nserver-key\n-----END EC KEY-----\n",
        "etcd/peer-ca.key": "-----BEGIN EC PRIVATE KEY-----\npeer-key\n-----END EC KEY-----\n",
        "service.key": "-----BEGIN RSA PRIVATE KEY-----\nsa\n-----END RSA PRIVATE KEY-----\n",
    },
}
# Stands in for the K3s binary: records how it is run (a restore runs it before the service).
K3S_BINARY = b'#!/bin/sh\necho "$@" >> "$(dirname "$0")/k3s-calls"\n'
PROVIDER_BINARY = b"#!/bin/sh\necho credential-provider\n"
# Stands in for K3s's install.sh: it must find the verified binary where boot.sh put it.
INSTALL_SCRIPT = b"""#!/bin/sh
set -e
[ -x "$INSTALL_K3S_BIN_DIR/k3s" ] || { echo "install.sh: no k3s binary" >&2; exit 1; }
printf '{"exec": "%s", "version": "%s", "skipDownload": "%s", "skipStart": "%s"}' \\
  "$INSTALL_K3S_EXEC" "$INSTALL_K3S_VERSION" \\
  "$INSTALL_K3S_SKIP_DOWNLOAD" "$INSTALL_K3S_SKIP_START" \\
  > "$INSTALL_K3S_BIN_DIR/install-calls.json"
"""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def aws_env(moto_server, monkeypatch):
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL": moto_server.endpoint,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


def _secret(name: str, value: str) -> str:
    client = boto3.client("secretsmanager", region_name=REGION)
    return client.create_secret(Name=name, SecretString=value)["ARN"]


class ReleaseServer:
    """HTTP on 127.0.0.1 serving `files` (path -> bytes); a test swaps a file's bytes."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        self.outages: dict[str, int] = {}
        """path -> how many more requests answer 503 before the file is served."""
        files, requests, outages = self.files, self.requests, self.outages

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                requests.append(self.path)
                if outages.get(self.path, 0) > 0:
                    outages[self.path] -= 1
                    self.send_response(503)
                    self.end_headers()
                    return
                body = files.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.end_headers()
                self.wfile.write(body if body is not None else b"not found")

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def publish(self, path: str, body: bytes) -> Download:
        """Serves `body` at `path` and returns the download pinned to it."""
        self.files[path] = body
        return Download(f"{self.base}{path}", sha256(body))

    def stop(self) -> None:
        self._server.shutdown()


@pytest.fixture
def release():
    server = ReleaseServer()
    yield server
    server.stop()


class Sandbox:
    def __init__(self, root: Path, env: dict[str, str], release: ReleaseServer):
        self.root, self.env, self.release = root, env, release
        self.calls = root / "usr/local/bin/install-calls.json"
        self.k3s = release.publish("/k3s-io/k3s/releases/download/k3s", K3S_BINARY)
        self.installer = release.publish("/k3s-io/k3s/install.sh", INSTALL_SCRIPT)

    def run(
        self,
        kind: str,
        secret_id: str,
        servers: list[str],
        api_port: int,
        k3s_config: dict,
        credential_provider: Download | None = None,
        instance_id: str = "i-0000000000000000a",
        extra_env: dict[str, str] | None = None,
        snapshots: EtcdSnapshots | None = None,
        ca_secret: str | None = None,
    ) -> subprocess.CompletedProcess:
        """`ca_secret`: the CA secret's ARN; by default the server that may found the cluster
        gets a new one holding CA_SECRET, and other nodes none."""
        if ca_secret is None and kind == "server-init":
            ca_secret = _secret(f"ca-{self.root.name}", json.dumps(CA_SECRET))
        boot = NodeBoot(
            kind=kind,
            region=REGION,
            secret_id=secret_id,
            k3s_version="v1.34.10+k3s1",
            k3s_binary=self.k3s,
            k3s_installer=self.installer,
            server_addresses=servers,
            k3s_config=k3s_config,
            credential_provider=credential_provider,
            snapshots=snapshots,
            ca_secret_id=ca_secret or "",
        )
        (self.root / "etc/platform").mkdir(parents=True, exist_ok=True)
        (self.root / "etc/platform/boot.env").write_text(boot_env(boot))
        (self.root / "etc/platform/k3s-config.yaml").write_text(yaml.safe_dump(k3s_config))
        env = {
            **os.environ,
            **self.env,
            "PLATFORM_ROOT": str(self.root),
            "ZONE": "eu-west-1b",
            "INSTANCE_ID": instance_id,
            "API_PORT": str(api_port),
            "SECRET_ATTEMPTS": "2",
            "JOIN_ATTEMPTS": "2",
            "DOWNLOAD_ATTEMPTS": "2",
            "RETRY_SECONDS": "0",
            "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
            **(extra_env or {}),
        }
        return subprocess.run(
            ["bash", str(BOOT)], env=env, capture_output=True, text=True, timeout=120
        )

    def mode(self, rel: str) -> int:
        return stat.S_IMODE((self.root / rel).stat().st_mode)

    def config(self) -> dict:
        return yaml.safe_load((self.root / "etc/rancher/k3s/config.yaml").read_text())


@pytest.fixture
def sandbox(tmp_path, aws_env, release):
    return Sandbox(tmp_path, aws_env, release)


@pytest.fixture(scope="module")
def live_server():
    """A stand-in for a running K3s server: HTTPS on 127.0.0.1 that answers /cacerts."""
    from tests.synth.test_readiness import make_pki

    pki = make_pki()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/cacerts" else 404)
            self.end_headers()
            self.wfile.write(pki.ca_pem.encode())

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki.server_cert_file, pki.server_key_file)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


def test_first_server_writes_ca_files_and_config(sandbox):
    arn = _secret("first-server", json.dumps(SERVER_SECRET))
    server_config = {"secrets-encryption": True, "tls-san": ["203.0.113.10"]}
    run = sandbox.run("server-init", arn, ["127.0.0.1"], free_port(), server_config)
    assert run.returncode == 0, run.stderr
    tls = "var/lib/rancher/k3s/server/tls"
    for name, pem in CA_SECRET["caFiles"].items():
        assert (sandbox.root / tls / name).read_text() == pem
        assert sandbox.mode(f"{tls}/{name}") == 0o600
    assert sandbox.mode(f"{tls}/etcd") == 0o700
    assert (sandbox.root / "etc/rancher/k3s/token").read_text().strip() == SERVER_SECRET["token"]
    assert (sandbox.root / "etc/rancher/k3s/agent-token").read_text().strip() == SERVER_SECRET[
        "agentToken"
    ]
    for rel in (
        "etc/rancher/k3s/token",
        "etc/rancher/k3s/agent-token",
        "etc/rancher/k3s/config.yaml",
    ):
        assert sandbox.mode(rel) == 0o600, rel
    config = sandbox.config()
    assert config == {
        **server_config,
        "token-file": "/etc/rancher/k3s/token",
        "agent-token-file": "/etc/rancher/k3s/agent-token",
        "cluster-init": True,
        "node-label": ["topology.kubernetes.io/zone=eu-west-1b"],
    }
    assert json.loads(sandbox.calls.read_text()) == {
        "exec": "server",
        "version": "v1.34.10+k3s1",
        "skipDownload": "true",
        "skipStart": "false",
    }
    assert (sandbox.root / "usr/local/bin/k3s").read_bytes() == K3S_BINARY
    assert sandbox.mode("usr/local/bin/k3s") == 0o755
    for secret in (SERVER_SECRET["token"], SERVER_SECRET["agentToken"], "server-key"):
        assert secret not in run.stderr + run.stdout


def test_replacement_first_server_joins_the_running_cluster(sandbox, live_server):
    arn = _secret("replacement", json.dumps(SERVER_SECRET))
    run = sandbox.run("server-init", arn, ["127.0.0.1"], live_server, {"secrets-encryption": True})
    assert run.returncode == 0, run.stderr
    assert sandbox.config()["server"] == f"https://127.0.0.1:{live_server}"
    assert "cluster-init" not in sandbox.config()
    assert not (sandbox.root / "var/lib/rancher/k3s/server/tls").exists()
    assert "joining it" in run.stderr


def test_agent_joins_with_its_token_only(sandbox, live_server):
    token = "K10" + "b" * 64 + "::node:agent-password-value"
    arn = _secret("agent", json.dumps({"token": token}))
    run = sandbox.run("agent", arn, ["127.0.0.1"], live_server, agent_k3s_config())
    assert run.returncode == 0, run.stderr
    config = sandbox.config()
    assert config["server"] == f"https://127.0.0.1:{live_server}"
    assert config["token-file"] == "/etc/rancher/k3s/token" and "agent-token-file" not in config
    assert (sandbox.root / "etc/rancher/k3s/token").read_text().strip() == token
    assert json.loads(sandbox.calls.read_text())["exec"] == "agent"


def test_agent_fails_when_no_server_answers(sandbox):
    arn = _secret("agent-alone", json.dumps({"token": "x"}))
    run = sandbox.run("agent", arn, ["127.0.0.1"], free_port(), agent_k3s_config())
    assert run.returncode != 0
    assert "no K3s server answered" in run.stderr
    assert not sandbox.calls.exists()


def test_missing_secret_fails_loudly(sandbox):
    missing = f"arn:aws:secretsmanager:{REGION}:123456789012:secret:absent-AbCdEf"
    run = sandbox.run("server-init", missing, ["127.0.0.1"], free_port(), {})
    assert run.returncode != 0
    assert f"cannot read bootstrap secret {missing}: " in run.stderr
    assert "(gave up after 2 attempts)" in run.stderr
    assert "ResourceNotFoundException" in run.stderr
    assert not sandbox.calls.exists(), "K3s must not be installed without its secret"


@pytest.mark.parametrize(
    "value,ca_value,message",
    [
        ("not json", json.dumps(CA_SECRET), "bootstrap secret is not JSON"),
        (json.dumps({"agentToken": "x"}), json.dumps(CA_SECRET), "bootstrap secret has no token"),
        (json.dumps(SERVER_SECRET), "not json", "CA secret is not JSON"),
        (json.dumps(SERVER_SECRET), json.dumps({"token": "t"}), "CA secret has no caFiles"),
    ],
    ids=["not-json", "no-token", "ca-not-json", "no-ca-files"],
)
def test_unusable_secret_fails_loudly(sandbox, request, value, ca_value, message):
    arn = _secret(f"bad-join-{request.node.callspec.id}", value)
    ca = _secret(f"bad-cas-{request.node.callspec.id}", ca_value)
    run = sandbox.run("server-init", arn, ["127.0.0.1"], free_port(), {}, ca_secret=ca)
    assert run.returncode != 0
    assert message in run.stderr
    assert not sandbox.calls.exists()


def test_unreadable_secret_fails_loudly(sandbox, monkeypatch):
    arn = _secret("denied", json.dumps(SERVER_SECRET))
    sandbox.env = {
        **sandbox.env,
        "AWS_ACCESS_KEY_ID": "",
        "AWS_SECRET_ACCESS_KEY": "",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
        "AWS_CONFIG_FILE": "/nonexistent",
    }
    run = sandbox.run("server-init", arn, ["127.0.0.1"], free_port(), {})
    assert run.returncode != 0
    assert "cannot read bootstrap secret" in run.stderr


def _agent_in_group(name: str) -> str:
    """An instance launched by a real (emulated) Auto Scaling group, as agents are."""
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.0.0/24")["Subnet"]["SubnetId"]
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    ec2.create_launch_template(
        LaunchTemplateName=name, LaunchTemplateData={"ImageId": image, "InstanceType": "t3.large"}
    )
    groups = boto3.client("autoscaling", region_name=REGION)
    groups.create_auto_scaling_group(
        AutoScalingGroupName=name,
        LaunchTemplate={"LaunchTemplateName": name, "Version": "1"},
        MinSize=1,
        MaxSize=1,
        DesiredCapacity=1,
        VPCZoneIdentifier=subnet,
    )
    (group,) = groups.describe_auto_scaling_groups(AutoScalingGroupNames=[name])[
        "AutoScalingGroups"
    ]
    return group["Instances"][0]["InstanceId"]


def _health(instance_id: str) -> str:
    groups = boto3.client("autoscaling", region_name=REGION)
    (instance,) = groups.describe_auto_scaling_instances(InstanceIds=[instance_id])[
        "AutoScalingInstances"
    ]
    return instance["HealthStatus"]


def _boot_tag(instance_id: str) -> str | None:
    ec2 = boto3.client("ec2", region_name=REGION)
    tags = ec2.describe_tags(
        Filters=[
            {"Name": "resource-id", "Values": [instance_id]},
            {"Name": "key", "Values": ["platform:boot"]},
        ]
    )["Tags"]
    return tags[0]["Value"] if tags else None


def test_corrupted_k3s_download_fails_the_boot_and_the_group_replaces_the_agent(
    sandbox, live_server
):
    instance = _agent_in_group("agents-corrupt")
    arn = _secret("agent-corrupt", json.dumps({"token": "t"}))
    good = sandbox.release.files["/k3s-io/k3s/releases/download/k3s"]
    sandbox.release.files["/k3s-io/k3s/releases/download/k3s"] = good[:-4] + b"XXXX"
    run = sandbox.run(
        "agent", arn, ["127.0.0.1"], live_server, agent_k3s_config(), instance_id=instance
    )
    assert run.returncode != 0
    bad = sha256(good[:-4] + b"XXXX")
    assert (
        f"cannot download {sandbox.k3s.url}: sha256 {bad} does not match the pinned "
        f"{sandbox.k3s.sha256} (gave up after 2 attempts)"
    ) in run.stderr
    assert "retrying (1/2)" in run.stderr
    assert not (sandbox.root / "usr/local/bin/k3s").exists()
    assert not sandbox.calls.exists(), "install.sh must not run after a failed download"
    assert _boot_tag(instance) == "failed"
    assert _health(instance).lower() == "unhealthy"

    sandbox.release.files["/k3s-io/k3s/releases/download/k3s"] = good
    run = sandbox.run(
        "agent", arn, ["127.0.0.1"], live_server, agent_k3s_config(), instance_id=instance
    )
    assert run.returncode == 0, run.stderr
    assert (sandbox.root / "usr/local/bin/k3s").read_bytes() == good
    assert json.loads(sandbox.calls.read_text())["exec"] == "agent"


def test_a_transient_download_error_is_retried(sandbox, live_server):
    arn = _secret("agent-flaky", json.dumps({"token": "t"}))
    path = "/k3s-io/k3s/install.sh"
    sandbox.release.outages[path] = 1
    run = sandbox.run(
        "agent",
        arn,
        ["127.0.0.1"],
        live_server,
        agent_k3s_config(),
        extra_env={"RETRY_SECONDS": "1"},
    )
    assert run.returncode == 0, run.stderr
    assert f"cannot download {sandbox.installer.url}: " in run.stderr
    assert "503" in run.stderr and "retrying (1/2)" in run.stderr
    assert sandbox.release.requests.count(path) == 2


def test_a_failed_server_boot_is_tagged_not_sent_to_a_group(sandbox):
    ec2 = boto3.client("ec2", region_name=REGION)
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    (instance,) = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1)["Instances"]
    arn = _secret("server-corrupt-installer", json.dumps(SERVER_SECRET))
    sandbox.release.files["/k3s-io/k3s/install.sh"] = b"#!/bin/sh\necho tampered\n"
    run = sandbox.run(
        "server-init",
        arn,
        ["127.0.0.1"],
        free_port(),
        {},
        instance_id=instance["InstanceId"],
    )
    assert run.returncode != 0
    assert f"cannot download {sandbox.installer.url}: sha256 " in run.stderr
    assert "boot of this server failed" in run.stderr
    assert _boot_tag(instance["InstanceId"]) == "failed"
    assert "cannot mark" not in run.stderr and "Auto Scaling" not in run.stderr


def test_aws_cli_messages_never_reach_the_secret(sandbox, tmp_path):
    """Whatever the CLI prints on stderr (warnings, retries) stays out of the token files."""
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "aws").write_text(
        f'#!/bin/sh\necho "WARNING: retrying after a throttled call" >&2\n'
        f'exec {VENV_BIN / "aws"} "$@"\n'
    )
    (shim / "aws").chmod(0o755)
    arn = _secret("noisy-cli", json.dumps(SERVER_SECRET))
    run = sandbox.run(
        "server-init",
        arn,
        ["127.0.0.1"],
        free_port(),
        {},
        extra_env={"PATH": f"{shim}:{VENV_BIN}:{os.environ['PATH']}"},
    )
    assert run.returncode == 0, run.stderr
    token = (sandbox.root / "etc/rancher/k3s/token").read_text()
    assert token == SERVER_SECRET["token"] + "\n"


def test_agent_installs_the_pinned_ecr_credential_provider(sandbox, live_server):
    provider = sandbox.release.publish("/provider/ecr-credential-provider", PROVIDER_BINARY)
    arn = _secret("agent-ecr", json.dumps({"token": "t"}))
    run = sandbox.run("agent", arn, ["127.0.0.1"], live_server, agent_k3s_config(), provider)
    assert run.returncode == 0, run.stderr
    binary = "var/lib/rancher/credentialprovider/bin/ecr-credential-provider"
    assert (sandbox.root / binary).read_bytes() == PROVIDER_BINARY
    assert sandbox.mode(binary) == 0o755
    assert "/provider/ecr-credential-provider.sha256" not in sandbox.release.requests


def test_an_unpinned_provider_is_checked_against_the_published_digest(sandbox, live_server):
    path = "/provider/ecr-credential-provider-linux-amd64"
    url = sandbox.release.publish(path, PROVIDER_BINARY).url
    sandbox.release.files[f"{path}.sha256"] = f"{sha256(b'other')}  x\n".encode()
    arn = _secret("agent-ecr-sidecar", json.dumps({"token": "t"}))
    args = ("agent", arn, ["127.0.0.1"], live_server, agent_k3s_config(), Download(url, ""))
    run = sandbox.run(*args)
    assert run.returncode != 0
    assert f"cannot download {url}: sha256 {sha256(PROVIDER_BINARY)} does not match" in run.stderr
    assert not sandbox.calls.exists()

    sandbox.release.files[f"{path}.sha256"] = f"{sha256(PROVIDER_BINARY)}  x\n".encode()
    run = sandbox.run(*args)
    assert run.returncode == 0, run.stderr
    binary = sandbox.root / "var/lib/rancher/credentialprovider/bin/ecr-credential-provider"
    assert binary.read_bytes() == PROVIDER_BINARY


def _snapshot_bucket(name: str, keys: list[str]) -> str:
    """A bucket holding `keys` in this order, each newer than the one before."""
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
    for i, key in enumerate(keys):
        if i:
            time.sleep(1.1)  # LastModified counts whole seconds
        s3.put_object(Bucket=name, Key=key, Body=b"snapshot")
    return name


def _systemctl_shim(tmp_path: Path) -> tuple[dict[str, str], Path]:
    shim = tmp_path / "shim"
    shim.mkdir()
    calls = tmp_path / "systemctl-calls"
    (shim / "systemctl").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (shim / "systemctl").chmod(0o755)
    return {"PATH": f"{shim}:{VENV_BIN}:{os.environ['PATH']}"}, calls


def test_a_founding_server_restores_the_newest_snapshot_of_its_cluster(sandbox, tmp_path):
    """Dev's replaced server comes back with the cluster's data, not an empty cluster."""
    bucket = _snapshot_bucket(
        "restore-snapshots",
        [
            "etcd/etcd-snapshot-0a0a0a0a-ip-10-20-0-10-aaaa-1700000000.zip",
            "etcd/etcd-snapshot-0a0a0a0a-ip-10-20-0-10-aaaa-1700021600.zip",
            # A cluster this bucket held before (a destroy that kept the data): never restored.
            "etcd/etcd-snapshot-0b0b0b0b-ip-10-20-0-10-bbbb-1700043200.zip",
        ],
    )
    snapshots = EtcdSnapshots(bucket, REGION, "0 */6 * * *", 5, name="etcd-snapshot-0a0a0a0a")
    env, systemctl = _systemctl_shim(tmp_path)
    arn = _secret("restoring-server", json.dumps(SERVER_SECRET))
    config = {"secrets-encryption": True}
    run = sandbox.run(
        "server-init", arn, ["127.0.0.1"], free_port(), config, extra_env=env, snapshots=snapshots
    )
    assert run.returncode == 0, run.stderr
    newest = "etcd-snapshot-0a0a0a0a-ip-10-20-0-10-aaaa-1700021600.zip"
    assert f"restoring etcd from s3://{bucket}/etcd/{newest}" in run.stderr
    assert json.loads(sandbox.calls.read_text())["skipStart"] == "true"
    k3s_calls = (sandbox.root / "usr/local/bin/k3s-calls").read_text().splitlines()
    assert k3s_calls == [f"server --cluster-reset --cluster-reset-restore-path={newest}"]
    assert systemctl.read_text().splitlines() == ["start k3s"]
    assert sandbox.config()["cluster-init"] is True


def test_a_founding_server_without_snapshots_starts_an_empty_cluster(sandbox, tmp_path):
    bucket = _snapshot_bucket(
        "fresh-snapshots", ["etcd/etcd-snapshot-0b0b0b0b-ip-10-20-0-10-bbbb-1700043200.zip"]
    )
    snapshots = EtcdSnapshots(bucket, REGION, "0 */6 * * *", 5, name="etcd-snapshot-0a0a0a0a")
    env, systemctl = _systemctl_shim(tmp_path)
    arn = _secret("fresh-server", json.dumps(SERVER_SECRET))
    run = sandbox.run(
        "server-init", arn, ["127.0.0.1"], free_port(), {}, extra_env=env, snapshots=snapshots
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(sandbox.calls.read_text())["skipStart"] == "false"
    assert not (sandbox.root / "usr/local/bin/k3s-calls").exists()
    assert not systemctl.exists()


def test_only_the_founding_server_reads_the_ca_keys(sandbox, live_server):
    """A joining server is never given the CA secret; a founding one fails without it."""
    arn = _secret("joining-server", json.dumps(SERVER_SECRET))
    run = sandbox.run("server", arn, ["127.0.0.1"], live_server, {"secrets-encryption": True})
    assert run.returncode == 0, run.stderr
    assert "CA_SECRET_ID=''" in (sandbox.root / "etc/platform/boot.env").read_text()
    assert not (sandbox.root / "var/lib/rancher/k3s/server/tls").exists()

    sandbox.calls.unlink()
    missing = f"arn:aws:secretsmanager:{REGION}:123456789012:secret:no-ca-AbCdEf"
    run = sandbox.run("server-init", arn, ["127.0.0.1"], free_port(), {}, ca_secret=missing)
    assert run.returncode != 0
    assert f"cannot read CA secret {missing}: " in run.stderr
    assert not sandbox.calls.exists()
