"""What every platform add-on shares: how its Kubernetes children are wired to the cluster."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.cluster_access import ClusterAccess
from components.platform import sizing
from components.versions import ChartPin

IGNORE_ANNOTATION = "policy.gitops-platform/ignore"
"""Names the guardrails an object is exempt from (policy/engine.py), reviewed with the object."""
SINGLE_REPLICA_EXEMPTION = "replicas-min-2"
"""What a small stack's one-replica controllers are exempt from (components/platform/sizing.py)."""
DNS_CONFIG = {"options": [{"name": "single-request-reopen"}]}
"""A pod's dnsConfig against the conntrack race of parallel A/AAAA lookups on one socket (the
guardrail dns-conntrack-mitigation), where a chart has a value for it."""
PULL_POLICY = "Always"
"""The charts' and the snapshot job's images are pinned by tag, not digest: a node must not run an
image a tag no longer names, so the kubelet resolves the tag at each container start."""
POD_SECURITY_CONTEXT = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
"""The pod-level context a chart leaves empty where its containers already run as non-root."""
NON_HOST_UID = 65532
"""The user and group of chart images that run as any user but default to 1000: on the nodes'
Amazon Linux that is ec2-user, with password-less sudo, which a container that escaped would
hold."""
NON_HOST_USER = {"runAsUser": NON_HOST_UID, "runAsGroup": NON_HOST_UID}
RELEASE_TIMEOUT_SECONDS = 900
"""Rancher and a first cert-manager install take several minutes on a fresh cluster."""


@dataclass(frozen=True)
class ChartSource:
    """Where the releases take their charts from: each pin's repository, or with a `directory`
    (`platform:charts.directory`: an air-gapped mirror, the chart cache) the packaged archive
    `<directory>/<chart>-<version>.tgz`, the name `helm pull` and `helm package` give it."""

    directory: str | None = None

    def archive(self, pin: ChartPin) -> Path:
        assert self.directory is not None
        return Path(self.directory).expanduser().resolve() / pin.archive

    def release_args(self, pin: ChartPin) -> dict[str, Any]:
        if self.directory is None:
            return {
                "chart": pin.chart,
                "version": pin.version,
                "repository_opts": k8s.helm.v3.RepositoryOptsArgs(repo=pin.repo),
            }
        return {"chart": str(self.archive(pin))}


def k8s_opts(
    parent: pulumi.Resource, access: ClusterAccess, *depends_on: pulumi.Resource
) -> pulumi.ResourceOptions:
    """Options of a Kubernetes child: the cluster's provider, behind its readiness gate."""
    return pulumi.ResourceOptions(
        parent=parent, provider=access.provider, depends_on=[access.ready, *depends_on]
    )


def owned_namespace(
    name: str,
    parent: pulumi.Resource,
    access: ClusterAccess,
    namespace: str,
    *depends_on: pulumi.Resource,
) -> k8s.core.v1.Namespace:
    """A release's namespace as a resource of the stack: Helm's `--create-namespace` leaves the
    namespace behind on uninstall, this one is deleted by `pulumi destroy` with all it holds."""
    return k8s.core.v1.Namespace(
        name, metadata={"name": namespace}, opts=k8s_opts(parent, access, *depends_on)
    )


def chart_release(
    name: str,
    parent: pulumi.Resource,
    access: ClusterAccess,
    pin: ChartPin,
    *,
    namespace: k8s.core.v1.Namespace,
    values: pulumi.Input[Mapping[str, Any]],
    charts: ChartSource,
    release_name: str | None = None,
    skip_await: bool = False,
    depends_on: Sequence[pulumi.Resource] = (),
) -> k8s.helm.v3.Release:
    """A Helm release of a pinned chart (helm.v3.Release runs the charts' hooks) in a namespace
    the stack owns (`owned_namespace`)."""
    return k8s.helm.v3.Release(
        name,
        k8s.helm.v3.ReleaseArgs(
            name=release_name or pin.chart,
            **charts.release_args(pin),
            namespace=namespace.metadata["name"],
            values=values,
            skip_await=skip_await,
            timeout=RELEASE_TIMEOUT_SECONDS,
            cleanup_on_fail=True,
        ),
        opts=k8s_opts(parent, access, namespace, *depends_on),
    )


def custom_resource(
    name: str,
    parent: pulumi.Resource,
    access: ClusterAccess,
    manifest: Mapping[str, Any],
    *depends_on: pulumi.Resource,
) -> k8s.apiextensions.CustomResource:
    """A custom resource from a plain manifest (`apiVersion`, `kind`, `metadata`, `spec`).

    Its CRD usually comes from a Helm release of the same program; `depends_on` must name that
    release so `up` creates the CRD first (pulumi-kubernetes #1735, #3247).
    """
    return k8s.apiextensions.CustomResource(
        name,
        api_version=manifest["apiVersion"],
        kind=manifest["kind"],
        metadata=manifest["metadata"],
        spec=manifest["spec"],
        opts=k8s_opts(parent, access, *depends_on),
    )


def create_chain(
    prefix: str,
    parent: pulumi.Resource,
    access: ClusterAccess,
    manifests: Sequence[Mapping[str, Any]],
    *after: pulumi.Resource,
) -> list[pulumi.Resource]:
    """Custom resources created one after the other, the first after everything in `after`."""
    created: list[pulumi.Resource] = []
    for manifest in manifests:
        role = f"{manifest['kind'].lower()}-{manifest['metadata']['name']}"
        created.append(
            custom_resource(f"{prefix}-{role}", parent, access, manifest, *after, *created[-1:])
        )
    return created


def spread_over_nodes(match_labels: Mapping[str, str]) -> dict[str, Any]:
    """`affinity` that keeps every pod `match_labels` selects on a node of its own: replicas on
    one node would die together when it is drained or lost."""
    return {
        "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {
                    "labelSelector": {"matchLabels": dict(match_labels)},
                    "topologyKey": "kubernetes.io/hostname",
                }
            ]
        }
    }


def controller_values(
    release: str,
    workload: str,
    size: sizing.Size,
    match_labels: Mapping[str, str],
    annotations_key: str,
) -> dict[str, Any]:
    """What a controller Deployment's section of cert-manager's or External Secrets' values
    (they share the keys) needs at a size: replicas, requests and limits, and with more than one
    replica a disruption budget and one node per replica. One replica (small stacks) carries the
    replicas-min-2 exemption on the object, under the chart's `annotations_key`."""
    count = sizing.replicas(release, workload, size)
    values: dict[str, Any] = {
        "replicaCount": count,
        "resources": sizing.resources(release, workload, size),
        "image": {"pullPolicy": PULL_POLICY},
        # The pod's context in cert-manager's values, the container's in External Secrets'.
        "securityContext": NON_HOST_USER,
    }
    if count > 1:
        values["podDisruptionBudget"] = {"enabled": True, "maxUnavailable": 1}
        values["affinity"] = spread_over_nodes(match_labels)
    else:
        values[annotations_key] = {IGNORE_ANNOTATION: SINGLE_REPLICA_EXEMPTION}
    return values
