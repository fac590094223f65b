"""The rule registry: every rule once, in report order."""

from __future__ import annotations

from policy.rules import aws, kubernetes, platform, pod_security, stack
from policy.rules.base import Enforcement, Params, Rule, Scope, StackInfo, Violation

RULES: tuple[Rule, ...] = (
    kubernetes.RULES + pod_security.RULES + aws.RULES + platform.RULES + stack.RULES
)
RULES_BY_ID: dict[str, Rule] = {rule.id: rule for rule in RULES}


def get_rule(rule_id: str) -> Rule:
    """The rule with this id; KeyError names the known ids."""
    try:
        return RULES_BY_ID[rule_id]
    except KeyError:
        raise KeyError(f"unknown rule {rule_id!r}; known rules: {', '.join(RULES_BY_ID)}") from None


__all__ = [
    "RULES",
    "RULES_BY_ID",
    "Enforcement",
    "Params",
    "Rule",
    "Scope",
    "StackInfo",
    "Violation",
    "get_rule",
]
