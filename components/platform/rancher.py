"""Rancher, served on its hostname with a certificate from the stack's ClusterIssuer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components import versions
from components.cluster_access import ClusterAccess
from components.password import GeneratedPassword
from components.platform import sizing
from components.platform.base import (
    PULL_POLICY,
    ChartSource,
    chart_release,
    k8s_opts,
    owned_namespace,
)
from components.platform.cert_manager import PRODUCTION_ISSUER

# The chart refuses any other namespace or release name.
NAMESPACE = "cattle-system"
RELEASE_NAME = "rancher"


@dataclass(frozen=True)
class RancherArgs:
    """Rancher's hostname, issuer and size."""

    hostname: pulumi.Input[str]
    cluster_issuer: str
    """ClusterIssuer that signs `tls-rancher-ingress` through the Ingress annotation."""
    production: bool = False
    """Replicas kept on different nodes (components/platform/sizing.py); one otherwise."""
    depends_on: Sequence[pulumi.Resource] = field(default_factory=tuple)
    """The issuer objects: the Ingress annotation names one that must exist."""
    charts: ChartSource = ChartSource()
    """Where the release's chart comes from (`platform:charts`)."""

    def __post_init__(self) -> None:
        if not self.cluster_issuer:
            raise ValueError("cluster_issuer is required: Rancher's Ingress certificate needs one")


BOOTSTRAP_SECRET = "rancher-bootstrap-password"
"""Holds the first login's password. Not the chart's own `bootstrap-secret`: the chart renders
that one as a pre-install hook whenever it finds it, and Helm refuses to create an object that
exists."""
BOOTSTRAP_KEY = "bootstrapPassword"


def release_values(args: RancherArgs) -> dict[str, Any]:
    size = sizing.size_of(args.production)
    values: dict[str, Any] = {
        "hostname": args.hostname,
        "replicas": sizing.replicas(RELEASE_NAME, "rancher", size),
        "resources": sizing.resources(RELEASE_NAME, "rancher", size),
        "image": {"pullPolicy": PULL_POLICY},
        # The hook Jobs read their policy beside `image`, not inside it.
        "postDelete": {"pullPolicy": PULL_POLICY},
        "preUpgrade": {"pullPolicy": PULL_POLICY},
        # The password reaches Rancher from the stack's Secret, never through the values.
        "extraEnv": [
            {
                "name": "CATTLE_BOOTSTRAP_PASSWORD",
                "valueFrom": {"secretKeyRef": {"name": BOOTSTRAP_SECRET, "key": BOOTSTRAP_KEY}},
            }
        ],
        # Agents (downstream clusters) check Rancher's certificate against the system store:
        # right for Let's Encrypt production. A staging or private CA certificate would need
        # privateCA and its CA in `tls-ca` (docs/platform.md).
        "agentTLSMode": "system-store" if args.cluster_issuer == PRODUCTION_ISSUER else "strict",
        # Two replicas on one node would die together; "required" refuses to co-locate them.
        "antiAffinity": "required" if args.production else "preferred",
        "ingress": {
            # `secret`: Rancher uses tls-rancher-ingress, which cert-manager's ingress shim fills
            # from the annotated issuer; Rancher's own cert-manager objects stay unused.
            "tls": {"source": "secret"},
            "extraAnnotations": {"cert-manager.io/cluster-issuer": args.cluster_issuer},
        },
    }
    return values


def disruption_budget() -> dict[str, Any]:
    """The chart has none: a drain may take one of Rancher's replicas at a time."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": RELEASE_NAME, "namespace": NAMESPACE},
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": RELEASE_NAME}}},
    }


class Rancher(pulumi.ComponentResource):
    """The Rancher chart in cattle-system with a generated bootstrap password."""

    url: pulumi.Output[str]
    bootstrap_password: pulumi.Output[str]
    """First login's password (secret); Rancher asks to change it."""

    def __init__(
        self,
        name: str,
        access: ClusterAccess,
        args: RancherArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("platform:rancher:Rancher", name, None, opts)
        password = GeneratedPassword(
            f"{name}-bootstrap-password", length=24, opts=pulumi.ResourceOptions(parent=self)
        )
        self.bootstrap_password = pulumi.Output.secret(password.result)
        namespace = owned_namespace(f"{name}-namespace", self, access, NAMESPACE)
        bootstrap = k8s.core.v1.Secret(
            f"{name}-bootstrap-secret",
            metadata={
                "name": BOOTSTRAP_SECRET,
                "namespace": NAMESPACE,
                "labels": {"app.kubernetes.io/part-of": RELEASE_NAME},
            },
            string_data={BOOTSTRAP_KEY: self.bootstrap_password},
            opts=k8s_opts(self, access, namespace),
        )
        self.release = chart_release(
            f"{name}-release",
            self,
            access,
            versions.RANCHER,
            namespace=namespace,
            charts=args.charts,
            release_name=RELEASE_NAME,
            values=release_values(args),
            depends_on=[bootstrap, *args.depends_on],
        )
        if args.production:
            budget = disruption_budget()
            k8s.policy.v1.PodDisruptionBudget(
                f"{name}-pdb",
                metadata=budget["metadata"],
                spec=budget["spec"],
                opts=k8s_opts(self, access, self.release),
            )
        self.url = pulumi.Output.concat("https://", args.hostname)
        self.register_outputs({"url": self.url, "bootstrapPassword": self.bootstrap_password})
