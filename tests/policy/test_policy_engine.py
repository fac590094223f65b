"""The engine: resources and manifests as one set, findings, exemptions, rule selection."""

from __future__ import annotations

import pytest

from policy import Enforcement, Manifest, PolicySettings, evaluate
from policy.engine import IGNORE_KEY, item_from_resource, items_from_manifest
from policy.model import UNKNOWN, as_int, dig
from tests.policy.policy_objects import fired, resource, served_app, service, workload

LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"


@pytest.mark.parametrize(
    ("token", "kind", "api_version"),
    [
        ("kubernetes:apps/v1:Deployment", "Deployment", "apps/v1"),
        ("kubernetes:core/v1:Service", "Service", "v1"),
        ("kubernetes:cert-manager.io/v1:ClusterIssuer", "ClusterIssuer", "cert-manager.io/v1"),
        ("kubernetes:helm.sh/v3:Release", None, None),
        ("kubernetes:yaml/v2:ConfigGroup", None, None),
        ("kubernetes:apps/v1:DeploymentPatch", None, None),
        ("kubernetes:core/v1:ConfigMapList", None, None),
        ("aws:ec2/instance:Instance", None, None),
    ],
)
def test_kubernetes_resources_become_objects(
    token: str, kind: str | None, api_version: str | None
) -> None:
    item = item_from_resource({"type": token, "urn": "urn:x", "name": "x", "props": {}})
    assert item.kind == kind
    assert item.props.get("apiVersion") == api_version


def test_pulumi_managed_deployment_is_judged_like_a_manifest() -> None:
    obj = workload(replicas=1)
    deployment = resource(
        "kubernetes:apps/v1:Deployment",
        "web",
        **{k: v for k, v in obj.items() if k not in ("apiVersion", "kind")},
    )
    findings = evaluate([deployment], rules=["replicas-min-2"])
    assert [(f.rule, f.urn, f.object) for f in findings] == [
        ("replicas-min-2", deployment["urn"], None)
    ]


def test_resources_and_manifests_form_one_set() -> None:
    # The Service comes from a YAML file, the Deployment from Pulumi: the readiness rule joins them.
    obj = workload(containers=[{"name": "app", "image": "web:1.0"}])
    deployment = resource(
        "kubernetes:apps/v1:Deployment",
        "web",
        **{k: v for k, v in obj.items() if k not in ("apiVersion", "kind")},
    )
    findings = evaluate([deployment], [service()], rules=["readiness-probe-if-serviced"])
    assert fired(findings) == ["readiness-probe-if-serviced"]


def test_finding_dict_is_the_policy_json_entry() -> None:
    (manifest_finding,) = evaluate(
        manifests=[Manifest(workload(replicas=1), "apps/web.yaml")], rules=["replicas-min-2"]
    )
    assert manifest_finding.source == "apps/web.yaml"
    assert manifest_finding.to_dict() == {
        "rule": "replicas-min-2",
        "enforcement": "mandatory",
        "object": "Deployment/shop/web",
        "message": manifest_finding.message,
    }
    (resource_finding,) = evaluate(
        [resource(LAUNCH_TEMPLATE, "agents")], rules=["aws-imdsv2-required"]
    )
    assert list(resource_finding.to_dict()) == ["rule", "enforcement", "urn", "message"]


def test_list_objects_are_expanded_and_non_objects_skipped() -> None:
    listed = {"apiVersion": "v1", "kind": "List", "items": [workload(), service()]}
    assert [item.kind for item in items_from_manifest(listed)] == ["Deployment", "Service"]
    assert items_from_manifest({"replicaCount": 2}) == []
    cluster_scoped = items_from_manifest(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}
    )
    assert cluster_scoped[0].ref == "Namespace/shop"


def test_ignore_annotation_on_object_pod_template_and_aws_tags() -> None:
    on_object = workload(replicas=1)
    on_object["metadata"]["annotations"] = {IGNORE_KEY: "spread-across-nodes, replicas-min-2"}
    on_template = workload(replicas=1)
    on_template["spec"]["template"]["metadata"]["annotations"] = {IGNORE_KEY: "replicas-min-2"}
    tagged = resource(LAUNCH_TEMPLATE, "agents", tags={IGNORE_KEY: "aws-imdsv2-required"})
    assert (
        evaluate(
            [tagged], [on_object, on_template], rules=["replicas-min-2", "aws-imdsv2-required"]
        )
        == []
    )
    other_rule = workload(replicas=1)
    other_rule["metadata"]["annotations"] = {IGNORE_KEY: "no-latest-tag"}
    assert fired(evaluate(manifests=[other_rule], rules=["replicas-min-2"])) == ["replicas-min-2"]


def test_enforcement_overrides_and_disabled_rules() -> None:
    objects = served_app(replicas=1)
    settings = PolicySettings.from_policy_config({"replicas-min-2": "advisory"})
    assert [f.enforcement for f in evaluate(manifests=objects, settings=settings)] == [
        Enforcement.ADVISORY
    ]
    disabled = PolicySettings.from_policy_config({"replicas-min-2": "disabled"})
    assert evaluate(manifests=objects, settings=disabled) == []


def test_findings_follow_rule_order() -> None:
    objects = served_app(replicas=1, containers=[{"name": "app", "image": "web"}])
    rules = fired(evaluate(manifests=objects))
    assert rules == sorted(
        rules,
        key=[
            "replicas-min-2",
            "readiness-probe-if-serviced",
            "graceful-shutdown",
            "resources-requests-limits",
            "no-latest-tag",
        ].index,
    )


def test_unknown_rule_selection_is_an_error() -> None:
    with pytest.raises(KeyError, match="unknown rule 'replicas'"):
        evaluate(rules=["replicas"])


def test_value_helpers() -> None:
    assert dig({"a": [{"b": 1}]}, "a", 0, "b") == 1
    assert dig({"a": [{"b": 1}]}, "a", 3, "b") is None
    assert dig({"a": UNKNOWN}, "a", "b") is UNKNOWN
    assert [as_int(v) for v in (22, 22.0, "22", 22.5, "x", True, UNKNOWN)] == [
        22,
        22,
        22,
        None,
        None,
        None,
        None,
    ]
