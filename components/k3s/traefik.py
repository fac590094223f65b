"""K3s's bundled Traefik, tuned through a HelmChartConfig in the auto-deploy manifests directory.

K3s installs Traefik from its own HelmChart and merges a HelmChartConfig of the same name over
it; editing K3s's traefik.yaml would be overwritten on restart. docs/ingress.md says why each value
is set. The values use only keys that mean the same in Traefik chart 40.x (K3s's July 2026
releases) and 41.x (the newest schema): access logs go through a Traefik flag because the chart
renamed their key between the two (`logs.access` -> `accessLog`) and both schemas reject the
other spelling. Service type, ports and hostPorts stay as K3s sets them, so ServiceLB keeps
publishing 80/443 on every node.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

HELM_CHART_NAME = "traefik"
"""Name of K3s's HelmChart, which the HelmChartConfig must repeat."""
NAMESPACE = "kube-system"
MANIFEST_NAME = "traefik-config.yaml"
"""File name under /var/lib/rancher/k3s/server/manifests/ on the servers."""
ENTRY_POINTS = ("web", "websecure")
"""The chart's entry points that carry ingress traffic."""
METRICS_ENTRY_POINT = "metrics"
# The chart labels pods name=<chart name>, instance=<release>-<namespace>; K3s names the release
# after its HelmChart.
POD_LABELS = {
    "app.kubernetes.io/name": HELM_CHART_NAME,
    "app.kubernetes.io/instance": f"{HELM_CHART_NAME}-{NAMESPACE}",
}


@dataclass(frozen=True)
class ShutdownTiming:
    """How a Traefik pod drains on rollout or node drain, in seconds, in the order they apply."""

    pre_stop_sleep: int = 10
    """Serve on while every node's kube-proxy (and ServiceLB) drops the terminating endpoint."""
    request_accept_grace: int = 5
    """After SIGTERM Traefik still accepts new requests, for stragglers routed just before."""
    grace_timeout: int = 30
    """Then it accepts nothing new and gives requests in flight this long to finish."""
    termination_grace_period: int = 60
    """Kubernetes kills the pod this long after deletion starts; the preStop sleep counts too."""

    def __post_init__(self) -> None:
        for name in ("pre_stop_sleep", "request_accept_grace", "grace_timeout"):
            if getattr(self, name) < 0:
                raise ValueError(f"ShutdownTiming.{name} must not be negative")
        drain = self.pre_stop_sleep + self.request_accept_grace + self.grace_timeout
        if drain >= self.termination_grace_period:
            raise ValueError(
                f"ShutdownTiming: pre_stop_sleep + request_accept_grace + grace_timeout = {drain}s "
                f"must stay below termination_grace_period ({self.termination_grace_period}s), "
                "or Kubernetes kills Traefik with requests still in flight"
            )


def _values(replicas: int, shutdown: ShutdownTiming) -> dict[str, Any]:
    lifecycle = {
        "requestAcceptGraceTimeout": f"{shutdown.request_accept_grace}s",
        "graceTimeOut": f"{shutdown.grace_timeout}s",
    }
    values: dict[str, Any] = {
        "deployment": {
            "replicas": replicas,
            "terminationGracePeriodSeconds": shutdown.termination_grace_period,
            "lifecycle": {"preStop": {"sleep": {"seconds": shutdown.pre_stop_sleep}}},
        },
        # A copy per entry point: a shared dict would be dumped as a YAML anchor and alias.
        "ports": {ep: {"transport": {"lifeCycle": {**lifecycle}}} for ep in ENTRY_POINTS},
        # The chart has no reusePort key (its port schema is closed); Traefik's own docs set it
        # with flags. The access-log flags mean the same in every chart version (module docstring).
        "additionalArguments": [
            *(f"--entryPoints.{ep}.reusePort=true" for ep in ENTRY_POINTS),
            "--accesslog=true",
            "--accesslog.format=json",
        ],
        "metrics": {
            "prometheus": {
                "entryPoint": METRICS_ENTRY_POINT,
                "addEntryPointsLabels": True,
                "addServicesLabels": True,
            }
        },
    }
    if replicas > 1:
        values["affinity"] = {
            "podAntiAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "labelSelector": {"matchLabels": dict(POD_LABELS)},
                        "topologyKey": "kubernetes.io/hostname",
                    }
                ]
            }
        }
        values["podDisruptionBudget"] = {"enabled": True, "maxUnavailable": 1}
        # With one pod per node required, a surge pod has nowhere to go on a cluster with as
        # many nodes as replicas and the rollout would hang; replace one pod at a time instead.
        values["updateStrategy"] = {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0},
        }
    return values


def traefik_helm_chart_config(
    production: bool, replicas: int | None = None, shutdown: ShutdownTiming = ShutdownTiming()
) -> dict[str, Any]:
    """The `HelmChartConfig` for K3s's Traefik.

    `replicas` defaults to 2 in production and 1 elsewhere; from 2 on, pods are spread one per
    node (needs at least `replicas` schedulable nodes) and covered by a PodDisruptionBudget."""
    count = replicas if replicas is not None else (2 if production else 1)
    if count < 1:
        raise ValueError(f"traefik replicas must be at least 1 (got {count})")
    if production and count < 2:
        raise ValueError(
            f"traefik replicas {count}: production needs at least 2 so that losing one node "
            "does not take the ingress down"
        )
    return {
        "apiVersion": "helm.cattle.io/v1",
        "kind": "HelmChartConfig",
        "metadata": {"name": HELM_CHART_NAME, "namespace": NAMESPACE},
        "spec": {
            # The default, reinstall, uninstalls the release when an upgrade fails: every
            # ingress pod gone. abort leaves the running release for an operator to fix.
            "failurePolicy": "abort",
            "valuesContent": yaml.safe_dump(_values(count, shutdown), sort_keys=False),
        },
    }


ACME_CHALLENGE_PREFIX = "/.well-known/acme-challenge/"
"""HTTP-01 tokens: Let's Encrypt asks for them over plain HTTP on port 80."""
REDIRECT_NAME = "https-redirect"
REDIRECT_PRIORITY = 100_000
"""Above the priority Traefik derives from any Ingress rule (its length), so no plain-HTTP route
of an Ingress wins over the redirect; the ACME path is excluded by the rule, not by priority."""


def https_redirect() -> list[dict[str, Any]]:
    """A Middleware and an IngressRoute that answer every request on port 80 with a permanent
    redirect to HTTPS, except the ACME HTTP-01 path: cert-manager's solver Ingress keeps serving
    it on port 80. An entry-point redirect (`ports.web.redirections`) would catch that path too."""
    metadata = {"name": REDIRECT_NAME, "namespace": NAMESPACE}
    middleware = {
        "apiVersion": "traefik.io/v1alpha1",
        "kind": "Middleware",
        "metadata": dict(metadata),
        "spec": {"redirectScheme": {"scheme": "https", "permanent": True}},
    }
    route = {
        "apiVersion": "traefik.io/v1alpha1",
        "kind": "IngressRoute",
        "metadata": dict(metadata),
        "spec": {
            "entryPoints": [ENTRY_POINTS[0]],
            "routes": [
                {
                    "kind": "Rule",
                    "match": f"PathPrefix(`/`) && !PathPrefix(`{ACME_CHALLENGE_PREFIX}`)",
                    "priority": REDIRECT_PRIORITY,
                    "middlewares": [{"name": REDIRECT_NAME}],
                    # Traefik's built-in service that answers nothing: the middleware replies.
                    "services": [{"kind": "TraefikService", "name": "noop@internal"}],
                }
            ],
        },
    }
    return [middleware, route]


class _LiteralDumper(yaml.SafeDumper):
    """Writes multi-line strings as `|` blocks so valuesContent stays readable on the node."""


_LiteralDumper.add_representer(
    str,
    lambda dumper, value: dumper.represent_scalar(
        "tag:yaml.org,2002:str", value, style="|" if "\n" in value else None
    ),
)


def render_manifest(
    production: bool, replicas: int | None = None, shutdown: ShutdownTiming = ShutdownTiming()
) -> str:
    """`traefik_helm_chart_config` as the YAML file K3s auto-deploys (`MANIFEST_NAME`)."""
    config = traefik_helm_chart_config(production, replicas, shutdown)
    return yaml.dump(config, Dumper=_LiteralDumper, sort_keys=False)
