"""The Pulumi policies built from the rules, called directly as the SDK calls them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, unknown_checking_proxy

from policy import PolicySettings
from policy.model import UNKNOWN
from policy.pack import build_policies, initial_config, settings_from_environment, to_plain
from policy.rules import RULES
from tests.policy.policy_objects import container, workload

OPTIONS = PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [], None)
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"


def policies(settings: PolicySettings | None = None) -> dict[str, Any]:
    return {policy.name: policy for policy in build_policies(settings or PolicySettings())}


def run_resource(
    policy: Any, token: str, props: dict[str, Any], config: dict[str, Any] | None = None
) -> list[tuple[str, str | None]]:
    reports: list[tuple[str, str | None]] = []
    args = ResourceValidationArgs(
        token,
        unknown_checking_proxy(props),
        f"urn:pulumi:dev::p::{token}::r",
        "r",
        OPTIONS,
        None,
        config,
    )
    policy.validate(args, lambda message, urn=None: reports.append((message, urn)))
    return reports


def stack_resource(token: str, name: str, props: dict[str, Any]) -> PolicyResource:
    return PolicyResource(
        token,
        unknown_checking_proxy(props),
        f"urn:pulumi:dev::p::{token}::{name}",
        name,
        OPTIONS,
        None,
        None,
        [],
        {},
    )


def test_one_policy_per_rule_plus_the_advisory_tier() -> None:
    built = policies()
    assert list(built) == [
        name for rule in RULES for name in [rule.id] + [f"{rule.id}-advisory"] * rule.advisory_tier
    ]
    for rule in RULES:
        kind = ResourceValidationPolicy if rule.scope == "object" else StackValidationPolicy
        assert isinstance(built[rule.id], kind)
        assert built[rule.id].enforcement_level.value == rule.enforcement.value
        assert built[rule.id].remediation_steps == rule.remediation
    assert built["limit-request-ratio-advisory"].enforcement_level is EnforcementLevel.ADVISORY
    schema = built["limit-request-ratio"].config_schema.properties
    assert schema["maxRatio"]["default"] == 5 and "cpuMaxRatio" in schema
    assert built["aws-imdsv2-required"].config_schema is None


def test_settings_set_levels_and_initial_config() -> None:
    settings = PolicySettings.from_policy_config(
        {"limit-request-ratio": {"enforcementLevel": "disabled", "maxRatio": 3}}
    )
    built = policies(settings)
    assert built["limit-request-ratio"].enforcement_level is EnforcementLevel.DISABLED
    assert built["limit-request-ratio-advisory"].enforcement_level is EnforcementLevel.DISABLED
    assert initial_config(settings) == {
        "limit-request-ratio": {"enforcementLevel": EnforcementLevel.DISABLED, "maxRatio": 3},
        "limit-request-ratio-advisory": {"maxRatio": 3},
    }


def test_to_plain_marks_unknown_values() -> None:
    proxy = unknown_checking_proxy(
        {"a": UNKNOWN_STRING_VALUE, "b": [1, UNKNOWN_STRING_VALUE], "c": {"d": "x"}}
    )
    assert to_plain(proxy) == {"a": UNKNOWN, "b": [1, UNKNOWN], "c": {"d": "x"}}


def test_resource_policy_reports_violation() -> None:
    reports = run_resource(
        policies()["aws-imdsv2-required"],
        LAUNCH_TEMPLATE,
        {"metadataOptions": {"httpTokens": "optional"}},
    )
    assert len(reports) == 1
    assert reports[0][0].startswith('metadataOptions.httpTokens is "optional"')


def test_unknown_input_during_preview_reports_nothing() -> None:
    reports = run_resource(
        policies()["aws-imdsv2-required"],
        LAUNCH_TEMPLATE,
        {"metadataOptions": {"httpTokens": UNKNOWN_STRING_VALUE}},
    )
    assert reports == []


def test_policy_config_overrides_thresholds() -> None:
    deployment = workload(
        containers=[
            container(
                resources={
                    "requests": {"cpu": "100m", "memory": "128Mi"},
                    "limits": {"cpu": "1", "memory": "128Mi"},
                }
            )
        ]
    )
    ratio = policies()["limit-request-ratio"]
    token = "kubernetes:apps/v1:Deployment"
    assert len(run_resource(ratio, token, deployment)) == 1
    assert run_resource(ratio, token, deployment, config={"maxRatio": 20.0}) == []
    advisory = policies()["limit-request-ratio-advisory"]
    assert run_resource(advisory, token, deployment) == []
    assert len(run_resource(advisory, token, deployment, config={"maxRatio": 20.0})) == 1


def test_stack_policy_reports_bucket_urn_and_follows_dependencies() -> None:
    bucket = stack_resource("aws:s3/bucket:Bucket", "snapshots", {"bucket": UNKNOWN_STRING_VALUE})
    block = stack_resource(
        "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
        "pab",
        {
            "bucket": UNKNOWN_STRING_VALUE,
            "blockPublicAcls": True,
            "blockPublicPolicy": True,
            "ignorePublicAcls": True,
            "restrictPublicBuckets": True,
        },
    )
    policy = policies()["aws-s3-public-access-blocked"]
    reports: list[tuple[str, str | None]] = []

    def report(message: str, urn: str | None = None) -> None:
        reports.append((message, urn))

    policy.validate(StackValidationArgs([bucket, block]), report)
    assert [urn for _, urn in reports] == [bucket.urn]
    block.property_dependencies["bucket"] = [bucket]
    reports.clear()
    policy.validate(StackValidationArgs([bucket, block]), report)
    assert reports == []


def test_settings_from_the_engine_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "PULUMI_CONFIG",
        json.dumps(
            {
                "platform:production": "true",
                "platform:target": "existing",
                "platform:policy": json.dumps({"aws-imdsv2-required": "advisory"}),
            }
        ),
    )
    # A pack process holds no program config in memory; a synth earlier in this worker does.
    from pulumi.runtime import config as runtime_config

    token = runtime_config.CONFIG.set({})
    try:
        settings = settings_from_environment()
    finally:
        runtime_config.CONFIG.reset(token)
    assert (settings.production, settings.aws) == (True, False)
    assert settings.to_policy_config() == {"aws-imdsv2-required": {"enforcementLevel": "advisory"}}
