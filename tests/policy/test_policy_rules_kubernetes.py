"""Kubernetes rules, one behaviour per test, over compliant objects changed in one place."""

from __future__ import annotations

from typing import Any

import pytest

from policy import Enforcement, PolicySettings, evaluate
from policy.rules.kubernetes import image_tag_problem, prestop_delay
from tests.policy.policy_objects import (
    LABELS,
    container,
    fired,
    hpa,
    ingress,
    pdb,
    served_app,
    service,
    workload,
)


def only(rule: str, objects: list[dict[str, Any]], **config: Any) -> list[Any]:
    settings = PolicySettings.from_policy_config({rule: config} if config else None)
    return evaluate(manifests=objects, settings=settings, rules=[rule])


def test_compliant_app_passes_every_rule() -> None:
    assert evaluate(manifests=served_app()) == []


# --- replicas-min-2 ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("replicas", "text"), [(1, "spec.replicas is 1"), (None, "spec.replicas (unset, so 1) is 1")]
)
def test_single_replica_fails(replicas: int | None, text: str) -> None:
    findings = evaluate(manifests=served_app(replicas=replicas))
    assert fired(findings) == ["replicas-min-2"]
    assert findings[0].enforcement is Enforcement.MANDATORY
    assert findings[0].object == "Deployment/shop/web"
    assert text in findings[0].message


@pytest.mark.parametrize("kind", ["DaemonSet", "Job", "CronJob", "Pod"])
def test_replica_rules_skip_non_replicated_kinds(kind: str) -> None:
    assert only("replicas-min-2", [workload(kind=kind, replicas=1)]) == []


def test_hpa_min_replicas_replace_spec_replicas() -> None:
    assert only("replicas-min-2", [workload(replicas=None), hpa(minReplicas=3)]) == []
    findings = only("replicas-min-2", [workload(replicas=5), hpa(minReplicas=1)])
    assert "HorizontalPodAutoscaler web minReplicas is 1" in findings[0].message


def test_hpa_without_min_replicas_defaults_to_one() -> None:
    autoscaler = hpa()
    del autoscaler["spec"]["minReplicas"]
    assert fired(only("replicas-min-2", [workload(), autoscaler])) == ["replicas-min-2"]


def test_replica_thresholds_are_configurable() -> None:
    assert fired(only("replicas-min-2", [workload(replicas=2)], minReplicas=3)) == [
        "replicas-min-2"
    ]
    findings = only("replicas-min-2", [workload(replicas=60)], maxReplicas=50)
    assert "spec.replicas is 60, above the ceiling of 50" in findings[0].message


def test_replicas_as_float_from_synth_data() -> None:
    assert only("replicas-min-2", [workload(replicas=2.0)]) == []  # type: ignore[arg-type]


# --- spread-across-nodes -------------------------------------------------------------------------


def test_replicas_without_spread_fail() -> None:
    findings = evaluate(manifests=served_app(topologySpreadConstraints=[]))
    assert fired(findings) == ["spread-across-nodes"]
    assert "2 replicas but no podAntiAffinity" in findings[0].message


def anti_affinity(key: str, labels: dict[str, str], required: bool = False) -> dict[str, Any]:
    term = {"topologyKey": key, "labelSelector": {"matchLabels": labels}}
    if required:
        return {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}
    return {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 100, "podAffinityTerm": term}
            ]
        }
    }


@pytest.mark.parametrize(
    ("affinity", "spreads"),
    [
        (anti_affinity("kubernetes.io/hostname", LABELS), True),
        (anti_affinity("kubernetes.io/hostname", LABELS, required=True), True),
        (anti_affinity("topology.kubernetes.io/zone", LABELS), True),
        (anti_affinity("kubernetes.io/hostname", {"app.kubernetes.io/name": "other"}), False),
        (anti_affinity("kubernetes.io/os", LABELS), False),
    ],
    ids=["preferred-hostname", "required-hostname", "zone", "foreign-selector", "other-key"],
)
def test_anti_affinity_counts_when_it_selects_own_pods(
    affinity: dict[str, Any], spreads: bool
) -> None:
    findings = only(
        "spread-across-nodes", [workload(topologySpreadConstraints=[], affinity=affinity)]
    )
    assert (findings == []) is spreads


def test_invalid_spread_constraint_does_not_count() -> None:
    constraint = {
        "maxSkew": 0,
        "topologyKey": "kubernetes.io/hostname",
        "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": {"matchLabels": LABELS},
    }
    assert fired(
        only("spread-across-nodes", [workload(topologySpreadConstraints=[constraint])])
    ) == ["spread-across-nodes"]


def test_spread_follows_hpa_max_replicas() -> None:
    objects = [workload(replicas=None, topologySpreadConstraints=[]), hpa(maxReplicas=4)]
    assert "4 replicas" in only("spread-across-nodes", objects)[0].message
    assert only("spread-across-nodes", [workload(replicas=1, topologySpreadConstraints=[])]) == []


# --- readiness-probe-if-serviced -----------------------------------------------------------------


def test_served_container_without_readiness_probe_fails() -> None:
    sidecar = container("proxy", readinessProbe=None)
    findings = evaluate(manifests=served_app(containers=[container(), sidecar]))
    assert fired(findings) == ["readiness-probe-if-serviced"]
    assert "Service web routes to these pods, but container proxy has no readinessProbe" in (
        findings[0].message
    )


@pytest.mark.parametrize(
    "objects",
    [
        [workload(containers=[container(readinessProbe=None)])],
        [workload(containers=[container(readinessProbe=None)]), service(namespace="other")],
        [
            workload(containers=[container(readinessProbe=None)]),
            service(selector={**LABELS, "tier": "frontend"}),
        ],
        [
            workload(containers=[container(readinessProbe=None)]),
            service(type="ExternalName", externalName="db.example.com"),
        ],
        [workload(kind="Job", containers=[container(readinessProbe=None)]), service()],
    ],
    ids=["no-service", "other-namespace", "selector-not-subset", "external-name", "job"],
)
def test_readiness_only_for_pods_a_service_selects(objects: list[dict[str, Any]]) -> None:
    assert only("readiness-probe-if-serviced", objects) == []


# --- graceful-shutdown ---------------------------------------------------------------------------


def test_served_container_without_prestop_fails() -> None:
    findings = evaluate(manifests=served_app(containers=[container(lifecycle=None)]))
    assert fired(findings) == ["graceful-shutdown"]
    assert "container app has no lifecycle.preStop hook" in findings[0].message


def test_grace_period_must_cover_prestop_delay() -> None:
    hook = {"preStop": {"exec": {"command": ["/bin/sh", "-c", "sleep 28"]}}}
    findings = only("graceful-shutdown", served_app(containers=[container(lifecycle=hook)]))
    assert "terminationGracePeriodSeconds 30 (unset, so 30) does not cover the 28s" in (
        findings[0].message
    )
    longer = served_app(containers=[container(lifecycle=hook)], terminationGracePeriodSeconds=33)
    assert only("graceful-shutdown", longer) == []
    assert fired(only("graceful-shutdown", longer, graceMarginSeconds=10)) == ["graceful-shutdown"]


@pytest.mark.parametrize(
    ("hook", "seconds"),
    [
        ({"sleep": {"seconds": 15}}, 15),
        ({"exec": {"command": ["sleep", "5"]}}, 5),
        ({"exec": {"command": ["/bin/sh", "-c", "sleep 2.5 && nginx -s quit"]}}, 3),
        ({"exec": {"command": ["/bin/sh", "-c", "nginx -s quit"]}}, 0),
        ({"httpGet": {"path": "/drain", "port": 8080}}, 0),
    ],
)
def test_prestop_delay(hook: dict[str, Any], seconds: int) -> None:
    assert prestop_delay(hook) == seconds


def test_unserved_workers_need_no_prestop() -> None:
    assert only("graceful-shutdown", [workload(containers=[container(lifecycle=None)])]) == []


# --- resources-requests-limits -------------------------------------------------------------------


def test_missing_resources_are_named() -> None:
    resources = {"requests": {"cpu": "100m"}, "limits": {"cpu": "200m", "memory": "256Mi"}}
    findings = evaluate(manifests=served_app(containers=[container(resources=resources)]))
    assert fired(findings) == ["resources-requests-limits"]
    assert findings[0].message.startswith("container app sets no requests.memory:")


def test_init_containers_need_resources_too() -> None:
    init = {"name": "migrate", "image": "registry.example.com/shop/migrate:1.4.2"}
    findings = only("resources-requests-limits", [workload(initContainers=[init])])
    assert (
        "container migrate (initContainers) sets no requests.cpu, requests.memory, "
        "limits.cpu, limits.memory" in findings[0].message
    )


def test_required_resources_are_configurable() -> None:
    requests_only = container(resources={"requests": {"cpu": "100m", "memory": "128Mi"}})
    assert (
        only("resources-requests-limits", [workload(containers=[requests_only])], limits=[]) == []
    )


# --- limit-request-ratio -------------------------------------------------------------------------


def ratio_findings(limit: str, request: str = "100m", **config: Any) -> list[Any]:
    resources = {
        "requests": {"cpu": request, "memory": "128Mi"},
        "limits": {"cpu": limit, "memory": "128Mi"},
    }
    return only(
        "limit-request-ratio", [workload(containers=[container(resources=resources)])], **config
    )


def test_ratio_tiers() -> None:
    assert ratio_findings("200m") == []
    advisory = ratio_findings("300m")
    assert [f.enforcement for f in advisory] == [Enforcement.ADVISORY]
    assert "cpu limit 300m is 3x its request 100m, above 2x" in advisory[0].message
    mandatory = ratio_findings("1")
    assert [f.enforcement for f in mandatory] == [Enforcement.MANDATORY]
    assert "cpu limit 1 is 10x its request 100m, above the 5x ceiling" in mandatory[0].message


def test_ratio_thresholds_are_configurable() -> None:
    assert ratio_findings("300m", advisoryRatio=None) == []
    assert ratio_findings("1", cpuMaxRatio=20, advisoryRatio=None) == []
    assert [f.enforcement for f in ratio_findings("300m", maxRatio=2.5)] == [Enforcement.MANDATORY]


def test_ratio_compares_binary_and_decimal_memory() -> None:
    resources = {"requests": {"cpu": "1", "memory": "1G"}, "limits": {"cpu": "1", "memory": "6Gi"}}
    findings = only("limit-request-ratio", [workload(containers=[container(resources=resources)])])
    assert "memory limit 6Gi is 6.44x its request 1G" in findings[0].message


def test_unparsable_quantity_and_zero_request_fail() -> None:
    assert "'1 core' is not a Kubernetes quantity" in ratio_findings("1 core")[0].message
    assert "is infx its request 0" in ratio_findings("100m", request="0")[0].message


def test_ratio_leaves_missing_limits_to_resources_rule() -> None:
    resources = {"requests": {"cpu": "100m", "memory": "128Mi"}}
    assert (
        only("limit-request-ratio", [workload(containers=[container(resources=resources)])]) == []
    )


# --- unique-ingress-host -------------------------------------------------------------------------


def test_same_host_and_path_to_different_backends_fail() -> None:
    findings = evaluate(
        manifests=[ingress("a", "shop.example.com", "web"), ingress("b", "shop.example.com", "api")]
    )
    assert fired(findings) == ["unique-ingress-host", "unique-ingress-host"]
    assert findings[0].object == "Ingress/shop/a"
    assert "routes to shop/web:80 here but to shop/api:80 in Ingress Ingress/shop/b" in (
        findings[0].message
    )


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (("SHOP.example.com.", "/app"), ("shop.example.com", "/app/")),
        (("*.example.com", "/"), ("*.example.com", "/")),
        ((None, "/"), (None, "/")),
    ],
    ids=["case-dot-trailing-slash", "same-wildcard", "no-host"],
)
def test_equivalent_routes_clash(first: tuple[Any, str], second: tuple[Any, str]) -> None:
    objects = [ingress("a", first[0], "web", first[1]), ingress("b", second[0], "api", second[1])]
    assert len(only("unique-ingress-host", objects)) == 2


@pytest.mark.parametrize(
    "objects",
    [
        [ingress("a", "shop.example.com", "web"), ingress("b", "shop.example.com", "web")],
        [ingress("a", "shop.example.com", "web"), ingress("b", "shop.example.com", "api", "/api")],
        [ingress("a", "*.example.com", "web"), ingress("b", "shop.example.com", "api")],
        [
            ingress("a", "shop.example.com", "web", path_type="Exact"),
            ingress("b", "shop.example.com", "api"),
        ],
        [ingress("a", "shop.example.com", "web"), ingress("a", "shop.example.com", "api")],
    ],
    ids=[
        "same-backend",
        "other-path",
        "wildcard-vs-exact-host",
        "exact-vs-prefix",
        "one-ingress-twice",
    ],
)
def test_distinct_or_identical_routes_pass(objects: list[dict[str, Any]]) -> None:
    assert only("unique-ingress-host", objects) == []


def test_same_service_name_in_other_namespace_is_another_backend() -> None:
    objects = [
        ingress("a", "shop.example.com", "web"),
        ingress("b", "shop.example.com", "web", namespace="staging"),
    ]
    assert len(only("unique-ingress-host", objects)) == 2


# --- no-latest-tag -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "problem"),
    [
        ("nginx", "has no tag, so it pulls :latest"),
        ("nginx:latest", "uses the mutable tag :latest"),
        ("registry.example.com:5000/shop/web", "has no tag, so it pulls :latest"),
        ("registry.example.com:5000/shop/web:1.4.2", None),
        ("ghcr.io/shop/web@sha256:" + "a" * 64, None),
        ("ghcr.io/shop/web:latest@sha256:" + "a" * 64, None),
    ],
)
def test_image_tag_problem(image: str, problem: str | None) -> None:
    assert image_tag_problem(image, ["latest"]) == problem


def test_every_container_kind_is_checked() -> None:
    debug = {"name": "debug", "image": "busybox:latest"}
    findings = only("no-latest-tag", [workload(ephemeralContainers=[debug])])
    assert "container debug (ephemeralContainers) image busybox:latest uses the mutable tag" in (
        findings[0].message
    )


def test_exempt_images_and_extra_tags() -> None:
    pinned = workload(containers=[container(image="registry.example.com/tools/debug:latest")])
    assert only("no-latest-tag", [pinned], exemptImages=["registry.example.com/tools/*"]) == []
    assert fired(only("no-latest-tag", [workload()], disallowedTags=["latest", "1.4.2"])) == [
        "no-latest-tag"
    ]


# --- dns-conntrack-mitigation --------------------------------------------------------------------


def test_missing_dns_option_is_advisory() -> None:
    findings = evaluate(manifests=served_app(dnsConfig=None))
    assert fired(findings) == ["dns-conntrack-mitigation"]
    assert findings[0].enforcement is Enforcement.ADVISORY


NODE_LOCAL_DNS = {
    "apiVersion": "apps/v1",
    "kind": "DaemonSet",
    "metadata": {"name": "node-local-dns", "namespace": "kube-system"},
    "spec": {
        "template": {
            "spec": {
                "hostNetwork": True,
                "dnsPolicy": "Default",
                "containers": [
                    {"name": "node-cache", "image": "registry.k8s.io/dns/k8s-dns-node-cache:1.26.4"}
                ],
            }
        }
    },
}


@pytest.mark.parametrize(
    "objects",
    [
        [workload(dnsConfig=None), NODE_LOCAL_DNS],
        [workload(dnsConfig=None, dnsPolicy="Default")],
        [workload(dnsConfig=None, hostNetwork=True)],
        [workload(dnsConfig={"options": [{"name": "use-vc"}]})],
    ],
    ids=["node-local-dns", "dns-policy-default", "host-network", "use-vc"],
)
def test_dns_mitigations(objects: list[dict[str, Any]]) -> None:
    assert only("dns-conntrack-mitigation", objects) == []


# --- pdb-for-multi-replica -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("objects", "text"),
    [
        ([workload()], "2 replicas and no PodDisruptionBudget selects its pods"),
        ([workload(), pdb(namespace="other")], "no PodDisruptionBudget"),
        ([workload(), pdb(maxUnavailable=0)], "PodDisruptionBudget web allows no voluntary"),
        ([workload(), pdb(maxUnavailable=None, minAvailable="100%")], "allows no voluntary"),
        ([workload(replicas=3), pdb(maxUnavailable=None, minAvailable=3)], "allows no voluntary"),
    ],
    ids=["none", "other-namespace", "max-unavailable-0", "min-available-100%", "min-available-all"],
)
def test_pdb_missing_or_blocking(objects: list[dict[str, Any]], text: str) -> None:
    findings = only("pdb-for-multi-replica", objects)
    assert [f.enforcement for f in findings] == [Enforcement.ADVISORY]
    assert text in findings[0].message


def test_pdb_not_needed_for_one_replica() -> None:
    assert only("pdb-for-multi-replica", [workload(replicas=1)]) == []
    selector_all = pdb(selector={})
    assert only("pdb-for-multi-replica", [workload(), selector_all]) == []
