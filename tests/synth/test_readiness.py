"""The readiness gate against a real local HTTPS server that requires client certificates."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import tempfile
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from components.k3s.pki import der_sha256, secure_token
from components.k3s.readiness import (
    ApiCredentials,
    ClusterNotReady,
    ClusterTrustError,
    build_kubeconfig,
    credentials_from_kubeconfig,
    wait_until_ready,
)


@dataclass
class ApiPki:
    ca_pem: str
    server_cert_file: str
    server_key_file: str
    client_cert_pem: str
    client_key_pem: str


def _pem(obj) -> str:
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM).decode()
    return obj.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _cert(
    subject: str,
    key,
    issuer_name,
    issuer_key,
    *,
    ca: bool,
    org: str | None = None,
    san_ip: str | None = None,
    client: bool = False,
) -> x509.Certificate:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, subject)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    name = x509.Name(attrs)
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san_ip:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(san_ip))]),
            critical=False,
        )
    if client:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    return builder.sign(issuer_key or key, hashes.SHA256())


def make_pki() -> ApiPki:
    """A cluster CA, a server certificate for 127.0.0.1 and an admin client certificate."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("test-ca", ca_key, None, None, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _cert("kube-apiserver", server_key, ca.subject, ca_key, ca=False, san_ip="127.0.0.1")
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _cert(
        "platform-admin",
        client_key,
        ca.subject,
        ca_key,
        ca=False,
        org="system:masters",
        client=True,
    )
    folder = Path(tempfile.mkdtemp(prefix="test-pki-"))
    (folder / "server.crt").write_text(_pem(server) + _pem(ca))
    (folder / "server.key").write_text(_pem(server_key))
    return ApiPki(
        _pem(ca),
        str(folder / "server.crt"),
        str(folder / "server.key"),
        _pem(client),
        _pem(client_key),
    )


def serve_tls(handler: type[BaseHTTPRequestHandler], pki: ApiPki) -> ThreadingHTTPServer:
    """`handler` over HTTPS on 127.0.0.1, requiring a client certificate from the test CA, served
    from a thread until `shutdown()`."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki.server_cert_file, pki.server_key_file)
    ctx.load_verify_locations(cadata=pki.ca_pem)
    # As the API server does: Go takes every certificate of its client CA file as a trust anchor,
    # self-signed or not.
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    ctx.verify_mode = ssl.CERT_REQUIRED
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


class FakeApiServer:
    """HTTPS on 127.0.0.1 requiring a client certificate from the CA; /readyz says ok once ready."""

    def __init__(self, pki: ApiPki, ready_after: int):
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests += 1
                ready = self.path == "/readyz" and outer.requests > ready_after
                body = b"ok" if ready else b"[-]etcd failed: reason withheld\nreadyz check failed"
                self.send_response(200 if ready else 500)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = serve_tls(Handler, pki)
        self.url = f"https://127.0.0.1:{self.httpd.server_address[1]}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def pki() -> ApiPki:
    return make_pki()


@pytest.fixture
def api(pki, request):
    server = FakeApiServer(pki, ready_after=getattr(request, "param", 0))
    yield server
    server.stop()


def _creds(api: FakeApiServer, pki: ApiPki, **over) -> ApiCredentials:
    fields = {
        "api_url": api.url,
        "ca_pem": pki.ca_pem,
        "client_cert_pem": pki.client_cert_pem,
        "client_key_pem": pki.client_key_pem,
        **over,
    }
    return ApiCredentials(**fields)


def test_ready_at_once(api, pki):
    messages = []
    waited = wait_until_ready(_creds(api, pki), timeout=5, interval=0.05, progress=messages.append)
    assert waited < 5 and api.requests == 1
    assert messages == [f"{api.url}/readyz is ready after 0s (1 attempts)"]


@pytest.mark.parametrize("api", [3], indirect=True)
def test_waits_with_progress_until_ready(api, pki):
    messages = []
    wait_until_ready(_creds(api, pki), timeout=10, interval=0.05, progress=messages.append)
    assert api.requests == 4
    assert len(messages) == 4
    assert all(m.startswith(f"waiting for {api.url}/readyz (attempt ") for m in messages[:3])
    assert "HTTP 500" in messages[0]


@pytest.mark.parametrize("api", [10_000], indirect=True)
def test_times_out_with_a_clear_message(api, pki):
    with pytest.raises(ClusterNotReady) as err:
        wait_until_ready(_creds(api, pki), timeout=0.5, interval=0.1, progress=lambda m: None)
    message = str(err.value)
    assert message.startswith(
        f"the Kubernetes API server at {api.url}/readyz was not ready within 0s ("
    )
    assert "last answer: HTTP 500: [-]etcd failed" in message


def test_rejects_a_server_from_another_ca(api, pki):
    other = make_pki()
    with pytest.raises(ClusterTrustError) as err:
        wait_until_ready(
            _creds(api, pki, ca_pem=other.ca_pem), timeout=5, interval=0.05, progress=lambda m: None
        )
    assert "does not verify" in str(err.value)


def test_server_refuses_a_client_without_the_cluster_certificate(api, pki):
    stranger = make_pki()
    creds = _creds(
        api, pki, client_cert_pem=stranger.client_cert_pem, client_key_pem=stranger.client_key_pem
    )
    with pytest.raises(ClusterNotReady) as err:
        wait_until_ready(creds, timeout=0.4, interval=0.1, progress=lambda m: None)
    assert api.requests == 0
    assert pki.client_key_pem not in str(err.value) and stranger.client_key_pem not in str(
        err.value
    )


def test_nothing_listening_times_out(pki):
    creds = ApiCredentials(
        "https://127.0.0.1:9", pki.ca_pem, pki.client_cert_pem, pki.client_key_pem
    )
    with pytest.raises(ClusterNotReady, match="Connection refused"):
        wait_until_ready(creds, timeout=0.3, interval=0.1, progress=lambda m: None)


def test_program_kubeconfig_reaches_the_server(api, pki):
    text = build_kubeconfig("dev", _creds(api, pki))
    creds = credentials_from_kubeconfig(text, None)
    assert creds == _creds(api, pki)
    wait_until_ready(creds, timeout=5, interval=0.05, progress=lambda m: None)
    assert yaml.safe_load(text)["current-context"] == "dev"
    with pytest.raises(ValueError, match="context 'prod' is not in the kubeconfig"):
        credentials_from_kubeconfig(text, "prod")


def test_credentials_repr_hides_the_key(pki):
    creds = ApiCredentials("https://x:6443", pki.ca_pem, pki.client_cert_pem, pki.client_key_pem)
    assert "PRIVATE" not in repr(creds)


def test_secure_token_hashes_the_root_der(pki):
    cert = x509.load_pem_x509_certificate(pki.ca_pem.encode())
    fingerprint = cert.fingerprint(hashes.SHA256()).hex()
    assert der_sha256(pki.ca_pem) == fingerprint
    assert secure_token(pki.ca_pem, "server", "pw") == f"K10{fingerprint}::server:pw"
    with pytest.raises(ValueError):
        der_sha256("not a certificate")


def test_local_gate_keeps_only_its_context_and_rereads_the_file(api, pki, tmp_path):
    from components.k3s.readiness import _ApiReadinessProvider

    ours = yaml.safe_load(build_kubeconfig("k3d-platform", _creds(api, pki)))
    other = yaml.safe_load(build_kubeconfig("elsewhere", _creds(api, pki, token="other-token")))
    merged = {**ours, **{k: ours[k] + other[k] for k in ("clusters", "users", "contexts")}}
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(merged))
    props = {
        "name": "gate",
        "kubeconfig_path": str(path),
        "context": "k3d-platform",
        "timeout_seconds": 5,
    }
    provider = _ApiReadinessProvider()
    outs = provider.create(props).outs
    stored = yaml.safe_load(outs["kubeconfig"])
    assert [c["name"] for c in stored["contexts"]] == ["k3d-platform"]
    assert "other-token" not in outs["kubeconfig"]
    assert not provider.diff("gate", outs, props).changes, "the same file: nothing to do"

    # A recreated cluster under the same path: new credentials in the file are a change.
    path.write_text(yaml.safe_dump(other | {"current-context": "elsewhere"}))
    assert provider.diff("gate", outs, props | {"context": "elsewhere"}).changes
    ours["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"
    path.write_text(yaml.safe_dump(ours))
    assert provider.diff("gate", outs, props).changes
    path.unlink()
    assert provider.diff("gate", outs, props).changes, "a missing file is a change, not a crash"


def test_gate_with_credentials_changes_only_when_they_do(api, pki):
    from pulumi.output import Unknown

    from components.k3s.readiness import _ApiReadinessProvider

    creds = _creds(api, pki)
    props = {
        "name": "gate",
        "api_url": creds.api_url,
        "ca_pem": creds.ca_pem,
        "client_cert_pem": creds.client_cert_pem,
        "client_key_pem": creds.client_key_pem,
        "timeout_seconds": 5,
        "kubeconfig": None,
    }
    provider = _ApiReadinessProvider()
    outs = provider.create(props).outs
    assert not provider.diff("gate", outs, props).changes
    assert provider.diff("gate", outs, props | {"api_url": Unknown()}).changes
    assert provider.diff("gate", outs, props | {"ca_pem": "another CA"}).changes
