"""The admission policy that keeps app pods off the servers: valid for the API server, and its CEL
evaluated (cel-python) on the pods it must refuse and admit."""

from __future__ import annotations

import celpy
import kubernetes_validate
import pytest

from components.argocd.gitops import APPS_OFF_SERVERS, server_taint_admission
from tests.argocd_apps.support import KUBE_VERSION, created_kinds
from tests.conftest import STACKS

POLICY, BINDING = server_taint_admission()


def _program(expression: str) -> celpy.Runner:
    env = celpy.Environment()
    return env.program(env.compile(expression))


MATCH = _program(POLICY["spec"]["matchConditions"][0]["expression"])
(VALIDATION,) = POLICY["spec"]["validations"]
ALLOWED = _program(VALIDATION["expression"])


def _admitted(namespace: str, tolerations: list[dict] | None) -> bool:
    spec = {"containers": [{"name": "app", "image": "app:1"}]}
    if tolerations is not None:
        spec["tolerations"] = tolerations
    activation = {
        "request": celpy.json_to_cel({"namespace": namespace}),
        "object": celpy.json_to_cel({"spec": spec}),
    }
    return not MATCH.evaluate(activation) or bool(ALLOWED.evaluate(activation))


def test_objects_validate_strictly():
    for obj in (POLICY, BINDING):
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
    assert BINDING["spec"]["policyName"] == POLICY["metadata"]["name"] == APPS_OFF_SERVERS
    assert BINDING["spec"]["validationActions"] == ["Deny"]


@pytest.mark.parametrize(
    "tolerations",
    [
        [{"key": "CriticalAddonsOnly", "operator": "Exists"}],
        [{"key": "CriticalAddonsOnly", "operator": "Equal", "value": "true"}],
        [{"key": "CriticalAddonsOnly", "operator": "Exists", "effect": "NoExecute"}],
        [{"operator": "Exists"}],
        [{"key": "", "operator": "Exists"}],
        [{"key": "node.kubernetes.io/not-ready", "operator": "Exists"}, {"operator": "Exists"}],
    ],
)
def test_app_pods_that_tolerate_the_servers_taint_are_refused(tolerations):
    assert not _admitted("shop", tolerations)


@pytest.mark.parametrize(
    "tolerations",
    [
        None,
        [],
        [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"}],
        # Only NoExecute matches the servers' taint.
        [{"key": "CriticalAddonsOnly", "operator": "Exists", "effect": "NoSchedule"}],
        [{"operator": "Exists", "effect": "NoSchedule"}],
    ],
)
def test_app_pods_that_stay_off_the_servers_are_admitted(tolerations):
    assert _admitted("shop", tolerations)


@pytest.mark.parametrize(
    "namespace", ["kube-system", "vault", "argocd", "cattle-system", "fleet-local"]
)
def test_platform_pods_may_run_on_the_servers(namespace):
    assert _admitted(namespace, [{"key": "CriticalAddonsOnly", "operator": "Exists"}])


@pytest.mark.parametrize("stack", STACKS)
def test_every_stack_creates_the_policy_and_its_binding(synth_results, stack):
    kinds = created_kinds(
        synth_results[stack], "kubernetes:admissionregistration.k8s.io/v1:", APPS_OFF_SERVERS
    )
    assert kinds == {"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}
