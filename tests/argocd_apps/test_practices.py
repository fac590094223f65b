"""The practices every app on the platform follows, checked on what Argo CD would apply."""

from __future__ import annotations

import copy

import pytest

from components.argocd import gitops
from synth import apps as apps_check
from tests.argocd_apps.support import (
    STACKS,
    UNPATCHED_MARKERS,
    ref,
    stack_config_values,
    stack_facts,
)

WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet")


def sync_wave(obj: dict) -> int:
    return int(obj["metadata"].get("annotations", {}).get(gitops.SYNC_WAVE, "0"))


@pytest.mark.parametrize("stack", STACKS)
def test_every_app_passes_the_guardrails_as_argo_cd_renders_it(deployed, stack):
    """Replicas, spread, probes, drain, resources, Pod Security restricted, the metadata address
    blocked, unique hosts...: the
    checker `make policy` runs (synth/apps.py), so a finding there is a failure here and back."""
    failures = [
        f"{f.rule}: {f.object} ({f.source}): {f.message}"
        for f in apps_check.findings(stack_config_values(stack), deployed[stack])
        if f.enforcement == "mandatory"
    ]
    assert not failures, "\n".join(failures)


def test_production_runs_three_replicas(deployed):
    """prod's stack file raises replicas-min-2 to 3, so a prod overlay with 2 fails the checker."""
    for stack in STACKS:
        if stack_facts(stack).production:
            findings = apps_check.findings(
                stack_config_values(stack),
                [(app, _with_replicas(objects, 2)) for app, objects in deployed[stack]],
            )
            assert {f.rule for f in findings} >= {"replicas-min-2"}, stack


def _with_replicas(objects: list[dict], replicas: int) -> list[dict]:
    changed = copy.deepcopy(objects)
    for obj in changed:
        if obj["kind"] == "Deployment":
            obj["spec"]["replicas"] = replicas
    return changed


@pytest.mark.parametrize("stack", STACKS)
def test_ingress_hosts_come_from_the_environment_and_are_unique(deployed, stack):
    facts = stack_facts(stack)
    hosts = []
    for app, objects in deployed[stack]:
        for ingress in (o for o in objects if o["kind"] == "Ingress"):
            annotations = ingress["metadata"]["annotations"]
            assert annotations["cert-manager.io/cluster-issuer"] == facts.cluster_issuer
            (rule,) = ingress["spec"]["rules"]
            (tls,) = ingress["spec"]["tls"]
            assert rule["host"] == f"{app.name}.{facts.domain}"
            assert tls["hosts"] == [rule["host"]] and tls["secretName"]
            hosts.append(rule["host"])
    assert hosts and len(hosts) == len(set(hosts)), hosts


@pytest.mark.parametrize("stack", STACKS)
def test_secrets_come_from_vault_through_the_cluster_secret_store(deployed, stack):
    facts = stack_facts(stack)
    for app, objects in deployed[stack]:
        assert not [o for o in objects if o["kind"] == "Secret"], f"{app.name}: a Secret in Git"
        for external in (o for o in objects if o["kind"] == "ExternalSecret"):
            assert external["spec"]["secretStoreRef"] == {
                "kind": "ClusterSecretStore",
                "name": facts.secret_store,
            }
            for item in external["spec"].get("data", []):
                assert item["remoteRef"]["key"].startswith(f"apps/{app.namespace}/"), (
                    f"{ref(external)}: Vault lets namespace {app.namespace} read only apps/"
                    f"{app.namespace}/*"
                )


@pytest.mark.parametrize("stack", STACKS)
def test_sync_waves_create_secrets_before_pods_and_routes_after(deployed, stack):
    for app, objects in deployed[stack]:
        waves: dict[str, list[int]] = {}
        for obj in objects:
            waves.setdefault(obj["kind"], []).append(sync_wave(obj))
        pods = [w for kind in WORKLOADS for w in waves.get(kind, [])]
        if pods and "ExternalSecret" in waves:
            assert max(waves["ExternalSecret"]) < min(pods), app.name
        if pods and "Ingress" in waves:
            assert min(waves["Ingress"]) > max(pods), app.name


@pytest.mark.parametrize("stack", STACKS)
def test_every_environment_value_is_patched_in(deployed, stack):
    for app, objects in deployed[stack]:
        text = repr(objects)
        assert not [m for m in UNPATCHED_MARKERS if m in text], f"{stack}: {app.name}"


def test_nodelocaldns_serves_the_k3s_cluster_dns_address(deployed):
    (objects,) = [o for app, o in deployed["dev"] if app.name == "extra-nodelocaldns"]
    (daemonset,) = [o for o in objects if o["kind"] == "DaemonSet"]
    (configmap,) = [o for o in objects if o["kind"] == "ConfigMap"]
    (container,) = daemonset["spec"]["template"]["spec"]["containers"]
    assert container["args"][:2] == ["-localip", "169.254.20.10,10.43.0.10"]
    assert "bind 169.254.20.10 10.43.0.10" in configmap["data"]["Corefile"]
    assert daemonset["metadata"]["namespace"] == gitops.EXTRAS_NAMESPACE
