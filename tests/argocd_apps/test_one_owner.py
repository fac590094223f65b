"""One owner per add-on: nothing Pulumi installs is also installed from argocd-apps/."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from synth.core import helm_releases, kubernetes_objects
from tests.argocd_apps.support import STACKS, kustomization_folders


def _charts_in_git(obj: dict[str, Any]) -> set[str]:
    """Helm charts an object installs: Argo CD sources, K3s HelmCharts, kustomize helmCharts."""
    spec = obj.get("spec") or {}
    sources = [spec.get("source") or {}, *(spec.get("sources") or [])]
    template = (spec.get("template") or {}).get("spec") or {}
    sources += [template.get("source") or {}, *(template.get("sources") or [])]
    charts = {s["chart"] for s in sources if s.get("chart")}
    if obj.get("kind") == "HelmChart" and spec.get("chart"):
        charts.add(spec["chart"])
    charts |= {c["name"] for c in obj.get("helmCharts") or [] if c.get("name")}
    return charts


def _ref(obj: dict[str, Any]) -> tuple[str, str, str]:
    meta = obj.get("metadata") or {}
    return obj.get("kind", ""), meta.get("namespace", ""), meta.get("name", "")


@pytest.fixture(scope="module")
def git_objects(build) -> list[dict[str, Any]]:
    objects = [obj for folder in kustomization_folders() for obj in build(folder)]
    # kustomize helmCharts are declared in kustomization files, not in the built objects.
    objects += [
        yaml.safe_load((f / "kustomization.yaml").read_text()) for f in kustomization_folders()
    ]
    return objects


@pytest.mark.parametrize("stack", STACKS)
def test_pulumi_and_argo_cd_never_own_the_same_thing(synth_results, git_objects, stack):
    result = synth_results[stack]
    releases = [entry for entry, _ in helm_releases(result)]
    pulumi_charts = {r["chart"] for r in releases}
    pulumi_namespaces = {r["namespace"] for r in releases}
    pulumi_objects = {_ref(obj) for _, obj in kubernetes_objects(result)}
    problems = []
    for obj in git_objects:
        for chart in _charts_in_git(obj) & pulumi_charts:
            problems.append(f"{_ref(obj)} installs chart {chart}, which Pulumi installs")
        if _ref(obj) in pulumi_objects:
            problems.append(f"{_ref(obj)} is also created by Pulumi")
        namespace = (obj.get("metadata") or {}).get("namespace")
        if namespace in pulumi_namespaces or (
            obj.get("kind") == "Namespace" and _ref(obj)[2] in pulumi_namespaces
        ):
            problems.append(
                f"{_ref(obj)} lands in {namespace or _ref(obj)[2]}, owned by a Pulumi release"
            )
    assert problems == []
    assert {"cert-manager", "vault", "external-secrets", "argo-cd"} <= pulumi_charts


def test_the_check_sees_a_second_owner():
    application = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "cert-manager", "namespace": "argocd"},
        "spec": {"source": {"chart": "cert-manager", "targetRevision": "v1.21.1"}},
    }
    kustomization = {"helmCharts": [{"name": "vault", "version": "0.34.1"}]}
    assert _charts_in_git(application) == {"cert-manager"}
    assert _charts_in_git(kustomization) == {"vault"}
