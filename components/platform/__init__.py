"""The platform services on a ready cluster, in the order they depend on each other:

cert-manager → issuer → Rancher, Vault, Argo CD; Vault release → bootstrap → External Secrets'
ClusterSecretStore; Argo CD release → repository and cluster Secrets → AppProjects → root
ApplicationSets.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components.argocd.gitops import server_taint_admission
from components.cluster_access import ClusterAccess
from components.config import PlatformConfig
from components.k3s.traefik import https_redirect
from components.platform.argocd import ArgoCd, ArgoCdArgs
from components.platform.base import ChartSource, create_chain
from components.platform.cert_manager import CertManager, CertManagerArgs, Route53Zone
from components.platform.dns import DnsRecords, DnsRecordsArgs, apps_domain, hostnames
from components.platform.external_secrets import ExternalSecrets, ExternalSecretsArgs
from components.platform.rancher import Rancher, RancherArgs
from components.platform.vault import Vault, VaultArgs
from components.platform.vault_snapshots import VaultSnapshots, VaultSnapshotsArgs


@dataclass(frozen=True)
class PlatformArgs:
    """The stack's config and what the platform may choose on its own."""

    config: PlatformConfig
    gitops_token: pulumi.Input[str] | None = None
    """`platform:gitopsToken` (secret): HTTPS token for a private GitOps repository."""


class Platform(pulumi.ComponentResource):
    """Every platform service of one environment."""

    urls: dict[str, pulumi.Output[str]]
    """Service name -> https URL (rancher only when it runs)."""
    issuer_name: str
    argocd_admin_password: pulumi.Output[str]
    rancher_bootstrap_password: pulumi.Output[str] | None
    vault_root_token: pulumi.Output[str]
    vault_keys: pulumi.Output[list[str]]

    def __init__(
        self,
        name: str,
        access: ClusterAccess,
        args: PlatformArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("platform:platform:Platform", name, None, opts)
        cfg = args.config
        services = cfg.services
        child = pulumi.ResourceOptions(parent=self)
        charts = ChartSource(cfg.charts.directory)
        hosts = hostnames(cfg.dns.domain, access.ingress_ip)
        if cfg.dns.domain and cfg.dns.hosted_zone_id:
            DnsRecords(
                f"{name}-dns",
                DnsRecordsArgs(
                    domain=cfg.dns.domain,
                    hosted_zone_id=cfg.dns.hosted_zone_id,
                    ingress_ips=access.ingress_ips,
                ),
                child,
            )

        certs = CertManager(
            f"{name}-cert-manager",
            access,
            CertManagerArgs(
                charts=charts,
                lets_encrypt=cfg.tls.lets_encrypt,
                acme_server=cfg.acme_server,
                acme_email=cfg.tls.acme_email,
                production=cfg.production,
                zone=route53_zone(cfg, access),
            ),
            child,
        )
        self.issuer_name = certs.issuer_name
        self.urls = {}
        # Plain HTTP only for ACME HTTP-01 tokens; everything else is redirected to HTTPS.
        create_chain(f"{name}-https-redirect", self, access, https_redirect())
        # App pods stay off the servers whatever reaches the cluster, not only what CI checked.
        create_chain(f"{name}-apps-off-servers", self, access, server_taint_admission())

        self.rancher_bootstrap_password = None
        if services.rancher_enabled(cfg.target):
            rancher = Rancher(
                f"{name}-rancher",
                access,
                RancherArgs(
                    charts=charts,
                    hostname=hosts["rancher"],
                    cluster_issuer=certs.issuer_name,
                    production=cfg.production,
                    depends_on=certs.issuers,
                ),
                child,
            )
            self.urls["rancher"] = rancher.url
            self.rancher_bootstrap_password = rancher.bootstrap_password

        vault = Vault(
            f"{name}-vault",
            access,
            VaultArgs(
                charts=charts,
                flavor=services.secrets_server,
                production=cfg.production,
                app_namespaces=tuple(services.app_namespaces),
                depends_on=[certs.release],
                # Public only for the sources the stack lists (docs/security.md#vault).
                hostname=hosts["vault"] if cfg.vault_ingress_cidrs else None,
                cluster_issuer=certs.issuer_name if cfg.vault_ingress_cidrs else None,
                allowed_cidrs=tuple(cfg.vault_ingress_cidrs or ()),
                revoke_root=services.vault_revoke_root,
            ),
            child,
        )
        if vault.url is not None:
            self.urls["vault"] = vault.url
        if access.aws is not None:
            VaultSnapshots(
                f"{name}-vault-snapshots",
                access,
                VaultSnapshotsArgs(
                    namespace=vault.namespace,
                    vault_address=vault.address,
                    ca_secret=vault.ca_secret,
                    bucket=access.aws.snapshot_bucket,
                    region=access.aws.region,
                    flavor=services.secrets_server,
                ),
                depends_on=[vault.bootstrap],
                opts=child,
            )
        self.vault_root_token = vault.root_token
        self.vault_keys = vault.keys

        eso = ExternalSecrets(
            f"{name}-external-secrets",
            access,
            ExternalSecretsArgs(
                charts=charts,
                vault_address=vault.address,
                vault_namespace=vault.namespace,
                ca_secret=vault.ca_secret,
                depends_on=[vault.bootstrap],
                production=cfg.production,
            ),
            child,
        )

        argocd = ArgoCd(
            f"{name}-argocd",
            access,
            ArgoCdArgs(
                charts=charts,
                config=cfg,
                hostname=hosts["argocd"],
                apps_domain=pulumi.Output.from_input(access.ingress_ip).apply(
                    lambda ip: apps_domain(cfg.dns.domain, ip)
                ),
                cluster_issuer=certs.issuer_name,
                secret_store=eso.store_name,
                vault_addr=vault.address,
                gitops_token=args.gitops_token,
                depends_on=[*certs.issuers, eso.store],
            ),
            child,
        )
        self.urls["argocd"] = argocd.url
        self.argocd_admin_password = argocd.admin_password

        self.register_outputs(
            {
                "urls": self.urls,
                "issuerName": self.issuer_name,
                "argocdAdminPassword": self.argocd_admin_password,
                "rancherBootstrapPassword": self.rancher_bootstrap_password,
                "vaultRootToken": self.vault_root_token,
                "vaultKeys": self.vault_keys,
            }
        )


def route53_zone(cfg: PlatformConfig, access: ClusterAccess) -> Route53Zone | None:
    """The stack's hosted zone for DNS-01, when it has one and runs on AWS."""
    if not (cfg.dns.domain and cfg.dns.hosted_zone_id and access.aws):
        return None
    return Route53Zone(cfg.dns.domain, cfg.dns.hosted_zone_id, access.aws.region)


def gitops_token() -> pulumi.Output[str] | None:
    """`platform:gitopsToken` from the stack config (a secret), None when unset."""
    return pulumi.Config("platform").get_secret("gitopsToken")
