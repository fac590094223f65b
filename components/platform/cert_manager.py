"""cert-manager and the ClusterIssuers every platform hostname is signed by.

Issuers per stack: with `platform:tls.letsEncrypt`, `letsencrypt-staging` everywhere and
`letsencrypt-production` on production stacks only (a test stack with a production issuer could
burn the production rate limits, which the policy rule acme-server-per-stack forbids). They solve
HTTP-01 through Traefik, and DNS-01 through Route53 for names in the stack's hosted zone (wildcard
certificates), with the node role allowed to change TXT records in that zone only. Without Let's
Encrypt, a private CA (`platform-ca`) with a self-signed root, for clusters Let's Encrypt cannot
reach (the local stack).

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

import json
from dataclasses import dataclass
from typing import Any, Literal

import pulumi
import pulumi_aws as aws

from components import versions
from components.cluster_access import CONTROL_PLANE_SELECTOR, SERVER_TOLERATIONS, ClusterAccess
from components.platform import sizing
from components.platform.base import (
    DNS_CONFIG,
    IGNORE_ANNOTATION,
    NON_HOST_USER,
    PULL_POLICY,
    ChartSource,
    chart_release,
    controller_values,
    create_chain,
    owned_namespace,
)

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
class Route53Zone:
    """The stack's hosted zone: DNS-01 challenges for names under `domain`."""

    domain: str
    hosted_zone_id: str
    region: str


@dataclass(frozen=True)
class CertManagerArgs:
    """What the cert-manager component needs from the stack's `platform:tls`."""

    lets_encrypt: bool
    """Issue from Let's Encrypt (HTTP-01); False: a private CA (`platform-ca`)."""
    acme_server: Literal["staging", "production"] = "staging"
    """Let's Encrypt directory; `PlatformConfig.acme_server` picks staging outside production."""
    acme_email: str | None = None
    """ACME account contact (expiry notices); the account needs none."""
    production: bool = False
    """Production stacks also get the production issuer."""
    zone: Route53Zone | None = None
    """Solve DNS-01 in this Route53 zone (AWS stacks with `platform:dns.hostedZoneId`)."""
    charts: ChartSource = ChartSource()
    """Where the release's chart comes from (`platform:charts`)."""

    def __post_init__(self) -> None:
        if self.acme_server not in ACME_DIRECTORIES:
            raise ValueError(f"acme_server {self.acme_server!r} must be staging or production")

    @property
    def issuer_name(self) -> str:
        if not self.lets_encrypt:
            return LOCAL_CA_ISSUER
        return PRODUCTION_ISSUER if self.acme_server == "production" else STAGING_ISSUER


def release_values(args: CertManagerArgs) -> dict[str, Any]:
    # The CRDs go with the release, so `pulumi destroy` leaves nothing behind. The release is
    # never replaced (fixed name and namespace), so only a destroy uninstalls it.
    values: dict[str, Any] = {"crds": {"enabled": True, "keep": False}}
    size = sizing.size_of(args.production)
    for workload, section in (
        ("controller", None),
        ("webhook", "webhook"),
        ("cainjector", "cainjector"),
    ):
        labels = {"app.kubernetes.io/instance": NAMESPACE, "app.kubernetes.io/component": workload}
        part = controller_values(NAMESPACE, workload, size, labels, "deploymentAnnotations")
        if section is None:
            values |= part
        else:
            values[section] = part
    values["startupapicheck"] = {
        "resources": sizing.resources(NAMESPACE, "startupapicheck", size),
        "image": {"pullPolicy": PULL_POLICY},
        "securityContext": NON_HOST_USER,
    }
    values["podDnsConfig"] = DNS_CONFIG
    if args.zone is not None:
        # Route53 credentials come from the node role through IMDS; only the servers' role may
        # change the zone, so the controller runs there.
        values["nodeSelector"] = CONTROL_PLANE_SELECTOR
        values["tolerations"] = SERVER_TOLERATIONS
    return values


def acme_cluster_issuer(
    name: str, directory: str, email: str | None, zone: Route53Zone | None = None
) -> dict[str, Any]:
    """A Let's Encrypt ClusterIssuer: DNS-01 for the zone's names (cert-manager picks the solver
    whose selector matches most specifically), HTTP-01 through Traefik for everything else."""
    solvers: list[dict[str, Any]] = []
    if zone is not None:
        solvers.append(
            {
                "selector": {"dnsZones": [zone.domain]},
                "dns01": {"route53": {"region": zone.region, "hostedZoneID": zone.hosted_zone_id}},
            }
        )
    solvers.append({"http01": {"ingress": {"ingressClassName": INGRESS_CLASS}}})
    acme: dict[str, Any] = {
        "server": directory,
        "privateKeySecretRef": {"name": f"{name}-account"},
        "solvers": solvers,
    }
    if email:
        acme["email"] = email
    return {
        "apiVersion": "cert-manager.io/v1",
        "kind": "ClusterIssuer",
        "metadata": {"name": name},
        "spec": {"acme": acme},
    }


def route53_policy(hosted_zone_id: str) -> str:
    """cert-manager's documented Route53 permissions, narrowed to the zone and TXT records."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": "route53:GetChange",
                    "Resource": "arn:aws:route53:::change/*",
                },
                {
                    "Effect": "Allow",
                    "Action": [
                        "route53:ChangeResourceRecordSets",
                        "route53:ListResourceRecordSets",
                    ],
                    "Resource": f"arn:aws:route53:::hostedzone/{hosted_zone_id}",
                    "Condition": {
                        "ForAllValues:StringEquals": {
                            "route53:ChangeResourceRecordSetsRecordTypes": ["TXT"]
                        }
                    },
                },
            ],
        },
        sort_keys=True,
    )


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
    """The cluster issuers of a stack, in creation order; the last one is `args.issuer_name`."""
    if not args.lets_encrypt:
        return private_ca(LOCAL_CA_ISSUER, NAMESPACE, cluster_scoped=True)
    staging = acme_cluster_issuer(
        STAGING_ISSUER, ACME_DIRECTORIES["staging"], args.acme_email, args.zone
    )
    if args.issuer_name == STAGING_ISSUER:
        return [staging]
    if args.production:
        # Kept on production stacks to try a new hostname without spending the weekly production
        # certificate limit; the platform itself never references it.
        staging["metadata"]["annotations"] = {IGNORE_ANNOTATION: "acme-server-per-stack"}
    production = acme_cluster_issuer(
        PRODUCTION_ISSUER, ACME_DIRECTORIES["production"], args.acme_email, args.zone
    )
    return [staging, production]


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
        namespace = owned_namespace(f"{name}-namespace", self, access, NAMESPACE)
        self.release = chart_release(
            f"{name}-release",
            self,
            access,
            versions.CERT_MANAGER,
            namespace=namespace,
            charts=args.charts,
            values=release_values(args),
        )
        if args.zone is not None:
            if access.aws is None:
                raise ValueError("DNS-01 through Route53 needs an AWS cluster (platform:dns)")
            aws.iam.RolePolicy(
                f"{name}-route53",
                role=access.aws.server_role_name,
                policy=route53_policy(args.zone.hosted_zone_id),
                opts=pulumi.ResourceOptions(parent=self),
            )
        self.issuers = create_chain(name, self, access, issuer_manifests(args), self.release)
        self.register_outputs({"issuerName": self.issuer_name})
