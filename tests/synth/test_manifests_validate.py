"""Every Kubernetes object the program creates (the synth's manifests/) passes the real validators:
kubernetes-validate --strict at the pinned Kubernetes minor for core kinds, the upstream CRD
schemas (strict) and the npm @kubernetes-models classes for custom resources."""

from __future__ import annotations

import copy

import kubernetes_validate
import pytest
import yaml

from components import versions
from tests.argocd_apps.support import model_errors
from tests.conftest import STACKS
from tests.crd import crd_errors, is_custom_resource

KUBE_VERSION = f"{versions.kubernetes_minor()}.0"


def _objects(synth_dirs, stack) -> list[dict]:
    return [
        yaml.safe_load(p.read_text())
        for p in sorted((synth_dirs[stack] / "manifests").glob("*.yaml"))
    ]


@pytest.mark.parametrize("stack", STACKS)
def test_core_objects_validate_strictly(synth_dirs, stack):
    core = [o for o in _objects(synth_dirs, stack) if not is_custom_resource(o)]
    assert {"Namespace", "Secret"} <= {o["kind"] for o in core}
    for obj in core:
        if obj.get("stringData") == "[secret]":
            # The synth writes Secret data as "[secret]"; the object's shape is what is checked.
            obj = {**obj, "stringData": {"redacted": "x"}}
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


def test_strict_core_validation_rejects_a_typo(synth_dirs):
    namespace = next(o for o in _objects(synth_dirs, "dev") if o["kind"] == "Namespace")
    broken = copy.deepcopy(namespace)
    broken["metadata"]["lables"] = {"x": "y"}
    with pytest.raises(kubernetes_validate.utils.ValidationError):
        kubernetes_validate.validate(broken, KUBE_VERSION, strict=True)


@pytest.mark.parametrize("stack", STACKS)
def test_custom_resources_match_the_upstream_crds(synth_dirs, stack):
    custom = [o for o in _objects(synth_dirs, stack) if is_custom_resource(o)]
    assert {"ClusterIssuer", "ApplicationSet", "AppProject", "ClusterSecretStore"} <= {
        o["kind"] for o in custom
    }
    failures = [f"{o['kind']}/{o['metadata']['name']}: {e}" for o in custom for e in crd_errors(o)]
    assert failures == []


@pytest.mark.parametrize("stack", STACKS)
def test_custom_resources_pass_the_npm_models(synth_dirs, stack):
    custom = [o for o in _objects(synth_dirs, stack) if is_custom_resource(o)]
    results = model_errors(custom)
    assert [r for r in results if r["error"]] == []
    assert len(results) == len(custom)
