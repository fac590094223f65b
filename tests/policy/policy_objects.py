"""Builders of compliant Kubernetes objects and AWS resources for the policy tests.

Each builder returns a fresh object that passes every rule, so a test changes exactly the one
thing it is about and asserts that exactly the matching rule fires.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from policy import Finding

LABELS = {"app.kubernetes.io/name": "web"}


def container(name: str = "app", **changes: Any) -> dict[str, Any]:
    """A container with a pinned image, requests and limits, a readiness probe and a preStop."""
    spec: dict[str, Any] = {
        "name": name,
        "image": "registry.example.com/shop/web:1.4.2",
        "ports": [{"containerPort": 8080}],
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"cpu": "200m", "memory": "256Mi"},
        },
        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}},
        "lifecycle": {"preStop": {"sleep": {"seconds": 5}}},
    }
    spec.update(changes)
    return spec


def pod_spec(**changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [container()],
        "dnsConfig": {"options": [{"name": "single-request-reopen"}]},
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": dict(LABELS)},
            }
        ],
    }
    spec.update(changes)
    return spec


def workload(
    kind: str = "Deployment",
    name: str = "web",
    namespace: str = "shop",
    replicas: int | None = 2,
    **pod_changes: Any,
) -> dict[str, Any]:
    """A Deployment (or another pod-bearing kind) whose pods carry LABELS."""
    template = {"metadata": {"labels": dict(LABELS)}, "spec": pod_spec(**pod_changes)}
    metadata = {"name": name, "namespace": namespace}
    if kind == "Pod":
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {**metadata, "labels": dict(LABELS)},
            "spec": template["spec"],
        }
    if kind == "CronJob":
        return {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": metadata,
            "spec": {"schedule": "0 * * * *", "jobTemplate": {"spec": {"template": template}}},
        }
    spec: dict[str, Any] = {"selector": {"matchLabels": dict(LABELS)}, "template": template}
    if replicas is not None and kind not in ("DaemonSet", "Job"):
        spec["replicas"] = replicas
    group = "batch/v1" if kind == "Job" else "apps/v1"
    return {"apiVersion": group, "kind": kind, "metadata": metadata, "spec": spec}


def service(name: str = "web", namespace: str = "shop", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"selector": dict(LABELS), "ports": [{"port": 80, "targetPort": 8080}], **spec},
    }


def pdb(name: str = "web", namespace: str = "shop", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": dict(LABELS)}, **spec},
    }


def hpa(target: str = "web", namespace: str = "shop", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": target, "namespace": namespace},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
            "minReplicas": 2,
            "maxReplicas": 5,
            **spec,
        },
    }


def ingress(
    name: str,
    host: str | None,
    backend: str,
    path: str = "/",
    namespace: str = "shop",
    path_type: str = "Prefix",
) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "http": {
            "paths": [
                {
                    "path": path,
                    "pathType": path_type,
                    "backend": {"service": {"name": backend, "port": {"number": 80}}},
                }
            ]
        }
    }
    if host is not None:
        rule["host"] = host
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"rules": [rule]},
    }


def served_app(**workload_changes: Any) -> list[dict[str, Any]]:
    """A workload with the Service that routes to it and its PodDisruptionBudget."""
    return [workload(**workload_changes), service(), pdb()]


def resource(token: str, name: str, **props: Any) -> dict[str, Any]:
    """A Pulumi resource as the engine describes it."""
    return {
        "type": token,
        "name": name,
        "urn": f"urn:pulumi:dev::gitops-platform::{token}::{name}",
        "props": props,
    }


def fired(findings: Iterable[Finding]) -> list[str]:
    """Rule ids of the findings, in order."""
    return [finding.rule for finding in findings]
