"""ECR lifecycle policies: the one the platform generates, and an evaluator of ECR's semantics.

ECR has no "keep" action: every rule expires. An image is kept by a rule that selects it and
never reaches its limit (`imageCountMoreThan` `KEEP_COUNT`), because ECR's documented evaluation
("Lifecycle policy evaluation rules" in the ECR user guide) says:

- rules are applied in ascending `rulePriority`; an image is expired by at most one rule;
- an image that matches the tag filter of a rule cannot be expired by a lower-priority rule;
- lower-priority rules still *count* such images ("can still identify them as if they haven't
  been expired"), so `imageCountMoreThan` keeps the newest N of everything it matches;
- `tagPrefixList` / `tagPatternList` with several entries select images that carry a tag for
  *each* entry (AND), which is why every kept prefix and environment gets a rule of its own;
- `imageCountMoreThan` keeps the newest `countNumber` matches; `sinceImagePushed` expires
  matches pushed more than `countNumber` days ago.

`evaluate` implements exactly that for single-manifest images; `validate_policy` rejects what the
documentation says ECR refuses. Rule types beyond expiry (archive storage, `transition`,
`sinceImagePulled`) are outside what is modelled and rejected as unsupported.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import Any

from policy.registry.config import (
    DEPLOYED_PREFIX,
    PULL_REQUEST_PREFIX,
    RELEASE_PATTERN,
    RegistryConfig,
)

KEEP_COUNT = 9999
"""`countNumber` of the keep rules. ECR documents no upper bound; AWS's own CDK example uses
9999. A keep rule would only start expiring past 9999 matching images, and CI keeps one
`deployed-<env>-` tag per environment and app, so the bound is never near."""
MAX_POLICY_CHARS = 30_720
"""ECR service quota "Lifecycle policy length" (not adjustable)."""
MAX_WILDCARDS = 4
"""ECR allows at most four `*` in one `tagPatternList` entry."""

TAG_STATUSES = ("tagged", "untagged", "any")
COUNT_TYPES = ("imageCountMoreThan", "sinceImagePushed")
_RULE_KEYS = {"rulePriority", "description", "selection", "action"}
_SELECTION_KEYS = {
    "tagStatus",
    "tagPrefixList",
    "tagPatternList",
    "countType",
    "countUnit",
    "countNumber",
}
_TAG_LISTS = ("tagPrefixList", "tagPatternList")


class TagClass(StrEnum):
    """What a tag says about its image, and so which rule of the policy decides its fate."""

    DEPLOYED = "deployed"
    NAMED = "named"
    RELEASE = "release"
    PULL_REQUEST = "pull-request"
    OTHER = "other"


@dataclass(frozen=True)
class ClassRule:
    """One rule of the generated policy and the tag class it claims."""

    tag_class: TagClass
    description: str
    selection: dict[str, Any]
    """ECR `selection` block."""
    environment: str | None = None
    """For deployed-image rules: the environment whose tags the rule keeps."""


def class_rules(cfg: RegistryConfig) -> list[ClassRule]:
    """The convention as rules, highest priority first (docs/registry.md explains each)."""
    keep = {"countType": "imageCountMoreThan", "countNumber": KEEP_COUNT}
    days = {"countType": "sinceImagePushed", "countUnit": "days"}
    # Longest name first: with environments `prod` and `prod-eu`, `deployed-prod-eu-7` must be
    # claimed by prod-eu's rule. Both rules keep, so the order changes no verdict.
    envs = sorted(cfg.environments, key=lambda e: (-len(e), e))
    rules = [
        ClassRule(
            TagClass.DEPLOYED,
            f"keep images deployed to {env}",
            {"tagStatus": "tagged", "tagPrefixList": [f"{DEPLOYED_PREFIX}{env}-"], **keep},
            env,
        )
        for env in envs
    ]
    rules += [
        ClassRule(
            TagClass.NAMED,
            f"keep {prefix}* images",
            {"tagStatus": "tagged", "tagPrefixList": [prefix], **keep},
        )
        for prefix in cfg.kept_tag_prefixes
    ]
    rules += [
        ClassRule(
            TagClass.RELEASE,
            f"keep the newest {cfg.releases_kept} releases",
            {
                "tagStatus": "tagged",
                "tagPatternList": [RELEASE_PATTERN],
                "countType": "imageCountMoreThan",
                "countNumber": cfg.releases_kept,
            },
        ),
        ClassRule(
            TagClass.PULL_REQUEST,
            f"expire pull-request images after {cfg.pull_request_days} days",
            {
                "tagStatus": "tagged",
                "tagPrefixList": [PULL_REQUEST_PREFIX],
                **days,
                "countNumber": cfg.pull_request_days,
            },
        ),
        ClassRule(
            TagClass.OTHER,
            f"expire every other image after {cfg.build_image_days} days",
            {"tagStatus": "any", **days, "countNumber": cfg.build_image_days},
        ),
    ]
    return rules


def lifecycle_policy(cfg: RegistryConfig) -> dict[str, Any]:
    """The lifecycle policy document for every repository of the registry."""
    return {
        "rules": [
            {
                "rulePriority": priority,
                "description": rule.description,
                "selection": rule.selection,
                "action": {"type": "expire"},
            }
            for priority, rule in enumerate(class_rules(cfg), start=1)
        ]
    }


def lifecycle_policy_json(cfg: RegistryConfig) -> str:
    """The policy as ECR receives it; raises `PolicyError` where ECR would refuse it."""
    text = json.dumps(lifecycle_policy(cfg), separators=(",", ":"))
    validate_policy(text)
    return text


class PolicyError(ValueError):
    """A lifecycle policy that ECR would refuse; `problems` lists every reason found."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid ECR lifecycle policy:\n" + "\n".join(f"  {p}" for p in problems))


@dataclass(frozen=True)
class Image:
    """An image as the lifecycle evaluator sees it."""

    digest: str
    pushed_at: datetime
    tags: tuple[str, ...] = ()


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _selection_problems(sel: object) -> list[str]:
    if not isinstance(sel, dict):
        return ["selection must be an object"]
    problems = [
        f"selection.{k} is required"
        for k in ("tagStatus", "countType", "countNumber")
        if k not in sel
    ]
    problems += [
        f"selection.{k} is not a supported key" for k in sorted(set(sel) - _SELECTION_KEYS)
    ]
    status, lists = sel.get("tagStatus"), [k for k in _TAG_LISTS if k in sel]
    if "tagStatus" in sel and status not in TAG_STATUSES:
        problems.append(f"selection.tagStatus {status!r} is not one of {list(TAG_STATUSES)}")
    if status == "tagged" and len(lists) != 1:
        problems.append("tagStatus tagged needs exactly one of tagPrefixList or tagPatternList")
    if status in ("untagged", "any") and lists:
        problems.append(f"tagStatus {status} must not have {' or '.join(lists)}")
    for key in lists:
        values = sel[key]
        if (
            not isinstance(values, list)
            or not values
            or not all(isinstance(v, str) and v for v in values)
        ):
            problems.append(f"selection.{key} must be a non-empty list of non-empty strings")
        elif key == "tagPatternList":
            problems += [
                f"tagPatternList entry {v!r} has more than {MAX_WILDCARDS} wildcards"
                for v in values
                if v.count("*") > MAX_WILDCARDS
            ]
    count_type = sel.get("countType")
    if "countType" in sel and count_type not in COUNT_TYPES:
        problems.append(f"selection.countType {count_type!r} is not one of {list(COUNT_TYPES)}")
    if count_type == "sinceImagePushed" and sel.get("countUnit") != "days":
        problems.append("countType sinceImagePushed needs countUnit days")
    if count_type == "imageCountMoreThan" and "countUnit" in sel:
        problems.append("countUnit is only allowed with countType sinceImagePushed")
    if "countNumber" in sel and not (_is_int(sel["countNumber"]) and sel["countNumber"] >= 1):
        problems.append(f"selection.countNumber {sel['countNumber']!r} is not a positive integer")
    return problems


def _rule_problems(rule: object) -> list[str]:
    if not isinstance(rule, dict):
        return ["must be an object"]
    problems = [
        f"{k} is required" for k in ("rulePriority", "selection", "action") if k not in rule
    ]
    problems += [f"{k} is not a supported key" for k in sorted(set(rule) - _RULE_KEYS)]
    if "rulePriority" in rule and not (_is_int(rule["rulePriority"]) and rule["rulePriority"] >= 1):
        problems.append(f"rulePriority {rule['rulePriority']!r} is not a positive integer")
    if "action" in rule and rule["action"] != {"type": "expire"}:
        problems.append(f"action {rule['action']!r} is not {{'type': 'expire'}}")
    if "selection" in rule:
        problems += _selection_problems(rule["selection"])
    return problems


def _policy_problems(rules: list[dict[str, Any]]) -> list[str]:
    """Constraints between rules; every rule is individually valid here."""
    problems = []
    priorities = [r["rulePriority"] for r in rules]
    problems += [
        f"rulePriority {p} is used by more than one rule"
        for p in sorted({p for p in priorities if priorities.count(p) > 1})
    ]
    problems += [
        f"the tagStatus any rule (rulePriority {r['rulePriority']}) must have the highest "
        f"rulePriority ({max(priorities)})"
        for r in rules
        if r["selection"]["tagStatus"] == "any" and r["rulePriority"] != max(priorities)
    ]
    untagged = [r["rulePriority"] for r in rules if r["selection"]["tagStatus"] == "untagged"]
    if len(untagged) > 1:
        problems.append(f"only one rule may select untagged images (rulePriority {untagged})")
    filters: dict[tuple[str, frozenset[str]], int] = {}
    for rule in rules:
        for key in _TAG_LISTS:
            if key in rule["selection"]:
                entries = frozenset(rule["selection"][key])
                seen = filters.setdefault((key, entries), rule["rulePriority"])
                if seen != rule["rulePriority"]:
                    problems.append(
                        f"rulePriority {seen} and {rule['rulePriority']} have the same "
                        f"{key}; each rule needs its own set of tags"
                    )
    return problems


def validate_policy(policy: str | Mapping[str, Any]) -> list[dict[str, Any]]:
    """Check a policy (JSON text or parsed) as ECR would; return its rules in priority order."""
    if isinstance(policy, str):
        text = policy
        try:
            document = json.loads(policy)
        except json.JSONDecodeError as exc:
            raise PolicyError([f"not JSON: {exc}"]) from None
    else:
        document = policy
        text = json.dumps(policy, separators=(",", ":"))
    problems = []
    if len(text) > MAX_POLICY_CHARS:
        problems.append(f"{len(text)} characters; ECR accepts at most {MAX_POLICY_CHARS}")
    rules = document.get("rules") if isinstance(document, Mapping) else None
    if not isinstance(rules, list):
        raise PolicyError([*problems, "rules is required and must be a list"])
    rule_problems = [
        f"rules[{i}]: {p}" for i, rule in enumerate(rules) for p in _rule_problems(rule)
    ]
    # Constraints between rules can only be checked once each rule has the right shape.
    problems += rule_problems or _policy_problems(rules)
    if problems:
        raise PolicyError(problems)
    return sorted(rules, key=lambda r: r["rulePriority"])


@lru_cache(maxsize=256)
def _pattern(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")))


def wildcard_match(pattern: str, tag: str) -> bool:
    """ECR `tagPatternList` matching: `*` is any run of characters, including none."""
    return _pattern(pattern).fullmatch(tag) is not None


def selection_matches(selection: Mapping[str, Any], tags: Sequence[str]) -> bool:
    """Whether a rule's tag filter selects an image carrying `tags`."""
    status = selection["tagStatus"]
    if status == "any":
        return True
    if status == "untagged":
        return not tags
    if not tags:
        return False
    if "tagPrefixList" in selection:
        return all(any(t.startswith(p) for t in tags) for p in selection["tagPrefixList"])
    return all(any(wildcard_match(p, t) for t in tags) for p in selection["tagPatternList"])


def _over_limit(selection: Mapping[str, Any], matched: list[Image], now: datetime) -> list[Image]:
    """The matched images this rule would expire if nothing protected them."""
    limit = selection["countNumber"]
    if selection["countType"] == "imageCountMoreThan":
        return sorted(matched, key=lambda i: i.pushed_at, reverse=True)[limit:]
    return [i for i in matched if now - i.pushed_at > timedelta(days=limit)]


def evaluate(
    policy: str | Mapping[str, Any], images: Iterable[Image], now: datetime
) -> dict[str, int | None]:
    """Digest -> `rulePriority` of the rule that expires the image, or None when it is kept."""
    images = list(images)
    digests = [i.digest for i in images]
    if len(set(digests)) != len(digests):
        raise ValueError("every image needs its own digest")
    verdicts: dict[str, int | None] = dict.fromkeys(digests)
    protected: set[str] = set()
    for rule in validate_policy(policy):
        matched = [i for i in images if selection_matches(rule["selection"], i.tags)]
        for image in _over_limit(rule["selection"], matched, now):
            if image.digest not in protected:
                verdicts[image.digest] = rule["rulePriority"]
        protected.update(i.digest for i in matched)
    return verdicts
