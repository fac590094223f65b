"""Replicas, requests and limits of every platform container, per stack size.

Two sizes: `small` (any non-production stack: one replica of everything, on as little hardware
as the platform runs on) and `ha` (production: at least two replicas of every controller, three
for Raft and Redis Sentinel quorums). The chart values of each release read this table, so the
rendered charts (`build/synth/<stack>/rendered/`) and the capacity check
(`build/synth/<stack>/capacity.json`) follow it, and node sizes are chosen against it.

Requests are what the container needs at rest on a cluster of this size (the scheduler reserves
them); limits are twice the request, the guardrail `limit-request-ratio`'s advisory bound, so a
burst (a sync wave, a certificate renewal storm, Rancher's start) has room without overcommitting
the node by more than that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Size = Literal["small", "ha"]
SIZES: tuple[Size, ...] = ("small", "ha")
LIMIT_FACTOR = 2
"""limit = request x this, for cpu and memory."""


def size_of(production: bool) -> Size:
    """The size of a stack: `ha` for production stacks, `small` otherwise."""
    return "ha" if production else "small"


@dataclass(frozen=True)
class Request:
    """A container's requests; its limits are LIMIT_FACTOR times these."""

    cpu_millis: int
    memory_mib: int

    def values(self) -> dict[str, dict[str, str]]:
        """The container's `resources` as Kubernetes quantities."""
        return {
            "requests": {"cpu": f"{self.cpu_millis}m", "memory": f"{self.memory_mib}Mi"},
            "limits": {
                "cpu": f"{self.cpu_millis * LIMIT_FACTOR}m",
                "memory": f"{self.memory_mib * LIMIT_FACTOR}Mi",
            },
        }


def _same(cpu_millis: int, memory_mib: int) -> dict[Size, Request]:
    return dict.fromkeys(SIZES, Request(cpu_millis, memory_mib))


# release -> container -> size -> request. Containers are named as the chart names them
# (init containers and hook Jobs included).
RESOURCES: dict[str, dict[str, dict[Size, Request]]] = {
    "cert-manager": {
        "controller": _same(50, 128),
        "webhook": _same(25, 48),
        # The CA injector caches every Secret it injects from: more memory than its CPU suggests.
        "cainjector": _same(25, 128),
        "startupapicheck": _same(25, 32),
    },
    "external-secrets": {
        "controller": _same(50, 128),
        "webhook": _same(25, 48),
        "cert-controller": _same(25, 96),
    },
    "vault": {
        # Raft keeps the whole data set in memory; production holds every app's secrets.
        "server": {"small": Request(100, 256), "ha": Request(250, 512)},
        "tls-reloader": _same(5, 8),
    },
    "argocd": {
        # The application controller holds the live state of every object it manages.
        "application-controller": {"small": Request(250, 512), "ha": Request(500, 768)},
        "server": _same(50, 128),
        # Manifest generation (kustomize, helm) runs inside the repo server.
        "repo-server": _same(100, 256),
        "copyutil": _same(10, 16),
        "applicationset-controller": _same(25, 64),
        "redis": _same(50, 64),
        "redis-secret-init": _same(10, 32),
        # redis-ha (production): three Redis + Sentinel pods behind three HAProxy pods.
        "redis-ha-redis": _same(50, 128),
        "redis-ha-sentinel": _same(10, 32),
        "redis-ha-split-brain-fix": _same(10, 16),
        "redis-ha-config-init": _same(10, 16),
        "haproxy": _same(25, 64),
        "haproxy-config-init": _same(10, 16),
    },
    "rancher": {
        # Rancher caches every Kubernetes type of the clusters it manages; under 1 GiB it
        # restarts while it starts.
        "rancher": {"small": Request(250, 1024), "ha": Request(500, 1536)},
    },
}

# release -> workload -> size -> replicas. Production runs three of everything: a controller (and
# its webhook) keeps two answering through a node drain, as the production stack's policy asks of
# every workload (stacks/Pulumi.prod.yaml, replicas-min-2), and Vault's Raft and Redis Sentinel
# need three for a quorum that survives the loss of one.
REPLICAS: dict[str, dict[str, dict[Size, int]]] = {
    "cert-manager": {
        "controller": {"small": 1, "ha": 3},
        "webhook": {"small": 1, "ha": 3},
        "cainjector": {"small": 1, "ha": 3},
    },
    "external-secrets": {
        "controller": {"small": 1, "ha": 3},
        "webhook": {"small": 1, "ha": 3},
        "cert-controller": {"small": 1, "ha": 3},
    },
    "vault": {"server": {"small": 1, "ha": 3}},
    "argocd": {
        "server": {"small": 1, "ha": 3},
        "repo-server": {"small": 1, "ha": 3},
        "applicationset-controller": {"small": 1, "ha": 3},
        "redis-ha": {"small": 0, "ha": 3},
    },
    "rancher": {"rancher": {"small": 1, "ha": 3}},
}


def resources(release: str, container: str, size: Size) -> dict[str, Any]:
    """The `resources` block of one container of a release at a size."""
    try:
        return RESOURCES[release][container][size].values()
    except KeyError:
        raise KeyError(f"no size for container {container!r} of release {release!r}") from None


def replicas(release: str, workload: str, size: Size) -> int:
    """How many replicas of one workload of a release run at a size."""
    return REPLICAS[release][workload][size]
