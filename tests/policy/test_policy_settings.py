"""Per-stack policy settings in the Pulumi policy-config shape."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from policy import PolicyConfigError, PolicySettings
from policy.rules import RULES, Enforcement
from policy.rules.kubernetes import RatioParams
from policy.settings import RuleOverride


def test_defaults_are_the_rules_own() -> None:
    settings = PolicySettings()
    assert {rule.id: settings.enforcement(rule.id) for rule in RULES} == {
        rule.id: rule.enforcement for rule in RULES
    }
    assert settings.params("limit-request-ratio") == RatioParams()
    assert (settings.production, settings.aws) == (False, True)


def test_levels_thresholds_and_all() -> None:
    settings = PolicySettings.from_policy_config(
        {
            "all": "advisory",
            "replicas-min-2": "mandatory",
            "limit-request-ratio": {"enforcementLevel": "disabled", "maxRatio": 3},
            "spread-across-nodes": {"topologyKeys": ["kubernetes.io/hostname"]},
        }
    )
    assert settings.enforcement("replicas-min-2") is Enforcement.MANDATORY
    assert settings.enforcement("limit-request-ratio") is Enforcement.DISABLED
    assert settings.enforcement("aws-imdsv2-required") is Enforcement.ADVISORY
    assert settings.params("limit-request-ratio").max_ratio == 3
    assert settings.params("spread-across-nodes").topology_keys == ["kubernetes.io/hostname"]


def test_extra_params_win_over_stack_values() -> None:
    settings = PolicySettings.from_policy_config({"limit-request-ratio": {"maxRatio": 3}})
    params = settings.params("limit-request-ratio", {"maxRatio": 8.0, "advisoryRatio": None})
    assert (params.max_ratio, params.advisory_ratio) == (8, None)


def test_every_problem_is_reported_with_its_key() -> None:
    with pytest.raises(PolicyConfigError) as raised:
        PolicySettings.from_policy_config(
            {
                "replicas-min-3": "mandatory",
                "no-latest-tag": "blocking",
                "limit-request-ratio": {"maxRatio": "lots", "maxratio": 2},
                "all": {"enforcementLevel": "advisory", "maxRatio": 2},
                "aws-ebs-encrypted": 5,
            },
            where="platform:policy",
        )
    issues = raised.value.issues
    assert issues[0].startswith("platform:policy.replicas-min-3: unknown rule; known rules: ")
    assert issues[1] == (
        "platform:policy.no-latest-tag: enforcement level 'blocking' is not one "
        "of mandatory, advisory, disabled"
    )
    assert issues[2].startswith(
        "platform:policy.limit-request-ratio.maxRatio: Input should be a valid number"
    )
    assert (
        issues[3] == "platform:policy.limit-request-ratio.maxratio: Extra inputs are not permitted"
    )
    assert issues[4] == ("platform:policy.all: only takes a level; thresholds belong to one rule")
    assert issues[5].startswith("platform:policy.aws-ebs-encrypted: expected a level")
    assert len(issues) == 6


def test_not_a_mapping() -> None:
    with pytest.raises(PolicyConfigError, match="expected a mapping of rule id"):
        PolicySettings.from_policy_config(["replicas-min-2"])  # type: ignore[arg-type]


def test_direct_construction_is_validated() -> None:
    with pytest.raises(ValidationError, match="nope: unknown rule"):
        PolicySettings(overrides={"nope": RuleOverride()})
    with pytest.raises(ValidationError, match="minReplicas"):
        PolicySettings(overrides={"replicas-min-2": RuleOverride(params={"minReplicas": 0})})
    with pytest.raises(ValidationError, match="Extra inputs"):
        PolicySettings(prod=True)  # type: ignore[call-arg]


def test_stack_file_values() -> None:
    settings = PolicySettings.from_stack_config(
        {
            "aws:region": "eu-west-1",
            "platform:production": True,
            "platform:policy": {"replicas-min-2": {"minReplicas": 3}},
        }
    )
    assert (settings.production, settings.aws) == (True, True)
    assert settings.params("replicas-min-2").min_replicas == 3
    local = PolicySettings.from_stack_config({"platform:target": "existing"})
    assert (local.production, local.aws) == (False, False)


def test_engine_config_values_are_json_text() -> None:
    settings = PolicySettings.from_stack_config(
        {
            "platform:production": "true",
            "platform:target": "aws",
            "platform:policy": json.dumps({"no-latest-tag": "advisory"}),
        }
    )
    assert settings.production is True
    assert settings.enforcement("no-latest-tag") is Enforcement.ADVISORY


def test_production_must_be_boolean() -> None:
    with pytest.raises(PolicyConfigError, match="platform:production: expected true or false"):
        PolicySettings.from_stack_config({"platform:production": "yes"})


def test_policy_config_round_trip() -> None:
    config = {
        "limit-request-ratio": {"enforcementLevel": "advisory", "maxRatio": 3},
        "no-latest-tag": {"exemptImages": ["busybox:*"]},
        "dns-conntrack-mitigation": {"enforcementLevel": "disabled"},
    }
    settings = PolicySettings.from_policy_config(config)
    assert settings.to_policy_config() == config
    assert PolicySettings.from_policy_config(settings.to_policy_config()) == settings
