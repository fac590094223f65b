"""The cluster's certificate authorities, made by the program in the layout K3s expects for custom
CAs.

Because the program owns the CAs it can mint its own admin client certificate and build the
kubeconfig without ever reading anything back from a node (no SSH, no node-to-program data path).
K3s layout (docs.k3s.io/cli/certificate, "Using Custom CA Certificates"): under
`/var/lib/rancher/k3s/server/tls`, `<kind>-ca.crt` (the CA followed by the root) and `<kind>-ca.key`
for server, client, request-header, etcd/peer and etcd/server, plus `service.key`.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass

import pulumi
import pulumi_tls as tls

CA_KINDS = ("server", "client", "request-header", "etcd/peer", "etcd/server")
CA_VALIDITY_HOURS = 10 * 365 * 24
ROOT_VALIDITY_HOURS = 20 * 365 * 24
ADMIN_VALIDITY_HOURS = 365 * 24
ADMIN_EARLY_RENEWAL_HOURS = 60 * 24
"""A `pulumi up` within 60 days of expiry mints a new admin certificate."""

_PEM_CERT_RE = re.compile(r"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", re.DOTALL)


def der_sha256(cert_pem: str) -> str:
    """SHA-256 of the DER encoding of a PEM certificate (the CA hash in a K3s secure token)."""
    match = _PEM_CERT_RE.search(cert_pem)
    if not match:
        raise ValueError("not a PEM certificate")
    return hashlib.sha256(base64.b64decode("".join(match[1].split()))).hexdigest()


def secure_token(root_cert_pem: str, username: str, password: str) -> str:
    """K3s secure token `K10<sha256(DER(root))>::<user>:<password>`: a joining node checks the
    cluster's CA against the hash before it sends credentials (docs.k3s.io/cli/token)."""
    return f"K10{der_sha256(root_cert_pem)}::{username}:{password}"


@dataclass
class ClusterPkiArgs:
    cluster_name: str
    """Used in the certificates' common names."""


class ClusterPki(pulumi.ComponentResource):
    """Root CA, the five K3s CAs signed by it, the service-account key and an admin certificate."""

    root_cert_pem: pulumi.Output[str]
    server_ca_bundle: pulumi.Output[str]
    """server CA + root: verifies the API server (kubeconfig `certificate-authority-data`)."""
    admin_cert_pem: pulumi.Output[str]
    admin_key_pem: pulumi.Output[str]
    """Secret."""
    server_files: pulumi.Output[dict[str, str]]
    """Secret. Relative path under `server/tls` -> PEM, for the first server's boot."""

    def __init__(self, name: str, args: ClusterPkiArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:k3s:ClusterPki", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        cn = args.cluster_name

        root_key = tls.PrivateKey(
            f"{name}-root-key", algorithm="ECDSA", ecdsa_curve="P384", opts=child
        )
        root = tls.SelfSignedCert(
            f"{name}-root",
            private_key_pem=root_key.private_key_pem,
            is_ca_certificate=True,
            validity_period_hours=ROOT_VALIDITY_HOURS,
            allowed_uses=["cert_signing", "crl_signing", "digital_signature"],
            subject={"common_name": f"{cn}-root-ca", "organization": "platform"},
            opts=child,
        )
        self.root_cert_pem = root.cert_pem

        files: dict[str, pulumi.Output[str]] = {}
        ca: dict[str, tuple[tls.PrivateKey, tls.LocallySignedCert]] = {}
        for kind in CA_KINDS:
            role = kind.replace("/", "-")
            key, cert = self._signed(
                f"{name}-{role}-ca",
                {"common_name": f"{cn}-{role}-ca", "organization": "platform"},
                root_key,
                root.cert_pem,
                is_ca_certificate=True,
                validity_period_hours=CA_VALIDITY_HOURS,
                allowed_uses=[
                    "cert_signing",
                    "crl_signing",
                    "digital_signature",
                    "key_encipherment",
                ],
            )
            ca[kind] = (key, cert)
            files[f"{kind}-ca.crt"] = pulumi.Output.concat(cert.cert_pem, root.cert_pem)
            files[f"{kind}-ca.key"] = key.private_key_pem
        sa_key = tls.PrivateKey(
            f"{name}-service-account-key", algorithm="RSA", rsa_bits=2048, opts=child
        )
        files["service.key"] = sa_key.private_key_pem
        self.server_ca_bundle = files["server-ca.crt"]
        self.server_files = pulumi.Output.secret(pulumi.Output.all(**files))

        client_key, client_ca = ca["client"]
        admin_key, admin = self._signed(
            f"{name}-admin",
            # system:masters is what K3s gives its own admin; the API server authorises by O.
            {"common_name": "platform-admin", "organization": "system:masters"},
            client_key,
            client_ca.cert_pem,
            validity_period_hours=ADMIN_VALIDITY_HOURS,
            early_renewal_hours=ADMIN_EARLY_RENEWAL_HOURS,
            allowed_uses=["client_auth", "digital_signature", "key_encipherment"],
        )
        self.admin_cert_pem = pulumi.Output.concat(admin.cert_pem, client_ca.cert_pem)
        self.admin_key_pem = pulumi.Output.secret(admin_key.private_key_pem)
        self.register_outputs(
            {
                "rootCertPem": self.root_cert_pem,
                "serverCaBundle": self.server_ca_bundle,
                "adminCertPem": self.admin_cert_pem,
                "adminKeyPem": self.admin_key_pem,
            }
        )

    def _signed(
        self,
        base: str,
        subject: dict[str, str],
        ca_key: tls.PrivateKey,
        ca_cert_pem: pulumi.Input[str],
        **cert_args: object,
    ) -> tuple[tls.PrivateKey, tls.LocallySignedCert]:
        """A P-256 key and its certificate signed by `ca_key` (resources `<base>-key`,
        `<base>-csr` and `<base>`)."""
        child = pulumi.ResourceOptions(parent=self)
        key = tls.PrivateKey(f"{base}-key", algorithm="ECDSA", ecdsa_curve="P256", opts=child)
        csr = tls.CertRequest(
            f"{base}-csr", private_key_pem=key.private_key_pem, subject=subject, opts=child
        )
        cert = tls.LocallySignedCert(
            base,
            cert_request_pem=csr.cert_request_pem,
            ca_private_key_pem=ca_key.private_key_pem,
            ca_cert_pem=ca_cert_pem,
            opts=child,
            **cert_args,
        )
        return key, cert
