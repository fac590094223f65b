"""Argo CD, its Git repository, the in-cluster cluster Secret and the root objects of the GitOps
contract (components.argocd.gitops): AppProjects and root ApplicationSets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components import versions
from components.argocd.gitops import (
    ARGOCD_NAMESPACE,
    IN_CLUSTER_NAME,
    IN_CLUSTER_SERVER,
    SECRET_TYPE_LABEL,
    PlatformFacts,
    cluster_secret_metadata,
    root_objects,
)
from components.cluster_access import ClusterAccess
from components.config import PlatformConfig
from components.password import GeneratedPassword
from components.platform import sizing
from components.platform.base import (
    DNS_CONFIG,
    IGNORE_ANNOTATION,
    NON_HOST_UID,
    NON_HOST_USER,
    POD_SECURITY_CONTEXT,
    PULL_POLICY,
    SINGLE_REPLICA_EXEMPTION,
    ChartSource,
    chart_release,
    create_chain,
    k8s_opts,
    owned_namespace,
)
from components.platform.cert_manager import INGRESS_CLASS

REPO_SECRET = "gitops-repo"
RELEASE = "argocd"
IN_CLUSTER_SECRET = "in-cluster"


@dataclass(frozen=True)
class ArgoCdArgs:
    """Argo CD's hostname and issuer, and the values the apps receive through the cluster Secret."""

    config: PlatformConfig
    """Environment, production flag and `platform:gitops` (repository, revision, path)."""
    hostname: pulumi.Input[str]
    apps_domain: pulumi.Input[str]
    """Apps are served on `<app>.<apps_domain>`."""
    cluster_issuer: str
    secret_store: str
    vault_addr: str
    gitops_token: pulumi.Input[str] | None = None
    """HTTPS token for a private repository (a Pulumi secret); None for a public one."""
    depends_on: Sequence[pulumi.Resource] = field(default_factory=tuple)
    """The issuer objects (Ingress annotation) and the ClusterSecretStore the apps use."""
    charts: ChartSource = ChartSource()
    """Where the release's chart comes from (`platform:charts`)."""

    def __post_init__(self) -> None:
        if not self.cluster_issuer or not self.secret_store:
            raise ValueError("cluster_issuer and secret_store are required: apps receive both")
        if self.gitops_token is not None and not self.config.gitops.repo_url.startswith("https://"):
            raise ValueError(
                f"platform:gitopsToken is an HTTPS token but platform:gitops.repoUrl "
                f"{self.config.gitops.repo_url!r} is not an https:// URL"
            )

    def facts(self, domain: str) -> PlatformFacts:
        return PlatformFacts.from_config(
            self.config,
            domain=domain,
            cluster_issuer=self.cluster_issuer,
            secret_store=self.secret_store,
            vault_addr=self.vault_addr,
            extras=self.config.gitops.extras,
        )


ADMIN_SECRET = "argocd-secret"
"""The Secret Argo CD reads its admin password from (the chart's own is off: a password inside
the values would make every values diff a secret)."""
DRAIN_BEFORE_STOP = {"preStop": {"sleep": {"seconds": 5}}}
"""Endpoints drop a stopping pod before it gets SIGTERM (the images have no `sleep` binary)."""
REPLICATED = ("server", "repo-server", "applicationset-controller")
VALUES_KEYS = {
    "server": "server",
    "repo-server": "repoServer",
    "applicationset-controller": "applicationSet",
}
"""Component name (sizing, pod label) -> its section in the chart's values."""


def _component(args: ArgoCdArgs, name: str) -> dict[str, Any]:
    size = sizing.size_of(args.config.production)
    values: dict[str, Any] = {
        "resources": sizing.resources(RELEASE, name, size),
        "dnsConfig": DNS_CONFIG,
    }
    if name in REPLICATED:
        count = sizing.replicas(RELEASE, name, size)
        values["replicas"] = count
        if count > 1:
            values["pdb"] = {"enabled": True, "maxUnavailable": 1}
    return values


def _redis_ha() -> dict[str, Any]:
    """Three Redis + Sentinel pods and three HAProxy pods in front, each on its own node (the
    sub-chart's hard anti-affinity, on by default), each set with a budget that drains one."""

    def res(name: str) -> dict[str, Any]:
        return sizing.resources(RELEASE, name, "ha")

    count = sizing.replicas(RELEASE, "redis-ha", "ha")
    budget = {"maxUnavailable": 1}
    return {
        "enabled": True,
        "replicas": count,
        "hardAntiAffinity": True,
        "podDisruptionBudget": budget,
        "image": {"pullPolicy": PULL_POLICY},
        # Redis, Sentinel and their scripts write only to the data volume (emptyDir, fsGroup).
        "securityContext": NON_HOST_USER | {"fsGroup": NON_HOST_UID},
        "containerSecurityContext": {"runAsUser": NON_HOST_UID},
        "redis": {"resources": res("redis-ha-redis")},
        "sentinel": {"resources": res("redis-ha-sentinel"), "lifecycle": DRAIN_BEFORE_STOP},
        "splitBrainDetection": {"resources": res("redis-ha-split-brain-fix")},
        "init": {"resources": res("redis-ha-config-init")},
        "haproxy": {
            "replicas": count,
            "hardAntiAffinity": True,
            "podDisruptionBudget": budget,
            "resources": res("haproxy"),
            "image": {"pullPolicy": PULL_POLICY},
            # HAProxy reaches Redis by Service name only; it never calls the API server.
            "serviceAccount": {"automountToken": False},
            "lifecycle": DRAIN_BEFORE_STOP,
            "init": {"resources": res("haproxy-config-init")},
        },
    }


def release_values(args: ArgoCdArgs) -> dict[str, Any]:
    size = sizing.size_of(args.config.production)
    values: dict[str, Any] = {
        "global": {
            "domain": args.hostname,
            "image": {"imagePullPolicy": PULL_POLICY},
            "securityContext": POD_SECURITY_CONTEXT,
        },
        # Like cert-manager's: the CRDs (and every Application) go with a `pulumi destroy`.
        "crds": {"install": True, "keep": False},
        "configs": {
            # TLS ends at Traefik; the server behind it speaks plain HTTP.
            "params": {"server.insecure": True},
            "secret": {"createSecret": False},
        },
        # Single sign-on and notifications are not configured: their pods would idle.
        "dex": {"enabled": False},
        "notifications": {"enabled": False},
        "controller": _component(args, "application-controller"),
        "server": _component(args, "server")
        | {
            "lifecycle": DRAIN_BEFORE_STOP,
            "ingress": {
                "enabled": True,
                "ingressClassName": INGRESS_CLASS,
                "annotations": {"cert-manager.io/cluster-issuer": args.cluster_issuer},
                "tls": True,
            },
        },
        "repoServer": _component(args, "repo-server")
        | {
            "copyutil": {"resources": sizing.resources(RELEASE, "copyutil", size)},
            # It renders manifests from Git and its Role grants nothing (the chart's `rbac` is
            # empty): a token would only hand the API to a compromised tool or plugin.
            "automountServiceAccountToken": False,
            "lifecycle": DRAIN_BEFORE_STOP,
        },
        "applicationSet": _component(args, "applicationset-controller")
        | {"readinessProbe": {"enabled": True}, "livenessProbe": {"enabled": True}},
        "redis": {
            "resources": sizing.resources(RELEASE, "redis", size),
            "dnsConfig": DNS_CONFIG,
            # A cache that Argo CD's components connect to; it never calls the API server.
            "automountServiceAccountToken": False,
            # The chart's own checks (redis-cli ping through its health scripts), off by default.
            "readinessProbe": {"enabled": True},
            "livenessProbe": {"enabled": True},
        },
        "redisSecretInit": {
            "resources": sizing.resources(RELEASE, "redis-secret-init", size),
            "securityContext": POD_SECURITY_CONTEXT,
        },
    }
    if size == "ha":
        # Every replica of a component on its own node (the chart's preset, required terms).
        values["global"]["affinity"] = {"podAntiAffinity": "hard"}
        values["redis-ha"] = _redis_ha()
        # The application controller shards clusters across its replicas: with the one
        # cluster Argo CD manages, a second replica would idle. Applications keep running while
        # it restarts, and it resumes from Git; the guardrail's exemption says so in the object.
    else:
        # One replica of each controller keeps small stacks cheap; production runs two.
        values["global"]["deploymentAnnotations"] = {IGNORE_ANNOTATION: SINGLE_REPLICA_EXEMPTION}
    values["controller"]["statefulsetAnnotations"] = {IGNORE_ANNOTATION: SINGLE_REPLICA_EXEMPTION}
    return values


def admin_secret_data(admin_password_bcrypt: pulumi.Input[str]) -> dict[str, pulumi.Input[str]]:
    """`argocd-secret`'s data: the admin password's bcrypt hash (Argo CD adds its own signing
    key, `server.secretkey`, on first start)."""
    return {"admin.password": pulumi.Output.secret(admin_password_bcrypt)}


def repository_data(repo_url: str, token: pulumi.Input[str] | None) -> dict[str, pulumi.Input[str]]:
    """The repository Secret's data; with a token, HTTPS basic auth as Git hosts expect it.

    Only the token is a secret, so a preview (and the synth) shows every other key and value."""
    data: dict[str, pulumi.Input[str]] = {"type": "git", "url": repo_url}
    if token is not None:
        data |= {"username": "git", "password": pulumi.Output.secret(token)}
    return data


class ArgoCd(pulumi.ComponentResource):
    """Argo CD and everything Pulumi gives it so it can take over from Git."""

    url: pulumi.Output[str]
    admin_password: pulumi.Output[str]
    """Initial password of `admin` (secret)."""

    def __init__(
        self,
        name: str,
        access: ClusterAccess,
        args: ArgoCdArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("platform:argocd:ArgoCd", name, None, opts)
        password = GeneratedPassword(
            f"{name}-admin-password", length=24, opts=pulumi.ResourceOptions(parent=self)
        )
        self.admin_password = pulumi.Output.secret(password.result)
        namespace = owned_namespace(f"{name}-namespace", self, access, ARGOCD_NAMESPACE)
        admin_secret = k8s.core.v1.Secret(
            f"{name}-admin-secret",
            metadata={
                "name": ADMIN_SECRET,
                "namespace": ARGOCD_NAMESPACE,
                # What the chart's own argocd-secret carries: Argo CD finds it by these.
                "labels": {
                    "app.kubernetes.io/name": ADMIN_SECRET,
                    "app.kubernetes.io/part-of": "argocd",
                },
            },
            string_data=admin_secret_data(password.bcrypt_hash),
            opts=k8s_opts(self, access, namespace),
        )
        self.release = chart_release(
            f"{name}-release",
            self,
            access,
            versions.ARGO_CD,
            namespace=namespace,
            charts=args.charts,
            release_name=RELEASE,
            values=release_values(args),
            depends_on=[admin_secret, *args.depends_on],
        )
        repo_url = args.config.gitops.repo_url
        data = repository_data(repo_url, args.gitops_token)
        self.repo_secret = k8s.core.v1.Secret(
            f"{name}-repo",
            metadata={
                "name": REPO_SECRET,
                "namespace": ARGOCD_NAMESPACE,
                "labels": {SECRET_TYPE_LABEL: "repository"},
            },
            string_data=data,
            opts=k8s_opts(self, access, self.release),
        )
        metadata = pulumi.Output.from_input(args.apps_domain).apply(
            lambda domain: cluster_secret_metadata(args.facts(domain))
        )
        self.cluster_secret = k8s.core.v1.Secret(
            f"{name}-cluster",
            metadata={
                "name": IN_CLUSTER_SECRET,
                "namespace": ARGOCD_NAMESPACE,
                "labels": metadata["labels"],
                "annotations": metadata["annotations"],
            },
            string_data={
                "name": IN_CLUSTER_NAME,
                "server": IN_CLUSTER_SERVER,
                "config": '{"tlsClientConfig":{"insecure":false}}',
            },
            opts=k8s_opts(self, access, self.release),
        )
        # The root objects read the repository, revision, path and environment only; the domain
        # reaches the apps through the cluster Secret's annotations, so any domain builds them.
        roots = root_objects(args.facts(args.config.dns.domain or ""))
        # Projects first, then the ApplicationSets that reference them (root_objects' order).
        self.root_objects = create_chain(
            name, self, access, roots, self.release, self.repo_secret, self.cluster_secret
        )
        self.url = pulumi.Output.concat("https://", args.hostname)
        self.register_outputs({"url": self.url, "adminPassword": self.admin_password})
