"""The generated lifecycle policy, run through the ECR evaluator against image-list fixtures.

Each fixture lists images (tags, age) with the verdict the tagging convention promises; the
mutation cases show that a reordered rule, a mistyped filter or a wrong countType in the policy
changes a verdict, so the fixtures would catch it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from policy.registry.config import RegistryConfig
from policy.registry.lifecycle import (
    Image,
    PolicyError,
    TagClass,
    class_rules,
    evaluate,
    lifecycle_policy,
    lifecycle_policy_json,
)

FIXTURES = Path(__file__).parent / "fixtures"
NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)
Policy = dict[str, Any]


def _load(name: str) -> tuple[RegistryConfig, datetime, list[Image], dict[str, str]]:
    data = yaml.safe_load((FIXTURES / f"{name}.yaml").read_text())
    now = data["now"]
    images = [
        Image(i["digest"], now - timedelta(days=i["pushedDaysAgo"]), tuple(i["tags"]))
        for i in data["images"]
    ]
    return (
        RegistryConfig.model_validate(data["config"]),
        now,
        images,
        {i["digest"]: i["expect"] for i in data["images"]},
    )


def _verdicts(policy: str | Policy, now: datetime, images: list[Image]) -> dict[str, str]:
    verdicts = evaluate(policy, images, now)
    return {d: "keep" if rule is None else "expire" for d, rule in verdicts.items()}


@pytest.mark.parametrize("name", sorted(p.stem for p in FIXTURES.glob("*.yaml")))
def test_generated_policy_gives_each_image_its_verdict(name: str) -> None:
    cfg, now, images, expected = _load(name)
    assert _verdicts(lifecycle_policy_json(cfg), now, images) == expected


def test_rules_follow_the_convention_order() -> None:
    cfg = RegistryConfig(apps=["web"], environments=["dev", "prod"], kept_tag_prefixes=["base-"])
    assert [r.tag_class for r in class_rules(cfg)] == [
        TagClass.DEPLOYED,
        TagClass.DEPLOYED,
        TagClass.NAMED,
        TagClass.RELEASE,
        TagClass.PULL_REQUEST,
        TagClass.OTHER,
    ]
    priorities = [r["rulePriority"] for r in lifecycle_policy(cfg)["rules"]]
    assert priorities == list(range(1, len(priorities) + 1))


# --- ECR's documented examples ("Examples of lifecycle policies", Amazon ECR user guide) -------


def _rule(priority: int, prefixes: list[str], **count: Any) -> Policy:
    return {
        "rulePriority": priority,
        "selection": {"tagStatus": "tagged", "tagPrefixList": prefixes, **count},
        "action": {"type": "expire"},
    }


def _images(*spec: tuple[str, list[str], int]) -> list[Image]:
    return [Image(d, NOW - timedelta(days=age), tuple(tags)) for d, tags, age in spec]


ONE = {"countType": "imageCountMoreThan", "countNumber": 1}
MULTI_RULE_REPO = _images(
    ("A", ["beta-1", "prod-1"], 10), ("B", ["beta-2", "prod-2"], 9), ("C", ["beta-3"], 8)
)
AWS_EXAMPLES = {
    # Rule 2 would expire A and B, but B matches rule 1's filter, so only A goes.
    "multiple-rules-a": (
        [_rule(1, ["prod"], **ONE), _rule(2, ["beta"], **ONE)],
        MULTI_RULE_REPO,
        {"A"},
    ),
    "multiple-rules-b": (
        [_rule(1, ["beta"], **ONE), _rule(2, ["prod"], **ONE)],
        MULTI_RULE_REPO,
        {"A", "B"},
    ),
    # Several prefixes in one rule select only images that carry all of them.
    "multiple-tags-a": (
        [
            _rule(
                1, ["alpha", "beta"], countType="sinceImagePushed", countUnit="days", countNumber=5
            )
        ],
        _images(
            ("A", ["alpha-1"], 12),
            ("B", ["beta-1"], 11),
            ("C", ["alpha-2", "beta-2"], 10),
            ("D", ["alpha-3"], 4),
            ("E", ["beta-3"], 3),
            ("F", ["alpha-4", "beta-4"], 2),
        ),
        {"C"},
    ),
    "multiple-tags-b": (
        [_rule(1, ["alpha", "beta"], **ONE)],
        _images(
            ("A", ["alpha-1", "beta-1", "gamma-1"], 10),
            ("B", ["alpha-2", "beta-2"], 9),
            ("C", ["alpha-3", "beta-3", "gamma-2"], 8),
        ),
        {"A", "B"},
    ),
}


@pytest.mark.parametrize("example", sorted(AWS_EXAMPLES))
def test_evaluator_reproduces_the_documented_examples(example: str) -> None:
    rules, images, expired = AWS_EXAMPLES[example]
    verdicts = evaluate({"rules": rules}, images, NOW)
    assert {d for d, rule in verdicts.items() if rule is not None} == expired


def test_every_image_is_expired_by_at_most_the_first_rule_over_its_limit() -> None:
    rules = [
        _rule(1, ["a"], countType="sinceImagePushed", countUnit="days", countNumber=1),
        _rule(2, ["b"], countType="sinceImagePushed", countUnit="days", countNumber=1),
    ]
    assert evaluate({"rules": rules}, _images(("X", ["a-1", "b-1"], 5)), NOW) == {"X": 1}


def test_images_need_distinct_digests() -> None:
    cfg = RegistryConfig(apps=["web"], environments=["dev"])
    with pytest.raises(ValueError, match="own digest"):
        evaluate(lifecycle_policy(cfg), _images(("X", [], 1), ("X", ["v1.0.0"], 2)), NOW)


# --- mutations: each breaks one rule and must change a fixture verdict ------------------------


def _selecting(policy: Policy, entry: str) -> Policy:
    """The rule whose tag filter lists `entry` (`any` for the catch-all rule)."""
    for rule in policy["rules"]:
        sel = rule["selection"]
        filters = sel.get("tagPrefixList", []) + sel.get("tagPatternList", [])
        if entry in filters or (entry == "any" and sel["tagStatus"] == "any"):
            return rule
    raise AssertionError(f"no rule selects {entry!r}")


def _swap(a: str, b: str) -> Callable[[Policy], None]:
    def mutate(policy: Policy) -> None:
        ra, rb = _selecting(policy, a), _selecting(policy, b)
        ra["rulePriority"], rb["rulePriority"] = rb["rulePriority"], ra["rulePriority"]

    return mutate


def _retype(entry: str, typo: str) -> Callable[[Policy], None]:
    def mutate(policy: Policy) -> None:
        sel = _selecting(policy, entry)["selection"]
        key = "tagPrefixList" if "tagPrefixList" in sel else "tagPatternList"
        sel[key] = [typo if v == entry else v for v in sel[key]]

    return mutate


def _count_type(entry: str, count_type: str) -> Callable[[Policy], None]:
    def mutate(policy: Policy) -> None:
        sel = _selecting(policy, entry)["selection"]
        sel["countType"] = count_type
        if count_type == "sinceImagePushed":
            sel["countUnit"] = "days"
        else:
            del sel["countUnit"]

    return mutate


REL, PR = "releases-and-deployments", "pull-requests-and-builds"
MUTATIONS: dict[str, tuple[str, Callable[[Policy], None], str]] = {
    # id: (fixture, mutation, image whose verdict must flip)
    "release-rule-above-deployed-prod": (REL, _swap("deployed-prod-", "v*.*.*"), "r1"),
    "pull-request-rule-above-deployed-dev": (PR, _swap("deployed-dev-", "pr-"), "p4"),
    "typo-in-deployed-prefix": (REL, _retype("deployed-dev-", "deploy-dev-"), "d1"),
    "typo-in-pull-request-prefix": (PR, _retype("pr-", "pr_"), "p2"),
    "typo-in-named-prefix": (PR, _retype("base-", "base_"), "n1"),
    "typo-in-release-pattern": (REL, _retype("v*.*.*", "V*.*.*"), "r4"),
    "releases-by-age-not-count": (REL, _count_type("v*.*.*", "sinceImagePushed"), "r4"),
    "pull-requests-by-count-not-age": (PR, _count_type("pr-", "imageCountMoreThan"), "p3"),
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_a_broken_rule_changes_a_verdict(mutation: str) -> None:
    fixture, mutate, flipped = MUTATIONS[mutation]
    cfg, now, images, expected = _load(fixture)
    policy = lifecycle_policy(cfg)
    mutate(policy)
    verdicts = _verdicts(policy, now, images)
    assert verdicts[flipped] != expected[flipped], f"{mutation} left {flipped} {expected[flipped]}"


def test_moving_the_catch_all_rule_is_refused() -> None:
    cfg, now, images, _ = _load(PR)
    policy = lifecycle_policy(cfg)
    _swap("any", "pr-")(policy)
    with pytest.raises(PolicyError, match="must have the highest rulePriority"):
        evaluate(policy, images, now)
