"""Lifecycle policies that ECR refuses are refused here too.

Where moto's ECR emulator (a dev dependency) models the same constraint, the test also checks that
it refuses the policy, as an independent reading of ECR's validation.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from moto.ecr.exceptions import InvalidParameterException
from moto.ecr.policy_validation import EcrLifecyclePolicyValidator

from policy.registry.config import RegistryConfig
from policy.registry.lifecycle import (
    MAX_POLICY_CHARS,
    PolicyError,
    lifecycle_policy,
    lifecycle_policy_json,
    validate_policy,
)

Policy = dict[str, Any]
BASE = RegistryConfig(apps=["web"], environments=["dev", "prod"], kept_tag_prefixes=["base-"])


def _sel(index: int, **changes: Any) -> Callable[[Policy], None]:
    """Set (value) or drop (None) keys of rule `index`'s selection."""

    def mutate(policy: Policy) -> None:
        sel = policy["rules"][index]["selection"]
        for key, value in changes.items():
            if value is None:
                sel.pop(key, None)
            else:
                sel[key] = value

    return mutate


def _rule(index: int, **changes: Any) -> Callable[[Policy], None]:
    def mutate(policy: Policy) -> None:
        rule = policy["rules"][index]
        for key, value in changes.items():
            if value is None:
                del rule[key]
            else:
                rule[key] = value

    return mutate


def _append_copy_of(index: int, priority: int) -> Callable[[Policy], None]:
    def mutate(policy: Policy) -> None:
        policy["rules"].insert(-1, {**policy["rules"][index], "rulePriority": priority})

    return mutate


def _untagged_twice(policy: Policy) -> None:
    for priority in (90, 91):
        policy["rules"].insert(
            -1,
            {
                "rulePriority": priority,
                "action": {"type": "expire"},
                "selection": {
                    "tagStatus": "untagged",
                    "countType": "imageCountMoreThan",
                    "countNumber": 1,
                },
            },
        )
    policy["rules"][-1]["rulePriority"] = 99


def _too_long(policy: Policy) -> None:
    policy["rules"][0]["description"] = "x" * MAX_POLICY_CHARS


# BASE's rules: 0 deployed-prod, 1 deployed-dev, 2 base-, 3 releases, 4 pull requests, 5 any.
INVALID: dict[str, tuple[Callable[[Policy], None], str, bool]] = {
    # id: (mutation, expected message fragment, moto refuses it too)
    "missing-rule-priority": (_rule(0, rulePriority=None), "rulePriority is required", True),
    "missing-action": (_rule(0, action=None), "action is required", True),
    "unknown-rule-key": (_rule(0, priority=1), "priority is not a supported key", True),
    "transition-action": (
        _rule(0, action={"type": "transition"}),
        "is not {'type': 'expire'}",
        True,
    ),
    "bad-tag-status": (_sel(0, tagStatus="TAGGED"), "tagStatus 'TAGGED'", True),
    "bad-count-type": (_sel(4, countType="sinceImagePulled"), "countType 'sinceImagePulled'", True),
    "bad-count-unit": (_sel(4, countUnit="hours"), "needs countUnit days", True),
    "zero-count": (_sel(3, countNumber=0), "countNumber 0 is not a positive integer", True),
    "missing-count": (_sel(3, countNumber=None), "selection.countNumber is required", True),
    "duplicate-priority": (
        _rule(1, rulePriority=1),
        "rulePriority 1 is used by more than one",
        False,
    ),
    "any-not-last": (_rule(5, rulePriority=2), "must have the highest rulePriority", False),
    "tagged-without-filter": (_sel(0, tagPrefixList=None), "exactly one of tagPrefixList", False),
    "tagged-with-both-filters": (
        _sel(3, tagPrefixList=["v"]),
        "exactly one of tagPrefixList",
        False,
    ),
    "any-with-filter": (_sel(5, tagPrefixList=["x"]), "tagStatus any must not have", False),
    "empty-filter": (_sel(0, tagPrefixList=[]), "must be a non-empty list", False),
    "five-wildcards": (_sel(3, tagPatternList=["v*.*.*.*.*"]), "more than 4 wildcards", False),
    "count-unit-with-count": (
        _sel(3, countUnit="days"),
        "only allowed with countType sinceImage",
        False,
    ),
    "age-without-unit": (_sel(4, countUnit=None), "needs countUnit days", False),
    "same-filter-twice": (_append_copy_of(2, 50), "have the same tagPrefixList", False),
    "two-untagged-rules": (_untagged_twice, "only one rule may select untagged", False),
    "too-long": (_too_long, f"ECR accepts at most {MAX_POLICY_CHARS}", False),
    "boolean-priority": (_rule(0, rulePriority=True), "rulePriority True is not a positive", False),
}


def _moto_refuses(policy: Policy) -> bool:
    try:
        EcrLifecyclePolicyValidator(json.dumps(policy)).validate()
    except InvalidParameterException:
        return True
    return False


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_policy_is_refused(case: str) -> None:
    mutate, fragment, moto_models_it = INVALID[case]
    policy = lifecycle_policy(BASE)
    mutate(policy)
    with pytest.raises(PolicyError) as err:
        validate_policy(policy)
    assert any(fragment in p for p in err.value.problems), err.value.problems
    if moto_models_it:
        assert _moto_refuses(policy)


@pytest.mark.parametrize(
    "cfg",
    [
        BASE,
        RegistryConfig(apps=["web"], environments=["prod"]),
        RegistryConfig(
            apps=["web"],
            environments=[f"env{i}" for i in range(20)],
            kept_tag_prefixes=[f"keep{i}-" for i in range(20)],
            releases_kept=1000,
        ),
    ],
    ids=["base", "minimal", "many-rules"],
)
def test_generated_policies_pass_both_validators(cfg: RegistryConfig) -> None:
    text = lifecycle_policy_json(cfg)
    # One rule per environment and kept prefix, then releases, pull requests and the rest.
    assert len(validate_policy(text)) == len(cfg.environments) + len(cfg.kept_tag_prefixes) + 3
    assert not _moto_refuses(json.loads(text))


def test_policy_too_long_for_ecr_is_refused_before_deployment() -> None:
    # The config refuses that many prefixes; the policy validator must refuse the text anyway.
    cfg = RegistryConfig.model_construct(
        apps=["web"], environments=["dev"], kept_tag_prefixes=[f"keep-{i:04}-" for i in range(300)]
    )
    with pytest.raises(PolicyError, match="characters"):
        lifecycle_policy_json(cfg)


def test_malformed_text_is_refused() -> None:
    with pytest.raises(PolicyError, match="not JSON"):
        validate_policy('{"rules": [')
    with pytest.raises(PolicyError, match="rules is required"):
        validate_policy({"rule": []})
