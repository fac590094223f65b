"""Per-stack policy settings: enforcement overrides and rule thresholds.

One format everywhere, the Pulumi policy-pack config shape:

    {"<rule-id>" | "all": "<level>" | {"enforcementLevel": "<level>", "<param>": <value>, ...}}

with levels mandatory, advisory and disabled. It is the value of the stack config key
`platform:policy`, the `--config` file of the checker CLI, and what
`pulumi preview --policy-pack-config` accepts, so one file serves all three.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from policy.registry.config import RegistryConfig
from policy.rules import RULES, RULES_BY_ID, Enforcement, Params, StackInfo, get_rule
from policy.stack_file import ConfigIssue, json_value, key_path, shown

STACK_KEY = "platform:policy"
_FACT_KEYS = {
    "environment": "platform:environment",
    "region": "aws:region",
    "monthly_budget_usd": "platform:monthlyBudgetUsd",
    "registry": "platform:registry",
}
"""The stack config key each fact is read from."""
_LEVELS = ", ".join(level.value for level in Enforcement)


class PolicyConfigError(ValueError):
    """The policy configuration is invalid; `issues` has one line per problem."""

    def __init__(self, issues: list[str]) -> None:
        self.issues = issues
        super().__init__("invalid policy configuration:\n" + "\n".join(f"  {i}" for i in issues))

    def config_issues(self) -> list[ConfigIssue]:
        """The issues as stack config issues: the key each names, and the message."""
        return [ConfigIssue(*issue.partition(": ")[::2]) for issue in self.issues]


class RuleOverride(BaseModel):
    """What a stack changes for one rule."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enforcement: Enforcement | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    """Threshold values by their camelCase config names (validated against the rule's Params)."""


def _issues(exc: ValidationError, key: Callable[[tuple[Any, ...]], str]) -> list[str]:
    """One `key: message` line per error; `key` names the stack config key of a location."""
    return [
        f"{key(error['loc'])}: {error['msg'].removeprefix('Value error, ')}"
        + (f" (got {shown(error['input'])})" if error["type"].endswith("_type") else "")
        for error in exc.errors()
    ]


def _param_issues(rule_id: str, params: Mapping[str, Any], where: str) -> list[str]:
    try:
        get_rule(rule_id).params.model_validate(params)
    except ValidationError as exc:
        return _issues(exc, lambda loc: key_path(where, loc))
    return []


class PolicySettings(BaseModel):
    """Everything that varies per stack: stack facts, enforcement overrides, thresholds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    production: bool = False
    """Production stack (platform:production): decides the ACME server rule."""
    aws: bool = True
    """The stack runs on AWS (platform:target aws): Vault must auto-unseal with KMS."""
    environment: str | None = None
    region: str | None = None
    monthly_budget_usd: float | None = None
    registry: RegistryConfig | None = None
    default_enforcement: Enforcement | None = None
    """The `all` key: one level for every rule without its own."""
    overrides: dict[str, RuleOverride] = Field(default_factory=dict)

    @field_validator("overrides")
    @classmethod
    def _known_rules(cls, overrides: dict[str, RuleOverride]) -> dict[str, RuleOverride]:
        issues = [
            issue
            for rule_id, override in overrides.items()
            for issue in (
                [f"{rule_id}: unknown rule"]
                if rule_id not in RULES_BY_ID
                else _param_issues(rule_id, override.params, rule_id)
            )
        ]
        if issues:
            raise ValueError("; ".join(issues))
        return overrides

    @property
    def stack(self) -> StackInfo:
        return StackInfo(
            production=self.production,
            aws=self.aws,
            environment=self.environment,
            region=self.region,
            monthly_budget_usd=self.monthly_budget_usd,
            registry=self.registry,
        )

    def enforcement(self, rule_id: str) -> Enforcement:
        """The rule's effective level: its override, else `all`, else the rule's default."""
        override = self.overrides.get(rule_id)
        if override is not None and override.enforcement is not None:
            return override.enforcement
        return self.default_enforcement or get_rule(rule_id).enforcement

    def params(self, rule_id: str, extra: Mapping[str, Any] | None = None) -> Params:
        """The rule's thresholds: defaults, then this stack's values, then `extra` on top."""
        override = self.overrides.get(rule_id)
        values = {**(override.params if override else {}), **(extra or {})}
        return get_rule(rule_id).params.model_validate(values)

    def to_policy_config(self) -> dict[str, dict[str, Any]]:
        """These settings in the Pulumi policy-config shape, for every rule they change."""
        config: dict[str, dict[str, Any]] = {}
        for rule in RULES:
            entry: dict[str, Any] = {}
            level = self.enforcement(rule.id)
            if level != rule.enforcement:
                entry["enforcementLevel"] = level.value
            override = self.overrides.get(rule.id)
            if override is not None:
                entry.update(override.params)
            if entry:
                config[rule.id] = entry
        return config

    @classmethod
    def from_policy_config(
        cls,
        config: Mapping[str, Any] | None,
        *,
        production: bool = False,
        aws: bool = True,
        where: str = "policy config",
        **facts: Any,
    ) -> PolicySettings:
        """Parse the policy-config shape; PolicyConfigError lists every problem by its key."""
        if config is not None and not isinstance(config, Mapping):
            raise PolicyConfigError(
                [
                    f"{where}: expected a mapping of rule id to level or settings, "
                    f"got {shown(config)}"
                ]
            )
        issues: list[str] = []
        default: Enforcement | None = None
        overrides: dict[str, RuleOverride] = {}
        for key, value in (config or {}).items():
            path = f"{where}.{key}"
            if isinstance(value, str):
                level, params = value, {}
            elif isinstance(value, Mapping):
                params = {k: v for k, v in value.items() if k != "enforcementLevel"}
                level = value.get("enforcementLevel")
            else:
                issues.append(
                    f"{path}: expected a level ({_LEVELS}) or a mapping, got {shown(value)}"
                )
                continue
            try:
                enforcement = None if level is None else Enforcement(level)
            except ValueError:
                issues.append(f"{path}: enforcement level {shown(level)} is not one of {_LEVELS}")
                continue
            if key == "all":
                if params:
                    issues.append(f"{path}: only takes a level; thresholds belong to one rule")
                default = enforcement
            elif key not in RULES_BY_ID:
                issues.append(f"{path}: unknown rule; known rules: {', '.join(RULES_BY_ID)}")
            else:
                issues += _param_issues(key, params, path)
                overrides[key] = RuleOverride(enforcement=enforcement, params=params)
        if issues:
            raise PolicyConfigError(issues)
        return cls(
            production=production,
            aws=aws,
            default_enforcement=default,
            overrides=overrides,
            **facts,
        )

    @classmethod
    def from_stack_config(cls, stack_config: Mapping[str, Any]) -> PolicySettings:
        """Settings from a stack's config: the `config:` mapping of `stacks/Pulumi.<stack>.yaml`.

        Reads `platform:policy`, `platform:production`, `platform:target` and the facts of
        _FACT_KEYS; PolicyConfigError lists every problem. Values may also be the JSON strings the
        Pulumi engine hands a policy pack in PULUMI_CONFIG.
        """
        production = _decode(stack_config.get("platform:production", False))
        target = _decode(stack_config.get("platform:target", "aws"))
        issues = []
        if not isinstance(production, bool):
            issues.append(f"platform:production: expected true or false, got {shown(production)}")
        if target not in ("aws", "existing"):
            issues.append(f"platform:target: expected aws or existing, got {shown(target)}")
        facts = {
            name: _decode(value)
            for name, key in _FACT_KEYS.items()
            if (value := stack_config.get(key)) is not None
        }
        try:
            validated = cls.model_validate(facts)
        except ValidationError as exc:
            issues += _issues(exc, lambda loc: key_path(_FACT_KEYS[loc[0]], loc[1:]))
        try:
            settings = cls.from_policy_config(
                _decode(stack_config.get(STACK_KEY)),
                production=production is True,
                aws=target != "existing",
                where=STACK_KEY,
            )
        except PolicyConfigError as exc:
            issues += exc.issues
        if issues:
            raise PolicyConfigError(issues)
        return settings.model_copy(update={name: getattr(validated, name) for name in facts})


def _decode(value: Any) -> Any:
    """Engine-provided config values are JSON text ("true", "{...}"); stack files are parsed."""
    if isinstance(value, str):
        try:
            return json_value(value)
        except ValueError:
            return value
    return value
