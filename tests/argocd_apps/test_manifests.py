"""Every object in argocd-apps/ and every object Argo CD would apply passes the real validators."""

from __future__ import annotations

import copy
import json

import pytest
from kubernetes_validate.utils import ValidationError

from components.argocd import gitops
from tests.argocd_apps.support import (
    STACKS,
    kustomization_folders,
    model_errors,
    ref,
    stack_facts,
    validate_core,
)
from tests.crd import crd_errors, is_custom_resource


def distinct(pairs: list[tuple[str, dict]]) -> list[tuple[str, dict]]:
    """The first (where, object) of each distinct object: stacks share most of their builds."""
    seen: dict[str, tuple[str, dict]] = {}
    for where, obj in pairs:
        seen.setdefault(json.dumps(obj, sort_keys=True), (where, obj))
    return list(seen.values())


@pytest.fixture(scope="session")
def every_object(build, deployed) -> list[tuple[str, dict]]:
    """(where, object) for the raw builds of every kustomization and every deployed build."""
    raw = [(str(folder), obj) for folder in kustomization_folders() for obj in build(folder)]
    built = [
        (f"{stack}: {app.name}", obj)
        for stack, apps in deployed.items()
        for app, objects in apps
        for obj in objects
    ]
    return distinct(raw + built)


@pytest.fixture(scope="session")
def custom_resources(every_object, deployed) -> list[dict]:
    """Custom resources in the builds, the root objects of every stack and the Applications they
    generate."""
    roots = [(stack, obj) for stack in STACKS for obj in gitops.root_objects(stack_facts(stack))]
    applications = [
        (stack, dict(app.application)) for stack, apps in deployed.items() for app, _ in apps
    ]
    found = [pair for pair in every_object if is_custom_resource(pair[1])]
    return [obj for _, obj in distinct(found + roots + applications)]


def test_core_objects_validate_strictly_at_the_pinned_kubernetes_minor(every_object):
    core = [(where, obj) for where, obj in every_object if not is_custom_resource(obj)]
    assert {obj["kind"] for _, obj in core} >= {"Deployment", "Service", "Ingress", "DaemonSet"}
    failures = []
    for where, obj in core:
        try:
            validate_core(obj)
        except ValidationError as exc:
            failures.append(f"{where}: {ref(obj)}: {exc.message}")
    assert not failures, "\n".join(failures)


def test_strict_core_validation_rejects_an_unknown_field(build):
    deployment = copy.deepcopy(
        next(o for o in build(kustomization_folders()[0]) if o["kind"] == "Deployment")
    )
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = "Always"
    with pytest.raises(ValidationError, match="imagePullPolcy"):
        validate_core(deployment)


def test_custom_resources_validate_against_the_upstream_crds(custom_resources):
    kinds = {obj["kind"] for obj in custom_resources}
    assert kinds == {"ExternalSecret", "AppProject", "ApplicationSet", "Application"}
    failures = [f"{ref(obj)}: {error}" for obj in custom_resources for error in crd_errors(obj)]
    assert not failures, "\n".join(failures)


def test_crd_validation_rejects_an_unknown_field(custom_resources):
    external_secret = copy.deepcopy(
        next(o for o in custom_resources if o["kind"] == "ExternalSecret")
    )
    external_secret["spec"]["secretStoreRef"]["namespace"] = "vault"
    assert crd_errors(external_secret) == [
        "spec/secretStoreRef: Additional properties are not allowed ('namespace' was unexpected)"
    ]


def test_custom_resources_validate_with_kubernetes_models(custom_resources):
    broken = copy.deepcopy(next(o for o in custom_resources if o["kind"] == "Application"))
    del broken["spec"]["destination"]
    # One node run for all: the broken copy shows the models can fail.
    *results, broken_result = model_errors([*custom_resources, broken])
    assert len(results) == len(custom_resources)
    assert [r for r in results if r["error"]] == []
    assert broken_result["error"] == "data/spec must have required property destination"
