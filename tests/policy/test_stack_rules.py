"""The rules that read stack facts (budget, registry) and the synth's policy.json of every stack."""

from __future__ import annotations

import json

import pytest

from policy.engine import evaluate
from policy.settings import PolicySettings
from synth.core import cost_of, load_stack_config, policy_findings, policy_resources
from tests.conftest import STACKS


def _stack_values(stack: str) -> dict:
    return load_stack_config(stack)[0]


@pytest.mark.parametrize("stack", STACKS)
def test_shipped_stacks_have_no_findings(synth_results, synth_dirs, stack):
    assert [f.to_dict() for f in policy_findings(synth_results[stack])] == []
    assert json.loads((synth_dirs[stack] / "policy.json").read_text()) == []


def test_budget_below_the_estimate_fails(synth_results):
    values = {**_stack_values("dev"), "platform:monthlyBudgetUsd": 20}
    findings = evaluate(
        policy_resources(synth_results["dev"]), (), PolicySettings.from_stack_config(values)
    )
    assert [(f.rule, f.enforcement) for f in findings] == [("cost-within-budget", "mandatory")]
    total = cost_of(synth_results["dev"])["monthlyTotal"]
    assert f"${total:,.2f}/month, above its budget of $20.00" in findings[0].message


def test_budget_in_a_region_without_prices_is_reported(synth_results):
    values = {**_stack_values("dev"), "aws:region": "eu-north-1"}
    findings = evaluate(
        policy_resources(synth_results["dev"]), (), PolicySettings.from_stack_config(values)
    )
    assert [f.rule for f in findings] == ["cost-within-budget"]
    assert "no prices for region eu-north-1" in findings[0].message


def test_budget_rule_can_be_tuned_per_stack(synth_results):
    values = {**_stack_values("dev"), "platform:policy": {"cost-within-budget": {"monthlyUsd": 20}}}
    findings = evaluate(
        policy_resources(synth_results["dev"]), (), PolicySettings.from_stack_config(values)
    )
    assert "above its budget of $20.00" in findings[0].message


def _deployment(image: str) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "web"},
        "spec": {"template": {"spec": {"containers": [{"name": "web", "image": image}]}}},
    }


ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com/hello"


@pytest.mark.parametrize(
    "image,kept",
    [
        (f"{ECR}@sha256:" + "a" * 64, True),
        (f"{ECR}:deployed-prod-20261125-1", True),
        (f"{ECR}:v1.4.2", True),
        (f"{ECR}:deployed-dev-20261125-1", False),
        (f"{ECR}:pr-42-abc123", False),
        (f"{ECR}:main-abc123", False),
        ("ghcr.io/example/hello:main-abc123", True),
        ("123456789012.dkr.ecr.us-east-1.amazonaws.com/other:main-abc123", True),
    ],
)
def test_prod_images_must_be_kept(image, kept):
    settings = PolicySettings.from_stack_config(_stack_values("prod"))
    findings = [
        f for f in evaluate((), [_deployment(image)], settings) if f.rule == "prod-images-kept"
    ]
    assert (findings == []) is kept, [f.message for f in findings]


def test_kept_images_rule_ignores_non_production_stacks():
    settings = PolicySettings.from_stack_config(_stack_values("dev"))
    findings = evaluate((), [_deployment(f"{ECR}:pr-1-x")], settings)
    assert "prod-images-kept" not in {f.rule for f in findings}
