"""The node boot script, run for real in a sandbox directory against an AWS API emulator (moto
server on 127.0.0.1); only the K3s download/install step is replaced by a stub."""

from __future__ import annotations

import json
import os
import ssl
import stat
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import pytest
import yaml

from components.k3s.userdata import NodeBoot, agent_k3s_config, boot_env
from tests.conftest import REPO, free_port

BOOT = REPO / "components" / "k3s" / "boot.sh"
VENV_BIN = Path(sys.executable).parent
REGION = "eu-west-1"
SERVER_SECRET = {
    "token": "K10" + "a" * 64 + "::server:server-password-value",
    "agentToken": "agent-password-value",
    "caFiles": {
        "server-ca.crt": "-----BEGIN CERTIFICATE-----\nserver\n-----END CERTIFICATE-----\n",
        "server-ca.key": "-----BEGIN EC PRIVATE KEY-----\nserver-key\n-----END EC KEY-----\n",
        "etcd/peer-ca.key": "-----BEGIN EC PRIVATE KEY-----\npeer-key\n-----END EC KEY-----\n",
        "service.key": "-----BEGIN RSA PRIVATE KEY-----\nsa\n-----END RSA PRIVATE KEY-----\n",
    },
}


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


class Sandbox:
    def __init__(self, root: Path, env: dict[str, str]):
        self.root, self.env = root, env
        self.calls = root / "install-calls.json"
        stub = root / "install-k3s"
        stub.write_text(
            "#!/bin/sh\n"
            f'printf \'{{"exec": "%s", "version": "%s"}}\' '
            f'"$INSTALL_K3S_EXEC" "$INSTALL_K3S_VERSION" > {self.calls}\n'
        )
        stub.chmod(0o755)
        self.stub = stub

    def run(
        self,
        kind: str,
        secret_id: str,
        servers: list[str],
        api_port: int,
        k3s_config: dict,
        credential_provider_url: str = "",
    ) -> subprocess.CompletedProcess:
        boot = NodeBoot(
            kind=kind,
            region=REGION,
            secret_id=secret_id,
            k3s_version="v1.34.10+k3s1",
            server_addresses=servers,
            k3s_config=k3s_config,
            credential_provider_url=credential_provider_url,
        )
        (self.root / "etc/platform").mkdir(parents=True, exist_ok=True)
        (self.root / "etc/platform/boot.env").write_text(boot_env(boot))
        (self.root / "etc/platform/k3s-config.yaml").write_text(yaml.safe_dump(k3s_config))
        env = {
            **os.environ,
            **self.env,
            "PLATFORM_ROOT": str(self.root),
            "K3S_INSTALL_COMMAND": str(self.stub),
            "ZONE": "eu-west-1b",
            "API_PORT": str(api_port),
            "SECRET_ATTEMPTS": "2",
            "JOIN_ATTEMPTS": "2",
            "RETRY_SECONDS": "0",
            "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
        }
        return subprocess.run(
            ["bash", str(BOOT)], env=env, capture_output=True, text=True, timeout=60
        )

    def mode(self, rel: str) -> int:
        return stat.S_IMODE((self.root / rel).stat().st_mode)

    def config(self) -> dict:
        return yaml.safe_load((self.root / "etc/rancher/k3s/config.yaml").read_text())


@pytest.fixture
def sandbox(tmp_path, aws_env):
    return Sandbox(tmp_path, aws_env)


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
    for name, pem in SERVER_SECRET["caFiles"].items():
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
    assert json.loads(sandbox.calls.read_text()) == {"exec": "server", "version": "v1.34.10+k3s1"}
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
    assert f"cannot read bootstrap secret {missing} after 2 attempts" in run.stderr
    assert "ResourceNotFoundException" in run.stderr
    assert not sandbox.calls.exists(), "K3s must not be installed without its secret"


@pytest.mark.parametrize(
    "value,message",
    [
        ("not json", "bootstrap secret is not JSON"),
        (json.dumps({"agentToken": "x"}), "bootstrap secret has no token"),
        (json.dumps({"token": "t"}), "bootstrap secret has no caFiles"),
    ],
)
def test_unusable_secret_fails_loudly(sandbox, value, message):
    arn = _secret(f"bad-{abs(hash(value))}", value)
    run = sandbox.run("server-init", arn, ["127.0.0.1"], free_port(), {})
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


@pytest.fixture
def binary_server():
    """Serves a stand-in ecr-credential-provider binary over HTTP on 127.0.0.1."""
    payload = b"#!/bin/sh\necho credential-provider\n"

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            found = self.path.endswith("/ecr-credential-provider-linux-amd64")
            self.send_response(200 if found else 404)
            self.end_headers()
            self.wfile.write(payload if found else b"not found")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", payload
    server.shutdown()


def test_agent_installs_the_ecr_credential_provider(sandbox, live_server, binary_server):
    base, payload = binary_server
    arn = _secret("agent-ecr", json.dumps({"token": "t"}))
    url = f"{base}/v1.34.0/linux/amd64/ecr-credential-provider-linux-amd64"
    run = sandbox.run("agent", arn, ["127.0.0.1"], live_server, agent_k3s_config(), url)
    assert run.returncode == 0, run.stderr
    binary = "var/lib/rancher/credentialprovider/bin/ecr-credential-provider"
    assert (sandbox.root / binary).read_bytes() == payload
    assert sandbox.mode(binary) == 0o755


def test_failed_credential_provider_download_stops_the_boot(sandbox, live_server, binary_server):
    base, _ = binary_server
    arn = _secret("agent-ecr-missing", json.dumps({"token": "t"}))
    run = sandbox.run(
        "agent", arn, ["127.0.0.1"], live_server, agent_k3s_config(), f"{base}/missing"
    )
    assert run.returncode != 0
    assert f"cannot download the ECR credential provider from {base}/missing" in run.stderr
    assert not sandbox.calls.exists()
