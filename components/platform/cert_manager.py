"""cert-manager and the ClusterIssuer every platform hostname is signed by.

Issuer per stack: Let's Encrypt (HTTP-01 through Traefik) when `platform:tls.letsEncrypt` is on,
its staging directory outside production; otherwise a private CA (`platform-ca`) whose root is a
self-signed certificate, for clusters Let's Encrypt cannot reach (the local stack).

Ordering of the custom resources: the ClusterIssuer/Certificate CRDs come from the Release, so every
custom resource here depends on it and `up` creates them only once the Release (which waits for the
webhook) is ready. On the first preview the cluster does not exist yet: the Kubernetes provider's
kubeconfig is unknown, and the provider then previews every object from its inputs without asking
an API server, so the missing CRDs cannot fail the preview. Later previews find the CRDs installed
by the earlier `up`. What remains (pulumi-kubernetes #1735, #3247): previewing the first install of
a CRD-bearing chart into an already running cluster may report the kind as unknown; `up` is
unaffected because depends_on serialises the creation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import pulumi

from components import versions
from components.cluster_access import ClusterAccess
from components.platform.base import chart_release, create_chain

NAMESPACE = "cert-manager"
STAGING_ISSUER = "letsencrypt-staging"
PRODUCTION_ISSUER = "letsencrypt-production"
LOCAL_CA_ISSUER = "platform-ca"
ACME_DIRECTORIES = {
    "staging": "https://acme-staging-v02.api.letsencrypt.org/directory",
    "production": "https://acme-v02.api.letsencrypt.org/directory",
}
INGRESS_CLASS = "traefik"
"""K3s's bundled ingress controller; HTTP-01 solver Ingresses must use it."""


@dataclass(frozen=True)
class CertManagerArgs:
    """What the cert-manager component needs from the stack's `platform:tls`."""

    lets_encrypt: bool
    """Issue from Let's Encrypt (HTTP-01); False: a private CA (`platform-ca`)."""
    acme_server: Literal["staging", "production"] = "staging"
    """Let's Encrypt directory; `PlatformConfig.acme_server` picks staging outside production."""
    acme_email: str | None = None
    """ACME account contact; required with Let's Encrypt."""

    def __post_init__(self) -> None:
        if self.acme_server not in ACME_DIRECTORIES:
            raise ValueError(f"acme_server {self.acme_server!r} must be staging or production")
        if self.lets_encrypt and not self.acme_email:
            raise ValueError("acme_email is required with Let's Encrypt (platform:tls.acmeEmail)")

    @property
    def issuer_name(self) -> str:
        if not self.lets_encrypt:
            return LOCAL_CA_ISSUER
        return PRODUCTION_ISSUER if self.acme_server == "production" else STAGING_ISSUER


def release_values() -> dict[str, Any]:
    # crds.keep: uninstalling the chart must not delete the CRDs and with them every Certificate.
    return {"crds": {"enabled": True, "keep": True}}


def acme_cluster_issuer(name: str, directory: str, email: str) -> dict[str, Any]:
    """A Let's Encrypt ClusterIssuer solving HTTP-01 through Traefik."""
    return {
        "apiVersion": "cert-manager.io/v1",
        "kind": "ClusterIssuer",
        "metadata": {"name": name},
        "spec": {
            "acme": {
                "server": directory,
                "email": email,
                "privateKeySecretRef": {"name": f"{name}-account"},
                "solvers": [{"http01": {"ingress": {"ingressClassName": INGRESS_CLASS}}}],
            }
        },
    }


def private_ca(name: str, namespace: str, *, cluster_scoped: bool) -> list[dict[str, Any]]:
    """A CA issuer `name` with a self-signed root: [self-signed issuer, CA Certificate, CA issuer].

    Cluster-scoped issuers read the CA Secret from cert-manager's own namespace, so `namespace` is
    cert-manager's there and the issuers' namespace otherwise.
    """
    kind = "ClusterIssuer" if cluster_scoped else "Issuer"

    def metadata(object_name: str, namespaced: bool) -> dict[str, str]:
        return (
            {"name": object_name, "namespace": namespace} if namespaced else {"name": object_name}
        )

    root = f"{name}-selfsigned"
    return [
        {
            "apiVersion": "cert-manager.io/v1",
            "kind": kind,
            "metadata": metadata(root, not cluster_scoped),
            "spec": {"selfSigned": {}},
        },
        {
            "apiVersion": "cert-manager.io/v1",
            "kind": "Certificate",
            "metadata": metadata(name, True),
            "spec": {
                "isCA": True,
                "commonName": name,
                "secretName": name,
                "duration": "87600h",
                "privateKey": {"algorithm": "ECDSA", "size": 256},
                "issuerRef": {"name": root, "kind": kind, "group": "cert-manager.io"},
            },
        },
        {
            "apiVersion": "cert-manager.io/v1",
            "kind": kind,
            "metadata": metadata(name, not cluster_scoped),
            "spec": {"ca": {"secretName": name}},
        },
    ]


def issuer_manifests(args: CertManagerArgs) -> list[dict[str, Any]]:
    """The cluster issuers of a stack, in creation order; the last one is `args.issuer_name`.

    Only the directory the stack uses gets an issuer: a production issuer on a test stack would
    let an app burn the production rate limits (policy acme-server-per-stack).
    """
    if not args.lets_encrypt:
        return private_ca(LOCAL_CA_ISSUER, NAMESPACE, cluster_scoped=True)
    assert args.acme_email is not None
    return [
        acme_cluster_issuer(args.issuer_name, ACME_DIRECTORIES[args.acme_server], args.acme_email)
    ]


class CertManager(pulumi.ComponentResource):
    """cert-manager (with its CRDs) and the stack's ClusterIssuer."""

    issuer_name: str
    """ClusterIssuer of the platform's Ingresses: letsencrypt-staging, -production or platform-ca"""
    release: pulumi.Resource
    issuers: list[pulumi.Resource]
    """The issuer objects; anything annotated with `issuer_name` depends on these."""

    def __init__(
        self,
        name: str,
        access: ClusterAccess,
        args: CertManagerArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("platform:cert_manager:CertManager", name, None, opts)
        self.issuer_name = args.issuer_name
        self.release = chart_release(
            f"{name}-release",
            self,
            access,
            versions.CERT_MANAGER,
            namespace=NAMESPACE,
            values=release_values(),
        )
        self.issuers = create_chain(name, self, access, issuer_manifests(args), self.release)
        self.register_outputs({"issuerName": self.issuer_name})
