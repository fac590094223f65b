"""The practices every app on the platform follows, checked on what Argo CD would apply."""

from __future__ import annotations

import re

import pytest

from components.argocd import gitops
from policy.quantity import parse_quantity as quantity
from tests.argocd_apps.support import STACKS, UNPATCHED_MARKERS, ref, stack_facts

WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet")
PINNED_IMAGE = re.compile(r"^[^@\s]+:[\w][\w.-]{0,127}@sha256:[0-9a-f]{64}$")


def objects_of(deployed, stack: str, *kinds: str, apps_only: bool = False) -> list[dict]:
    return [
        obj
        for app, objects in deployed[stack]
        if not (apps_only and app.application["spec"]["project"] != gitops.APPS_PROJECT)
        for obj in objects
        if obj["kind"] in kinds
    ]


def containers(workload: dict) -> list[dict]:
    return workload["spec"]["template"]["spec"]["containers"]


def sync_wave(obj: dict) -> int:
    return int(obj["metadata"].get("annotations", {}).get(gitops.SYNC_WAVE, "0"))


@pytest.mark.parametrize("stack", STACKS)
def test_replicas_two_or_three_in_production(deployed, stack):
    wanted = 3 if stack_facts(stack).production else 2
    deployments = objects_of(deployed, stack, "Deployment")
    assert deployments
    for deployment in deployments:
        assert deployment["spec"]["replicas"] >= wanted, ref(deployment)


@pytest.mark.parametrize("stack", STACKS)
def test_replicas_spread_across_nodes(deployed, stack):
    for deployment in objects_of(deployed, stack, "Deployment"):
        spec = deployment["spec"]["template"]["spec"]
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        spreads = [
            c
            for c in spec.get("topologySpreadConstraints", [])
            if c["topologyKey"] == "kubernetes.io/hostname"
            and c["whenUnsatisfiable"] == "DoNotSchedule"
            and c["maxSkew"] == 1
            and c["labelSelector"]["matchLabels"].items() <= pod_labels.items()
        ]
        assert spreads, f"{ref(deployment)}: no hostname spread over its own pods"


@pytest.mark.parametrize("stack", STACKS)
def test_every_container_has_readiness_and_liveness_probes(deployed, stack):
    for workload in objects_of(deployed, stack, *WORKLOADS):
        for container in containers(workload):
            assert {"readinessProbe", "livenessProbe"} <= container.keys(), (
                f"{ref(workload)}: {container['name']}"
            )


@pytest.mark.parametrize("stack", STACKS)
def test_prestop_pause_and_grace_period_cover_the_drain(deployed, stack):
    for deployment in objects_of(deployed, stack, "Deployment"):
        spec = deployment["spec"]["template"]["spec"]
        for container in containers(deployment):
            pause = container["lifecycle"]["preStop"]["sleep"]["seconds"]
            assert pause >= 5, f"{ref(deployment)}: endpoints need a few seconds to drop the pod"
            drain = re.search(r"--server-shutdown-timeout=(\d+)s", " ".join(container["args"]))
            assert drain, f"{ref(deployment)}: the app's drain time is not set explicitly"
            assert spec["terminationGracePeriodSeconds"] >= pause + int(drain[1]) + 5, ref(
                deployment
            )


@pytest.mark.parametrize("stack", STACKS)
def test_requests_and_limits_with_limit_at_most_twice_the_request(deployed, stack):
    for workload in objects_of(deployed, stack, *WORKLOADS):
        for container in containers(workload):
            resources = container["resources"]
            for resource in ("cpu", "memory"):
                limit = quantity(resources["limits"][resource])
                request = quantity(resources["requests"][resource])
                assert request <= limit <= 2 * request, f"{ref(workload)}: {resource}"


def test_local_is_smaller_and_prod_larger_than_dev(deployed):
    def shape(stack):
        (deployment,) = objects_of(deployed, stack, "Deployment")
        return deployment["spec"]["replicas"], containers(deployment)[0]["resources"]

    (dev_replicas, dev), (prod_replicas, prod), (_, local) = map(shape, ("dev", "prod", "local"))
    assert (dev_replicas, prod_replicas, prod) == (2, 3, dev)
    for kind in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            assert quantity(local[kind][resource]) < quantity(dev[kind][resource])


@pytest.mark.parametrize("stack", STACKS)
def test_a_disruption_budget_keeps_replicas_serving(deployed, stack):
    budgets = objects_of(deployed, stack, "PodDisruptionBudget")
    for deployment in objects_of(deployed, stack, "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        (budget,) = [
            b
            for b in budgets
            if b["spec"]["selector"]["matchLabels"].items() <= labels.items()
            and b["metadata"]["namespace"] == deployment["metadata"]["namespace"]
        ]
        assert budget["spec"]["maxUnavailable"] < deployment["spec"]["replicas"], ref(budget)


@pytest.mark.parametrize("stack", STACKS)
def test_dns_config_avoids_the_conntrack_race(deployed, stack):
    for deployment in objects_of(deployed, stack, "Deployment"):
        options = deployment["spec"]["template"]["spec"]["dnsConfig"]["options"]
        assert {"name": "single-request-reopen"} in options, ref(deployment)


@pytest.mark.parametrize("stack", STACKS)
def test_apps_run_as_non_root_on_a_read_only_root_filesystem(deployed, stack):
    for workload in objects_of(deployed, stack, *WORKLOADS, apps_only=True):
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, ref(workload)
            assert context["allowPrivilegeEscalation"] is False, ref(workload)
            assert context["capabilities"]["drop"] == ["ALL"], ref(workload)


@pytest.mark.parametrize("stack", STACKS)
def test_images_are_pinned_by_tag_and_digest(deployed, stack):
    for workload in objects_of(deployed, stack, *WORKLOADS):
        for container in containers(workload):
            assert PINNED_IMAGE.match(container["image"]), f"{ref(workload)}: {container['image']}"


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
            for item in external["spec"]["data"]:
                assert item["remoteRef"]["key"].startswith(f"apps/{app.namespace}/"), (
                    f"{ref(external)}: Vault lets namespace {app.namespace} read only apps/"
                    f"{app.namespace}/*"
                )


@pytest.mark.parametrize("stack", STACKS)
def test_sync_waves_create_secrets_before_pods_and_routes_after(deployed, stack):
    for app, objects in deployed[stack]:
        waves = {o["kind"]: sync_wave(o) for o in objects}
        if "ExternalSecret" in waves:
            assert waves["ExternalSecret"] < waves["Deployment"], app.name
        if "Ingress" in waves:
            assert waves["Ingress"] > waves["Deployment"], app.name


@pytest.mark.parametrize("stack", STACKS)
def test_every_environment_value_is_patched_in(deployed, stack):
    for app, objects in deployed[stack]:
        text = repr(objects)
        assert not [m for m in UNPATCHED_MARKERS if m in text], f"{stack}: {app.name}"


def test_nodelocaldns_serves_the_k3s_cluster_dns_address(deployed):
    (daemonset,) = objects_of(deployed, "dev", "DaemonSet")
    (configmap,) = objects_of(deployed, "dev", "ConfigMap")
    (container,) = containers(daemonset)
    assert container["args"][:2] == ["-localip", "169.254.20.10,10.43.0.10"]
    assert "bind 169.254.20.10 10.43.0.10" in configmap["data"]["Corefile"]
    assert daemonset["metadata"]["namespace"] == gitops.EXTRAS_NAMESPACE


def test_apps_cannot_reach_the_instance_metadata_service(deployed):
    # Extras run in kube-system with host networking, where NetworkPolicy does not apply.
    for stack, apps in deployed.items():
        for app, objects in apps:
            if f"/{gitops.EXTRAS_DIR}/" in f"/{app.path}/":
                continue
            policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
            egress = [p for p in policies if "Egress" in p["spec"].get("policyTypes", [])]
            assert egress, f"{stack}/{app.name}: no egress policy"
            blocks = [
                to["ipBlock"]
                for p in egress
                for rule in p["spec"].get("egress", [])
                for to in rule.get("to", [])
                if "ipBlock" in to
            ]
            assert blocks and all("169.254.169.254/32" in b.get("except", []) for b in blocks)
