"""The rules as Pulumi policies: `pulumi preview --policy-pack policy`.

Object rules become ResourceValidationPolicies (the engine calls them once per resource, with its
inputs); rules that need several objects become StackValidationPolicies (called once with every
resource's outputs). A Pulumi policy has one enforcement level, so the advisory tier of a graded
rule (limit-request-ratio above 2x but within 5x) is published as a companion policy
`<rule>-advisory`.

Configuration reaches the pack two ways, and both end in the same PolicySettings:

* the stack config (`platform:policy`, `platform:production`, `platform:target`), which the engine
  passes to the pack process in PULUMI_CONFIG; the pack publishes it as its initial config;
* policy-pack config (`--policy-pack-config`, Pulumi Cloud), which the engine reconciles with the
  initial config and sends through Configure: per-policy enforcement levels and thresholds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pulumi.runtime
from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyConfigSchema,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError

from policy.engine import item_from_resource, run_rule
from policy.model import UNKNOWN, Inventory
from policy.rules import RULES, RULES_BY_ID, Enforcement, Rule, Scope
from policy.settings import STACK_KEY, PolicySettings

PACK_NAME = "gitops-platform-guardrails"
ADVISORY_SUFFIX = "-advisory"
LEVELS = {
    Enforcement.MANDATORY: EnforcementLevel.MANDATORY,
    Enforcement.ADVISORY: EnforcementLevel.ADVISORY,
    Enforcement.DISABLED: EnforcementLevel.DISABLED,
}


def to_plain(value: Any) -> Any:
    """Plain dicts and lists from the SDK's property proxies; unknown values become UNKNOWN.

    Reading an unknown through the proxy raises, which would abort the whole policy during
    preview; the rules instead skip decisions that rest on an unknown value.
    """
    if isinstance(value, Mapping):
        return {key: _element(value, key) for key in value}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [_element(value, index) for index in range(len(value))]
    return value


def _element(container: Any, key: Any) -> Any:
    try:
        return to_plain(container[key])
    except UnknownValueError:
        return UNKNOWN


def _resource_of(args: ResourceValidationArgs) -> dict[str, Any]:
    return {
        "type": args.resource_type,
        "urn": args.urn,
        "name": args.name,
        "props": to_plain(args.props),
    }


def _stack_resource(resource: PolicyResource) -> dict[str, Any]:
    return {
        "type": resource.resource_type,
        "urn": resource.urn,
        "name": resource.name,
        "props": to_plain(resource.props),
        "propertyDependencies": {
            key: [dependency.urn for dependency in dependencies]
            for key, dependencies in resource.property_dependencies.items()
        },
    }


Validate = Callable[[Any, ReportViolation], None]


def _validator(rule: Rule, settings: PolicySettings, advisory_tier: bool) -> Validate:
    def validate(
        args: ResourceValidationArgs | StackValidationArgs, report: ReportViolation
    ) -> None:
        # Configure'd properties already include the stack's values (published as initial config)
        # and any --policy-pack-config on top; without Configure the stack's values apply.
        params = settings.params(rule.id, args.get_config())
        if isinstance(args, StackValidationArgs):
            resources, whole_stack = [_stack_resource(r) for r in args.resources], True
        else:
            resources, whole_stack = [_resource_of(args)], False
        inventory = Inventory(item_from_resource(resource) for resource in resources)
        for violation in run_rule(rule, inventory, params, settings.stack):
            if violation.advisory == advisory_tier:
                # A stack policy names the offending resource; a resource policy is about its own.
                report(violation.message, violation.subject.urn if whole_stack else None)

    return validate


def _policy(rule: Rule, settings: PolicySettings, *, advisory_tier: bool) -> Policy:
    level = LEVELS[settings.enforcement(rule.id)]
    if advisory_tier and level is not EnforcementLevel.DISABLED:
        level = EnforcementLevel.ADVISORY
    schema = rule.params.model_json_schema(by_alias=True).get("properties")
    common: dict[str, Any] = {
        "name": rule.id + (ADVISORY_SUFFIX if advisory_tier else ""),
        "description": rule.description,
        "validate": _validator(rule, settings, advisory_tier),
        "enforcement_level": level,
        "config_schema": PolicyConfigSchema(properties=schema) if schema else None,
        "remediation_steps": rule.remediation,
    }
    if rule.scope is Scope.STACK:
        return StackValidationPolicy(**common)
    return ResourceValidationPolicy(**common)


def build_policies(settings: PolicySettings) -> list[Policy]:
    """One Pulumi policy per rule (plus `<rule>-advisory` for graded rules), in registry order."""
    policies = []
    for rule in RULES:
        policies.append(_policy(rule, settings, advisory_tier=False))
        if rule.advisory_tier:
            policies.append(_policy(rule, settings, advisory_tier=True))
    return policies


def initial_config(settings: PolicySettings) -> dict[str, dict[str, Any]]:
    """The stack's policy settings as the pack's initial config, for the engine to reconcile.

    The advisory-tier companion judges with the same thresholds, so it gets the rule's values too.
    """
    config: dict[str, dict[str, Any]] = {}
    for rule_id, entry in settings.to_policy_config().items():
        thresholds = {key: value for key, value in entry.items() if key != "enforcementLevel"}
        values: dict[str, Any] = dict(thresholds)
        if "enforcementLevel" in entry:
            values["enforcementLevel"] = LEVELS[Enforcement(entry["enforcementLevel"])]
        config[rule_id] = values
        if thresholds and RULES_BY_ID[rule_id].advisory_tier:
            config[rule_id + ADVISORY_SUFFIX] = thresholds
    return config


def settings_from_environment() -> PolicySettings:
    """The stack's settings from the config the engine passes the pack (PULUMI_CONFIG)."""
    keys = (
        STACK_KEY,
        "platform:production",
        "platform:target",
        "platform:environment",
        "platform:monthlyBudgetUsd",
        "platform:registry",
        "aws:region",
    )
    return PolicySettings.from_stack_config(
        {key: value for key in keys if (value := pulumi.runtime.get_config(key)) is not None}
    )
