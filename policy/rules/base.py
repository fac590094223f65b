"""The shape every rule shares: metadata, tunable parameters and the check function."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from policy.model import Item
from policy.registry.config import RegistryConfig


class Enforcement(StrEnum):
    """What a violation does: block the deployment, warn, or nothing."""

    MANDATORY = "mandatory"
    ADVISORY = "advisory"
    DISABLED = "disabled"


class Scope(StrEnum):
    """OBJECT rules judge one item alone; STACK rules need the whole set (Services, PDBs...)."""

    OBJECT = "object"
    STACK = "stack"


class Params(BaseModel):
    """A rule's tunable thresholds, written camelCase in policy config (`maxRatio: 5`)."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True
    )


@dataclass(frozen=True)
class StackInfo:
    """Facts about the stack that rules depend on."""

    production: bool = False
    aws: bool = True
    environment: str | None = None
    region: str | None = None
    """AWS region (prices the cost estimate)."""
    monthly_budget_usd: float | None = None
    registry: RegistryConfig | None = None
    """`platform:registry` of the stack: which image tags its retention keeps."""


@dataclass(frozen=True, slots=True)
class Violation:
    """One problem a rule found on one item."""

    subject: Item
    message: str
    advisory: bool = False
    """Reported as advisory whatever the rule's enforcement (the lower tier of a graded rule)."""


@dataclass(frozen=True)
class Rule:
    """A policy rule, written once and run by the checker CLI, the synth and the Pulumi pack."""

    id: str
    description: str
    enforcement: Enforcement
    """Default enforcement; stacks override it through policy config."""
    remediation: str
    check: Callable[..., Iterable[Violation]]
    """OBJECT rules: check(item, params, stack); STACK rules: check(inventory, params, stack)."""
    scope: Scope = Scope.OBJECT
    targets: frozenset[str] = frozenset()
    """OBJECT rules: the Kubernetes kinds and Pulumi type tokens the check receives."""
    params: type[Params] = Params
    advisory_tier: bool = False
    """Some violations are advisory below the mandatory threshold (limit-request-ratio)."""
