"""Real servers for the Vault tests: OpenBao (`bao server`, Raft storage), TokenReview, moto.

Everything listens on 127.0.0.1 free ports and lives in pytest's tmp dirs. A failing test gets the
log tail of every OpenBao server that is running at that moment attached to its report.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import os
import re
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

import hvac
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from components.vault.bootstrap import (
    ACCESSOR_PLACEHOLDER,
    BootstrapSpec,
    WaitTimeout,
    duration_seconds,
    read_health,
    role_body,
    wait_until,
)
from tests.conftest import SERVER_START_TIMEOUT, SERVER_STOP_TIMEOUT, free_port

BAO = Path(sys.executable).parent / "bao"

_RUNNING: list[BaoServer] = []


def _pem(obj: Any) -> str:
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM).decode()
    return obj.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


class Pki:
    """A throw-away CA issuing certificates for 127.0.0.1 (servers) and clients."""

    def __init__(self) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vault-tests-ca")])
        self._name = name
        self._cert = (
            self._builder(name, self._key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self.ca_pem = _pem(self._cert)

    def _builder(self, subject: x509.Name, public_key: Any) -> x509.CertificateBuilder:
        now = dt.datetime.now(dt.UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self._name)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(hours=2))
        )

    def issue(self, common_name: str, *, server: bool) -> tuple[str, str]:
        """(certificate PEM, key PEM); server certificates name IP 127.0.0.1."""
        key = ec.generate_private_key(ec.SECP256R1())
        builder = self._builder(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]), key.public_key()
        ).add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        else:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False
            )
        return _pem(builder.sign(self._key, hashes.SHA256())), _pem(key)


@dataclass
class BaoTls:
    """TLS material of a server that requires client certificates (like the Kubernetes API)."""

    ca_pem: str
    client_cert_pem: str
    client_key_pem: str
    ca_file: Path
    client_cert_file: Path
    client_key_file: Path


@dataclass
class BaoServer:
    """One `bao server` process with Raft storage in `workdir`; restartable on the same data."""

    workdir: Path
    seal: Literal["shamir", "static"] = "shamir"
    pki: Pki | None = None
    port: int = field(default_factory=free_port)
    cluster_port: int = field(default_factory=free_port)
    tls: BaoTls | None = None
    _proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.pki else 'http'}://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "bao.log"

    def _write_tls(self, pki: Pki) -> str:
        """Write certificates for a listener that requires client certificates; returns its HCL."""
        server_cert, server_key = pki.issue("openbao", server=True)
        client_cert, client_key = pki.issue("system:admin", server=False)
        files = {}
        for name, text in [
            ("ca.pem", pki.ca_pem),
            ("server.pem", server_cert),
            ("server-key.pem", server_key),
            ("client.pem", client_cert),
            ("client-key.pem", client_key),
        ]:
            files[name] = self.workdir / name
            files[name].write_text(text)
        self.tls = BaoTls(
            pki.ca_pem,
            client_cert,
            client_key,
            files["ca.pem"],
            files["client.pem"],
            files["client-key.pem"],
        )
        return (
            f'tls_cert_file = "{files["server.pem"]}"\n'
            f'  tls_key_file = "{files["server-key.pem"]}"\n'
            f'  tls_client_ca_file = "{files["ca.pem"]}"\n'
            "  tls_require_and_verify_client_cert = true"
        )

    def _write_config(self) -> Path:
        (self.workdir / "raft").mkdir(parents=True, exist_ok=True)
        listener = "tls_disable = true" if self.pki is None else self._write_tls(self.pki)
        seal = ""
        if self.seal == "static":
            key_file = self.workdir / "static-seal.key"
            key_file.write_bytes(os.urandom(32))
            seal = (
                'seal "static" {\n  current_key_id = "k1"\n'
                f'  current_key = "file://{key_file}"\n}}\n'
            )
        config = self.workdir / "bao.hcl"
        config.write_text(
            f'storage "raft" {{\n  path = "{self.workdir / "raft"}"\n  node_id = "n1"\n'
            "  performance_multiplier = 1\n}\n"
            f'listener "tcp" {{\n  address = "127.0.0.1:{self.port}"\n'
            f'  cluster_address = "127.0.0.1:{self.cluster_port}"\n  {listener}\n}}\n'
            f'api_addr = "{self.url}"\ncluster_addr = "https://127.0.0.1:{self.cluster_port}"\n'
            + seal
        )
        return config

    def start(self) -> None:
        config = self.workdir / "bao.hcl"
        if not config.exists():
            config = self._write_config()
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(self.workdir)}
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [str(BAO), "server", f"-config={config}"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.workdir,
            )
        _RUNNING.append(self)

        def probe() -> tuple[bool, str]:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError(f"bao server exited with status {self._proc.returncode}")
            health = read_health(self.client())
            return True, f"initialized={health['initialized']} sealed={health['sealed']}"

        try:
            wait_until(
                f"bao server at {self.url} to answer /v1/sys/health",
                probe,
                timeout=SERVER_START_TIMEOUT,
                progress=print,
            )
        except (WaitTimeout, RuntimeError) as exc:
            self.stop()
            pytest.fail(f"{exc}\n--- bao server log ---\n{self.log_tail()}", pytrace=False)

    def stop(self) -> None:
        """Kill the process: Raft's BoltDB store is synced on every commit, so no data is lost,
        and a graceful shutdown would cost a second or two per server."""
        if self._proc is None:
            return
        self._proc.kill()
        self._proc.wait(timeout=SERVER_STOP_TIMEOUT)
        self._proc = None
        if self in _RUNNING:
            _RUNNING.remove(self)

    def restart(self) -> None:
        """Stop and start on the same data directory and ports (the server comes back sealed)."""
        self.stop()
        self.start()

    def client(self, token: str = "") -> hvac.Client:
        """A client for this server; "" means no token (never VAULT_TOKEN from the environment)."""
        if self.tls is None:
            return hvac.Client(url=self.url, token=token, timeout=10)
        return hvac.Client(
            url=self.url,
            token=token,
            verify=str(self.tls.ca_file),
            cert=(str(self.tls.client_cert_file), str(self.tls.client_key_file)),
            timeout=10,
        )

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Attach the log tail of every running OpenBao server to a failed test's report."""
    report = yield
    if report.failed:
        for server in _RUNNING:
            report.sections.append((f"bao server {server.url} log (tail)", server.log_tail()))
    return report


@pytest.fixture(scope="session")
def pki() -> Pki:
    return Pki()


@pytest.fixture(scope="module")
def start_bao(
    tmp_path_factory: pytest.TempPathFactory, pki: Pki
) -> Iterator[Callable[..., BaoServer]]:
    """`start_bao(seal="shamir"|"static", tls=False)`: a fresh server, stopped at module end."""
    servers: list[BaoServer] = []

    def start(seal: Literal["shamir", "static"] = "shamir", tls: bool = False) -> BaoServer:
        server = BaoServer(tmp_path_factory.mktemp("bao"), seal=seal, pki=pki if tls else None)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def bao(start_bao: Callable[..., BaoServer]) -> BaoServer:
    """A fresh, uninitialised shamir-sealed server shared by the tests of one module."""
    return start_bao()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class JsonHandler(BaseHTTPRequestHandler):
    """Request handler helpers for the JSON stand-ins below."""

    def _answer(self, code: int, body: Any, content_type: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        return json.loads(self.rfile.read(int(self.headers["Content-Length"])))

    def log_message(self, format: str, *args: Any) -> None:
        return


class HttpsServer:
    """`handler` over TLS on 127.0.0.1 with a certificate of `pki`, served by a daemon thread;
    with `client_certs`, clients must present a certificate of `pki` (as for the API server)."""

    def __init__(
        self, handler: type[BaseHTTPRequestHandler], pki: Pki, workdir: Path, client_certs=False
    ):
        self.ca_pem = pki.ca_pem
        cert_pem, key_pem = pki.issue("kubernetes", server=True)
        (workdir / "tls.pem").write_text(cert_pem)
        (workdir / "tls-key.pem").write_text(key_pem)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(workdir / "tls.pem", workdir / "tls-key.pem")
        if client_certs:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(cadata=pki.ca_pem)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


class TokenReviewServer(HttpsServer):
    """HTTPS stand-in for the Kubernetes TokenReview API.

    `POST /apis/authentication.k8s.io/v1/tokenreviews` answers authenticated=true with the service
    account encoded for tokens made by `jwt()`, and authenticated=false for any other token.
    """

    def __init__(self, pki: Pki, workdir: Path):
        self._signing_key = ec.generate_private_key(ec.SECP256R1())
        self._known: dict[str, tuple[str, str]] = {}
        known = self._known

        class Handler(JsonHandler):
            def do_POST(self) -> None:
                if self.path != "/apis/authentication.k8s.io/v1/tokenreviews":
                    self._answer(404, {"kind": "Status", "status": "Failure", "code": 404})
                    return
                review = self._body()
                who = known.get(review["spec"]["token"])
                status: dict[str, Any] = {"authenticated": False}
                if who is not None:
                    namespace, name = who
                    status = {
                        "authenticated": True,
                        "user": {
                            "username": f"system:serviceaccount:{namespace}:{name}",
                            "uid": f"uid-{namespace}-{name}",
                            "groups": [
                                "system:serviceaccounts",
                                f"system:serviceaccounts:{namespace}",
                            ],
                        },
                        "audiences": review["spec"].get("audiences") or [],
                    }
                self._answer(
                    201,
                    {
                        "apiVersion": "authentication.k8s.io/v1",
                        "kind": "TokenReview",
                        "status": status,
                    },
                )

        super().__init__(Handler, pki, workdir)

    def jwt(self, namespace: str, service_account: str, *, known: bool = True) -> str:
        """A signed service-account JWT (audience `vault`); TokenReview accepts it if `known`."""
        now = int(time.time())
        claims = {
            "iss": "https://kubernetes.default.svc.cluster.local",
            "sub": f"system:serviceaccount:{namespace}:{service_account}",
            "aud": ["vault"],
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "kubernetes.io": {
                "namespace": namespace,
                "serviceaccount": {
                    "name": service_account,
                    "uid": f"uid-{namespace}-{service_account}",
                },
            },
        }
        header = _b64url(json.dumps({"alg": "ES256", "typ": "JWT"}).encode())
        payload = _b64url(json.dumps(claims).encode())
        der = self._signing_key.sign(f"{header}.{payload}".encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        token = f"{header}.{payload}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"
        if known:
            self._known[token] = (namespace, service_account)
        return token


class SecretsApiServer(HttpsServer):
    """HTTPS stand-in for the Kubernetes API's Secret paths, requiring a client certificate.

    GET/PUT/DELETE `/api/v1/namespaces/<ns>/secrets/<name>` and POST `.../secrets`, with the API
    server's status codes (404, 409). `bodies` records every request body as sent.
    """

    def __init__(self, pki: Pki, workdir: Path):
        self.secrets: dict[tuple[str, str], dict[str, Any]] = {}
        self.bodies: list[bytes] = []
        secrets, bodies, lock = self.secrets, self.bodies, threading.Lock()
        path_re = re.compile(r"^/api/v1/namespaces/([a-z0-9-]+)/secrets(?:/([a-z0-9-]+))?$")

        class Handler(JsonHandler):
            def _handle(self, method: str) -> None:
                match = path_re.match(self.path)
                if match is None or (method == "POST") == bool(match[2]):
                    self._answer(404, {"kind": "Status", "code": 404, "reason": "NotFound"})
                    return
                namespace = match[1]
                body = None
                if method in ("POST", "PUT"):
                    raw = self.rfile.read(int(self.headers["Content-Length"]))
                    bodies.append(raw)
                    body = json.loads(raw)
                key = (namespace, match[2] or body["metadata"]["name"])
                with lock:
                    current = secrets.get(key)
                    if method == "POST" and current is not None:
                        code, answer = 409, {"kind": "Status", "code": 409}
                    elif method != "POST" and current is None:
                        code, answer = 404, {"kind": "Status", "code": 404, "reason": "NotFound"}
                    elif method == "DELETE":
                        del secrets[key]
                        code, answer = 200, {"kind": "Status", "status": "Success"}
                    elif method == "GET":
                        code, answer = 200, current
                    else:
                        body["metadata"]["namespace"] = namespace
                        secrets[key] = body
                        code, answer = (201 if method == "POST" else 200), body
                self._answer(code, answer)

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def do_PUT(self) -> None:
                self._handle("PUT")

            def do_DELETE(self) -> None:
                self._handle("DELETE")

        super().__init__(Handler, pki, workdir, client_certs=True)


@pytest.fixture(scope="session")
def tokenreview(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenReviewServer]:
    server = TokenReviewServer(pki, tmp_path_factory.mktemp("tokenreview"))
    yield server
    server.close()


@pytest.fixture(scope="session")
def kube_api(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecretsApiServer]:
    server = SecretsApiServer(pki, tmp_path_factory.mktemp("kube-api"))
    yield server
    server.close()


def _configured_problems(client: hvac.Client, spec: BootstrapSpec) -> list[str]:
    problems = []
    mounts = client.sys.list_mounted_secrets_engines()["data"]
    for mount in spec.kv_mounts:
        info = mounts.get(f"{mount.path}/") or {}
        if info.get("type") != "kv" or (info.get("options") or {}).get("version") != "2":
            problems.append(f"{mount.path}/ is not KV v2: {info.get('type')} {info.get('options')}")
    kube = spec.kubernetes
    if kube is not None:
        method = client.sys.list_auth_methods()["data"].get(f"{kube.mount_path}/") or {}
        if method.get("type") != "kubernetes":
            problems.append(f"auth/{kube.mount_path}/ is {method.get('type')}")
        else:
            config = client.auth.kubernetes.read_config(mount_point=kube.mount_path)
            wanted_config = {
                "kubernetes_host": kube.kubernetes_host,
                "disable_local_ca_jwt": kube.disable_local_ca_jwt,
                "pem_keys": [],
                "issuer": "",
                "disable_iss_validation": True,
                "token_reviewer_jwt_set": bool(kube.token_reviewer_jwt),
            }
            for key, value in wanted_config.items():
                if config[key] != value:
                    problems.append(f"config {key} is {config[key]!r}, not {value!r}")
            if (config.get("kubernetes_ca_cert") or "").strip() != (
                kube.kubernetes_ca_cert or ""
            ).strip():
                problems.append("kubernetes_ca_cert differs")
            for role in spec.roles:
                have = client.auth.kubernetes.read_role(role.name, mount_point=kube.mount_path)
                wanted = role_body(role)
                for key in ("bound_service_account_names", "bound_service_account_namespaces"):
                    have[key] = sorted(have[key])
                have["token_policies"] = sorted(have["token_policies"])
                if have["token_ttl"] != duration_seconds(role.ttl):
                    problems.append(f"role {role.name}: token_ttl {have['token_ttl']}")
                differing = {k: have.get(k) for k, v in wanted.items() if have.get(k) != v}
                if differing:
                    problems.append(f"role {role.name}: {differing}")
    accessors = {
        path.rstrip("/"): method["accessor"]
        for path, method in client.sys.list_auth_methods()["data"].items()
    }
    for name, hcl in spec.policies.items():
        rules = client.sys.read_policy(name)["data"]["rules"]
        if spec.kubernetes is not None:
            hcl = hcl.replace(ACCESSOR_PLACEHOLDER, accessors.get(spec.kubernetes.mount_path, "?"))
        if rules.strip() != hcl.strip():
            problems.append(f"policy {name} differs")
    return problems


@pytest.fixture(scope="session")
def assert_configured() -> Callable[[hvac.Client, BootstrapSpec], None]:
    """Check, by reading the server, that everything in a spec is in place."""

    def check(client: hvac.Client, spec: BootstrapSpec) -> None:
        problems = _configured_problems(client, spec)
        assert not problems, "server does not match the spec:\n" + "\n".join(problems)

    return check
