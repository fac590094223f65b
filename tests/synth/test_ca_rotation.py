"""CA rotation (docs/operations.md, "Rotate credentials"), step by step with real certificates.

The program's ClusterPki runs under mocks that mint what pulumi_tls would (real keys, CSRs and
certificates from the inputs the program gives, kept by resource name the way Pulumi state keeps
them between runs). Each step's files then go where K3s puts them: `k3s certificate rotate-ca`'s
own check decides whether the cluster would take them (replayed with `openssl verify`), and a real
mutual-TLS server whose client CA file is the step's `client-ca.crt` stands in for the API server
the readiness gate must still reach.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import boto3
import pulumi
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from components.k3s.pki import ClusterPki, ClusterPkiArgs
from components.k3s.readiness import (
    ApiCredentials,
    ClusterNotReady,
    ClusterTrustError,
    wait_until_ready,
)
from components.k3s.userdata import Download, NodeBoot, boot_env
from tests.conftest import REPO
from tests.synth.test_readiness import ApiPki, FakeApiServer

PKI = "gitops-platform-dev-pki"
CURVES = {"P256": ec.SECP256R1(), "P384": ec.SECP384R1()}
KEY_USAGES = {
    "digital_signature": "digital_signature",
    "key_encipherment": "key_encipherment",
    "cert_signing": "key_cert_sign",
    "crl_signing": "crl_sign",
}
EXTENDED_USAGES = {"client_auth": ExtendedKeyUsageOID.CLIENT_AUTH}


def _pem(obj: Any) -> str:
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM).decode()
    return obj.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


def _name(subject: dict[str, str]) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, subject["commonName"]),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, subject["organization"]),
        ]
    )


def _certificate(inputs: dict, subject: x509.Name, public_key, issuer, signer_key) -> str:
    """What terraform-provider-tls builds: Go's x509 adds a subject key id to CA certificates and
    the issuer's key id as authority key id."""
    now = datetime.datetime.now(datetime.UTC)
    uses = inputs["allowedUses"]
    flags = {flag: any(KEY_USAGES.get(u) == flag for u in uses) for flag in KEY_USAGES.values()}
    ca = bool(inputs.get("isCaCertificate"))
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer else subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=inputs["validityPeriodHours"]))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
                **flags,
            ),
            critical=True,
        )
    )
    extended = [EXTENDED_USAGES[u] for u in uses if u in EXTENDED_USAGES]
    if extended:
        builder = builder.add_extension(x509.ExtendedKeyUsage(extended), critical=False)
    if ca:
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False
        )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.public_key()),
            critical=False,
        )
    return _pem(builder.sign(signer_key, hashes.SHA256()))


SECRET_SIG = "4dabf18193072939515e22adb298388d"
"""How the mock monitor hands a secret input over (Pulumi's property serialization)."""


def _unwrap(value: Any) -> Any:
    return value["value"] if isinstance(value, dict) and SECRET_SIG in value else value


class RealTls(pulumi.runtime.Mocks):
    """pulumi_tls with real cryptography; a resource whose name and inputs are unchanged keeps
    its value across runs, as in Pulumi state."""

    def __init__(self) -> None:
        self.state: dict[tuple[str, str], dict[str, str]] = {}
        self.names: list[str] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        self.names.append(args.name)
        inputs = {k: _unwrap(v) for k, v in args.inputs.items()}
        remembered = (args.name, json.dumps(inputs, sort_keys=True))
        if remembered not in self.state:
            self.state[remembered] = self._create(args.typ, inputs)
        return args.name, {**inputs, **self.state[remembered]}

    def _create(self, typ: str, inputs: dict) -> dict[str, str]:
        load = serialization.load_pem_private_key
        if typ == "tls:index/privateKey:PrivateKey":
            if inputs["algorithm"] == "RSA":
                key = rsa.generate_private_key(65537, int(inputs["rsaBits"]))
            else:
                key = ec.generate_private_key(CURVES[inputs["ecdsaCurve"]])
            return {"privateKeyPem": _pem(key)}
        if typ == "tls:index/certRequest:CertRequest":
            key = load(inputs["privateKeyPem"].encode(), None)
            csr = x509.CertificateSigningRequestBuilder().subject_name(_name(inputs["subject"]))
            pem = csr.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
            return {"certRequestPem": pem.decode()}
        if typ == "tls:index/selfSignedCert:SelfSignedCert":
            key = load(inputs["privateKeyPem"].encode(), None)
            pem = _certificate(inputs, _name(inputs["subject"]), key.public_key(), None, key)
            return {"certPem": pem}
        if typ == "tls:index/locallySignedCert:LocallySignedCert":
            csr = x509.load_pem_x509_csr(inputs["certRequestPem"].encode())
            issuer = x509.load_pem_x509_certificate(inputs["caCertPem"].encode())
            signer = load(inputs["caPrivateKeyPem"].encode(), None)
            return {"certPem": _certificate(inputs, csr.subject, csr.public_key(), issuer, signer)}
        return {}

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict:
        return {}


def run_pki(tls: RealTls, client: tuple[int, ...], server: int = 1) -> dict[str, Any]:
    """One `pulumi up` of the PKI with `platform:cluster.ca` = {client, server}."""
    pulumi.runtime.set_mocks(tls, project="platform", stack="dev", preview=False)
    tls.names.clear()
    resolved: dict[str, Any] = {}

    @pulumi.runtime.test
    def program() -> pulumi.Output:
        pki = ClusterPki(PKI, ClusterPkiArgs("gitops-platform-dev", client, server))
        return pulumi.Output.all(
            files=pki.server_files,
            admin_cert=pki.admin_cert_pem,
            admin_key=pki.admin_key_pem,
            server_ca=pki.server_ca_bundle,
            root=pki.root_cert_pem,
        ).apply(resolved.update)

    program()
    return {**resolved, "names": list(tls.names)}


def certs(bundle: str) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(bundle.encode())


def _cert_key(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def rotate_ca_accepts(old_bundle: str, new_bundle: str) -> subprocess.CompletedProcess:
    """K3s's `rotate-ca` check (pkg/server/cert.go validateCA) with openssl: the first certificate
    of the new bundle must verify with the old bundle's self-signed certificates as roots and its
    other certificates, plus the new bundle's certificates after the first that carry an authority
    key id, as intermediates."""
    old, new = certs(old_bundle), certs(new_bundle)
    assert len(new) > 1, "K3s refuses a CA bundle of one certificate"

    def self_signed(c: x509.Certificate) -> bool:
        try:
            aki = c.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        except x509.ExtensionNotFound:
            return True
        ski = c.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        return aki.key_identifier == ski.digest

    def has_aki(c: x509.Certificate) -> bool:
        return any(isinstance(e.value, x509.AuthorityKeyIdentifier) for e in c.extensions)

    folder = Path(tempfile.mkdtemp(prefix="rotate-ca-"))
    roots = "".join(_pem(c) for c in old if self_signed(c))
    inter = "".join(_pem(c) for c in old if not self_signed(c))
    inter += "".join(_pem(c) for c in new[1:] if has_aki(c))
    (folder / "roots.pem").write_text(roots)
    (folder / "inter.pem").write_text(inter or roots)
    (folder / "new.pem").write_text(_pem(new[0]))
    return subprocess.run(
        ["openssl", "verify", "-CAfile", "roots.pem", "-untrusted", "inter.pem", "new.pem"],
        cwd=folder,
        capture_output=True,
        text=True,
        check=False,
    )


def serving_files(files: dict[str, str]) -> tuple[str, str]:
    """A kube-apiserver serving certificate for 127.0.0.1 as K3s issues it from `server-ca.crt`
    and `server-ca.key`: the leaf followed by the CA bundle."""
    ca = certs(files["server-ca.crt"])[0]
    ca_key = serialization.load_pem_private_key(files["server-ca.key"].encode(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    folder = Path(tempfile.mkdtemp(prefix="serving-"))
    (folder / "serving.crt").write_text(_pem(leaf) + files["server-ca.crt"])
    (folder / "serving.key").write_text(_pem(key))
    return str(folder / "serving.crt"), str(folder / "serving.key")


class Cluster:
    """The API server as K3s runs it after `rotate-ca` loaded `files` and the servers restarted."""

    def __init__(self, files: dict[str, str]):
        cert, key = serving_files(files)
        self.api = FakeApiServer(ApiPki(files["client-ca.crt"], cert, key, "", ""), 0)

    def gate(self, step: dict[str, Any], timeout: float = 5) -> float:
        """The readiness gate with what `step` hands the gate and the kubernetes Provider."""
        creds = ApiCredentials(
            self.api.url, step["server_ca"], step["admin_cert"], step["admin_key"]
        )
        return wait_until_ready(creds, timeout=timeout, interval=0.05, progress=lambda m: None)

    def refuses(self, step: dict[str, Any]) -> str:
        with pytest.raises(ClusterNotReady) as err:
            self.gate(step, timeout=0.3)
        return str(err.value)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.api.stop()


@pytest.fixture(scope="module")
def client_rotation() -> list[dict[str, Any]]:
    """`platform:cluster.ca.client` through two rotations: [1], [1, 2], [2], [2, 3], [3]."""
    tls = RealTls()
    return [run_pki(tls, gens) for gens in ((1,), (1, 2), (2,), (2, 3), (3,))]


def test_a_new_generation_is_a_new_key(client_rotation):
    keys = [step["files"]["client-ca.key"] for step in client_rotation]
    assert keys[0] != keys[1] == keys[2] != keys[3] == keys[4]
    firsts = [certs(step["files"]["client-ca.crt"])[0] for step in client_rotation]
    assert _cert_key(firsts[0]) != _cert_key(firsts[1]) != _cert_key(firsts[3])
    admin_keys = [step["admin_key"] for step in client_rotation]
    assert admin_keys[0] != admin_keys[1] == admin_keys[2] != admin_keys[3]
    # What does not rotate stays: the join token's root, the server CA, the other CAs.
    for step in client_rotation[1:]:
        assert step["root"] == client_rotation[0]["root"]
        for name, pem in client_rotation[0]["files"].items():
            if not name.startswith("client-ca"):
                assert step["files"][name] == pem, name


def test_the_final_step_drops_the_previous_generation_from_state(client_rotation):
    live, overlap, final = (set(step["names"]) for step in client_rotation[:3])
    parts = ("", "-key", "-csr")
    first_ca = {f"{PKI}-client-ca{part}" for part in parts}
    first_admin = {f"{PKI}-admin{part}" for part in parts}
    cross = {f"{PKI}-client-root-g2-cross", f"{PKI}-client-root-g2-cross-csr"}
    assert first_ca | first_admin <= live
    # The admin certificate moves to the new generation at once; the old CA stays for the overlap.
    assert first_ca | cross <= overlap and not first_admin & overlap
    assert not (first_ca | cross) & final, "the previous CA's key must leave the state"
    assert {f"{PKI}-client-g2-ca-key", f"{PKI}-client-root-g2-key", f"{PKI}-admin-g2-key"} <= final


def test_every_step_is_one_that_rotate_ca_takes_without_force(client_rotation):
    for before, after in zip(client_rotation, client_rotation[1:], strict=False):
        check = rotate_ca_accepts(before["files"]["client-ca.crt"], after["files"]["client-ca.crt"])
        assert check.returncode == 0, check.stdout + check.stderr


def test_rotate_ca_would_refuse_skipping_the_overlap(client_rotation):
    check = rotate_ca_accepts(
        client_rotation[0]["files"]["client-ca.crt"], client_rotation[2]["files"]["client-ca.crt"]
    )
    assert check.returncode != 0


def test_the_new_ca_and_admin_certificate_have_the_right_uses(client_rotation):
    final = client_rotation[2]
    ca, root = certs(final["files"]["client-ca.crt"])
    for cert in (ca, root):
        assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        assert usage.key_cert_sign and usage.crl_sign
    assert root.issuer == root.subject and ca.issuer == root.subject
    ca.verify_directly_issued_by(root)
    admin = certs(final["admin_cert"])[0]
    admin.verify_directly_issued_by(ca)
    assert not admin.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    eku = admin.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert admin.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == (
        "system:masters"
    )
    key = serialization.load_pem_private_key(final["admin_key"].encode(), None)
    assert _cert_key(admin) == key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.mark.parametrize("first", [0, 2], ids=["from-generation-1", "from-generation-2"])
def test_the_gate_never_locks_itself_out_and_the_old_admin_is_refused_at_the_end(
    client_rotation, first
):
    live, overlap, final = client_rotation[first : first + 3]
    phases = [
        # Step 1: `pulumi up` with the overlap; K3s still has the previous files.
        (live, [overlap, live], []),
        # Step 2: `rotate-ca` loaded the overlap files: both generations get in.
        (overlap, [overlap, live], []),
        # Step 3: `pulumi up` and `rotate-ca` with the newest generation alone.
        (final, [final, overlap], [live]),
    ]
    for served, admitted, refused in phases:
        with Cluster(served["files"]) as cluster:
            for step in admitted:
                assert cluster.gate(step) < 5
            for step in refused:
                assert "was not ready" in cluster.refuses(step)


def test_server_ca_rotation_keeps_the_gate_trusting_old_and_new_serving_certificates():
    tls = RealTls()
    old, new = run_pki(tls, (1,), 1), run_pki(tls, (1,), 2)
    assert old["files"]["server-ca.key"] != new["files"]["server-ca.key"]
    assert old["root"] == new["root"], "the join token's root hash must not change"
    check = rotate_ca_accepts(old["files"]["server-ca.crt"], new["files"]["server-ca.crt"])
    assert check.returncode == 0, check.stdout + check.stderr
    for served in (old, new):
        with Cluster(served["files"]) as cluster:
            assert cluster.gate(new) < 5
    stranger = run_pki(RealTls(), (1,), 1)
    with Cluster(stranger["files"]) as cluster, pytest.raises(ClusterTrustError):
        cluster.gate(new)


ROTATE_CA = REPO / "components" / "k3s" / "rotate-ca.sh"
# Stands in for the K3s binary, which the sandbox lacks: records the call and keeps a copy of
# what was staged, since the script removes the staging folder when it is done.
K3S_STAND_IN = """#!/bin/sh
echo "$@" >> "$(dirname "$0")/k3s-calls"
cp -a "${3#--path=}" "$(dirname "$0")/staged"
"""


@pytest.fixture
def aws(moto_server, monkeypatch) -> None:
    """The AWS CLI in the script and boto3 here both talk to the emulator."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ENDPOINT_URL": moto_server.endpoint,
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)


def _run_rotate_ca(tmp_path: Path, ca_secret_id: str) -> subprocess.CompletedProcess:
    download = Download("https://releases.invalid/k3s", "0" * 64)
    boot = NodeBoot(
        kind="server-init" if ca_secret_id else "server",
        region="eu-west-1",
        secret_id="arn:aws:secretsmanager:eu-west-1:123456789012:secret:server",
        k3s_version="v1.34.10+k3s1",
        k3s_binary=download,
        k3s_installer=download,
        server_addresses=["10.20.0.10"],
        k3s_config={},
        ca_secret_id=ca_secret_id,
    )
    (tmp_path / "etc/platform").mkdir(parents=True)
    (tmp_path / "etc/platform/boot.env").write_text(boot_env(boot))
    (tmp_path / "var/lib/rancher/k3s/server/tls").mkdir(parents=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "k3s").write_text(K3S_STAND_IN)
    (bin_dir / "k3s").chmod(0o755)
    env = {
        **os.environ,
        "PLATFORM_ROOT": str(tmp_path),
        "PATH": f"{bin_dir}:{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    return subprocess.run(
        ["bash", str(ROTATE_CA)], env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.usefixtures("aws")
def test_rotate_ca_script_stages_the_secret_files_for_k3s(tmp_path, client_rotation):
    files = client_rotation[1]["files"]
    secret = boto3.client("secretsmanager", region_name="eu-west-1").create_secret(
        Name=f"ca-bootstrap-{tmp_path.name}",
        SecretString=json.dumps({"caFiles": files}, sort_keys=True),
    )
    run = _run_rotate_ca(tmp_path, secret["ARN"])
    assert run.returncode == 0, run.stderr
    (call,) = (tmp_path / "bin/k3s-calls").read_text().splitlines()
    stage = call.removeprefix("certificate rotate-ca --path=")
    assert stage.startswith(f"{tmp_path}/var/lib/rancher/k3s/rotate-ca.") and stage.endswith(
        "/server"
    ), call
    assert not Path(stage).parent.exists(), "the staged keys must not stay on disk"
    staged = tmp_path / "bin/staged/tls"
    assert {str(p.relative_to(staged)) for p in staged.rglob("*") if p.is_file()} == set(files)
    for name, pem in files.items():
        assert (staged / name).read_text() == pem, name
        assert (staged / name).stat().st_mode & 0o077 == 0, name
    assert not list((tmp_path / "var/lib/rancher/k3s/server/tls").iterdir())
    assert "PRIVATE KEY" not in run.stdout + run.stderr


@pytest.mark.usefixtures("aws")
def test_rotate_ca_script_refuses_a_server_without_the_ca_secret(tmp_path):
    run = _run_rotate_ca(tmp_path, "")
    assert run.returncode != 0
    assert "run this on server 0" in run.stderr
    assert not (tmp_path / "bin/k3s-calls").exists()
