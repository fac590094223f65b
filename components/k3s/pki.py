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
    client_ca_generations: tuple[int, ...] = (1,)
    """Client CA generations the API server trusts, oldest first: one, or two consecutive ones
    while a rotation overlaps (`platform:cluster.ca.client`). The newest signs the admin
    certificate."""
    server_ca_generation: int = 1
    """`platform:cluster.ca.server`."""


ROOT_USES = ["cert_signing", "crl_signing", "digital_signature"]
CA_USES = ["cert_signing", "crl_signing", "digital_signature", "key_encipherment"]


def client_root_subject(cluster_name: str, generation: int) -> dict[str, str]:
    """The subject of a client root generation, the same on its self-signed and cross-signed
    certificates so that either completes a chain."""
    return {
        "common_name": f"{cluster_name}-client-root-ca-g{generation}",
        "organization": "platform",
    }


def generation_name(base: str, generation: int) -> str:
    """Generation 1 keeps the names the resources had before rotation existed, so a stack made
    then is not replaced."""
    return base if generation == 1 else f"{base}-g{generation}"


@dataclass(frozen=True)
class ClientCaPems:
    """One client CA generation as PEM: its CA, the root it hangs from (the cluster root for
    generation 1, its own root after) and, while it overlaps the previous generation, its root
    cross-signed by the previous one."""

    ca: str
    root: str
    cross: str = ""


def client_ca_file(generations: list[ClientCaPems]) -> str:
    """`client-ca.crt` for K3s. The newest CA comes first: K3s signs with the first certificate
    and `client-ca.key`. The API server trusts every certificate of the file, so the previous
    generation's CA and root are kept only while the generations overlap; once the file holds the
    newest alone, nothing the previous CA signed is accepted any more. During the overlap the
    cross-signed root chains the new CA to the previous root, which is what
    `k3s certificate rotate-ca` checks before it accepts a new CA without `--force`."""
    newest = generations[-1]
    if len(generations) == 1:
        return newest.ca + newest.root
    previous = generations[-2]
    return newest.ca + newest.cross + previous.ca + previous.root


def admin_chain(admin_cert: str, newest: ClientCaPems) -> str:
    """What the program presents: with the cross-signed root, an API server that still trusts
    only the previous generation (before `rotate-ca` ran) accepts the new certificate too."""
    return admin_cert + newest.ca + newest.cross


class ClusterPki(pulumi.ComponentResource):
    """Root CA, the five K3s CAs signed by it, the service-account key and an admin certificate;
    the client and server CAs by generation, for rotation (docs/operations.md)."""

    root_cert_pem: pulumi.Output[str]
    server_ca_bundle: pulumi.Output[str]
    """server CA + root: verifies the API server (kubeconfig `certificate-authority-data`). Every
    server CA generation hangs from the root, so it verifies the serving certificates of the
    previous generation as well as the new one."""
    admin_cert_pem: pulumi.Output[str]
    admin_key_pem: pulumi.Output[str]
    """Secret."""
    server_files: pulumi.Output[dict[str, str]]
    """Secret. Relative path under `server/tls` -> PEM, for the first server's boot and for
    `k3s certificate rotate-ca`."""

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
            allowed_uses=ROOT_USES,
            subject={"common_name": f"{cn}-root-ca", "organization": "platform"},
            opts=child,
        )
        self.root_cert_pem = root.cert_pem

        files: dict[str, pulumi.Output[str]] = {}
        for kind in CA_KINDS:
            if kind == "client":
                continue
            generation = args.server_ca_generation if kind == "server" else 1
            role = generation_name(kind.replace("/", "-"), generation)
            key, cert = self._ca(f"{name}-{role}-ca", f"{cn}-{role}-ca", root_key, root.cert_pem)
            files[f"{kind}-ca.crt"] = pulumi.Output.concat(cert.cert_pem, root.cert_pem)
            files[f"{kind}-ca.key"] = key.private_key_pem

        roots: dict[int, tuple[tls.PrivateKey, pulumi.Output[str]]] = {1: (root_key, root.cert_pem)}
        client: list[pulumi.Output[ClientCaPems]] = []
        for generation in args.client_ca_generations:
            cross: pulumi.Input[str] = ""
            if generation > 1:
                roots[generation] = self._client_root(name, cn, generation)
                if generation - 1 in args.client_ca_generations:
                    cross = self._cross_signed(name, cn, generation, roots)
            root_of_generation = roots[generation]
            role = generation_name("client", generation)
            ca_key, ca_cert = self._ca(f"{name}-{role}-ca", f"{cn}-{role}-ca", *root_of_generation)
            client.append(
                pulumi.Output.all(ca_cert.cert_pem, root_of_generation[1], cross).apply(
                    lambda a: ClientCaPems(*a)
                )
            )
        # The loop ends on the newest generation: its CA signs from now on.
        newest = args.client_ca_generations[-1]
        files["client-ca.crt"] = pulumi.Output.all(*client).apply(client_ca_file)
        files["client-ca.key"] = ca_key.private_key_pem
        sa_key = tls.PrivateKey(
            f"{name}-service-account-key", algorithm="RSA", rsa_bits=2048, opts=child
        )
        files["service.key"] = sa_key.private_key_pem
        self.server_ca_bundle = files["server-ca.crt"]
        self.server_files = pulumi.Output.secret(pulumi.Output.all(**files))

        # A new client CA generation gets a new admin key as well: the reason to rotate is
        # usually that the old key or a certificate of it leaked.
        admin_key, admin = self._signed(
            generation_name(f"{name}-admin", newest),
            # system:masters is what K3s gives its own admin; the API server authorises by O.
            {"common_name": "platform-admin", "organization": "system:masters"},
            ca_key,
            ca_cert.cert_pem,
            validity_period_hours=ADMIN_VALIDITY_HOURS,
            early_renewal_hours=ADMIN_EARLY_RENEWAL_HOURS,
            allowed_uses=["client_auth", "digital_signature", "key_encipherment"],
        )
        self.admin_cert_pem = pulumi.Output.all(admin.cert_pem, client[-1]).apply(
            lambda a: admin_chain(*a)
        )
        self.admin_key_pem = pulumi.Output.secret(admin_key.private_key_pem)
        self.register_outputs(
            {
                "rootCertPem": self.root_cert_pem,
                "serverCaBundle": self.server_ca_bundle,
                "adminCertPem": self.admin_cert_pem,
                "adminKeyPem": self.admin_key_pem,
            }
        )

    def _ca(
        self, base: str, common_name: str, signer_key: tls.PrivateKey, signer_pem: pulumi.Input[str]
    ) -> tuple[tls.PrivateKey, tls.LocallySignedCert]:
        return self._signed(
            base,
            {"common_name": common_name, "organization": "platform"},
            signer_key,
            signer_pem,
            is_ca_certificate=True,
            validity_period_hours=CA_VALIDITY_HOURS,
            allowed_uses=CA_USES,
        )

    def _client_root(
        self, name: str, cn: str, generation: int
    ) -> tuple[tls.PrivateKey, pulumi.Output[str]]:
        """A root of the client CA's own from generation 2 on: the API server must stop trusting
        the cluster root for clients, or every certificate the old client CA ever signed would
        stay valid through it."""
        child = pulumi.ResourceOptions(parent=self)
        base = generation_name(f"{name}-client-root", generation)
        key = tls.PrivateKey(f"{base}-key", algorithm="ECDSA", ecdsa_curve="P384", opts=child)
        root = tls.SelfSignedCert(
            base,
            private_key_pem=key.private_key_pem,
            is_ca_certificate=True,
            validity_period_hours=ROOT_VALIDITY_HOURS,
            allowed_uses=ROOT_USES,
            subject=client_root_subject(cn, generation),
            opts=child,
        )
        return key, root.cert_pem

    def _cross_signed(
        self,
        name: str,
        cn: str,
        generation: int,
        roots: dict[int, tuple[tls.PrivateKey, pulumi.Output[str]]],
    ) -> pulumi.Output[str]:
        """The generation's root (same name and key) signed by the previous generation's root."""
        child = pulumi.ResourceOptions(parent=self)
        base = generation_name(f"{name}-client-root", generation)
        csr = tls.CertRequest(
            f"{base}-cross-csr",
            private_key_pem=roots[generation][0].private_key_pem,
            subject=client_root_subject(cn, generation),
            opts=child,
        )
        previous_key, previous_pem = roots[generation - 1]
        cert = tls.LocallySignedCert(
            f"{base}-cross",
            cert_request_pem=csr.cert_request_pem,
            ca_private_key_pem=previous_key.private_key_pem,
            ca_cert_pem=previous_pem,
            is_ca_certificate=True,
            validity_period_hours=CA_VALIDITY_HOURS,
            allowed_uses=ROOT_USES,
            opts=child,
        )
        return cert.cert_pem

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
