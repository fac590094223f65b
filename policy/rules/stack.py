"""Rules that need facts of the stack beyond the objects: its budget and its image registry."""

from __future__ import annotations

import re
from collections.abc import Iterator

from pydantic import Field

from policy.cost.estimate import Resource, UnknownPrice, estimate
from policy.model import Inventory, Item
from policy.registry.tags import is_kept_reference, parse_image_reference
from policy.rules.base import Enforcement, Params, Rule, Scope, StackInfo, Violation
from policy.rules.kubernetes import POD_KINDS, containers, pod_spec

STACK_ITEM = Item(type="pulumi:pulumi:Stack", props={}, name="stack")
"""The subject of findings about the stack as a whole."""


# --- cost-within-budget --------------------------------------------------------------------------


class BudgetParams(Params):
    monthly_usd: float | None = Field(default=None, gt=0)
    """Overrides `platform:monthlyBudgetUsd` for this check."""


def check_budget(inv: Inventory, p: BudgetParams, stack: StackInfo) -> Iterator[Violation]:
    budget = p.monthly_usd or stack.monthly_budget_usd
    if budget is None or not stack.aws or stack.region is None:
        return
    resources = [
        Resource(item.type, item.name, item.props, item.resource_id)
        for item in inv.items
        if item.type.startswith("aws:")
    ]
    try:
        total = estimate(resources, stack.region).total
    except UnknownPrice as exc:
        yield Violation(STACK_ITEM, f"cannot check the budget of ${budget:,.2f}: {exc}")
        return
    if total > budget:
        yield Violation(
            STACK_ITEM,
            f"the stack's estimated cost is ${total:,.2f}/month, above its budget of "
            f"${budget:,.2f} (make cost STACK=<name> lists every line)",
        )


# --- prod-images-kept ----------------------------------------------------------------------------


ECR_HOST_RE = re.compile(r"^\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")


def in_app_registry(image: str, apps: list[str]) -> bool:
    """Whether `image` lives in one of the platform's ECR repositories (the retention applies)."""
    host, _, path = parse_image_reference(image).repository.partition("/")
    return bool(ECR_HOST_RE.match(host)) and path in apps


def check_kept_images(item: Item, _: Params, stack: StackInfo) -> Iterator[Violation]:
    if not stack.production or stack.registry is None:
        return
    for name, container in containers(pod_spec(item), init=True):
        image = container.get("image")
        if not isinstance(image, str) or not in_app_registry(image, stack.registry.apps):
            continue
        if not is_kept_reference(image, stack.registry, environment=stack.environment):
            tag = parse_image_reference(image).tag
            yield Violation(
                item,
                f"container {name} image {image} is neither pinned by digest nor a kept tag "
                f"({tag or 'no tag'}): the registry's retention may expire it while it runs",
            )


RULES = (
    Rule(
        id="cost-within-budget",
        description="The stack's monthly cost estimate stays within platform:monthlyBudgetUsd.",
        enforcement=Enforcement.MANDATORY,
        remediation="Shrink the instance types, agent counts, NAT gateways or load balancers "
        "(make cost shows each line), or raise platform:monthlyBudgetUsd deliberately.",
        check=check_budget,
        scope=Scope.STACK,
        params=BudgetParams,
    ),
    Rule(
        id="prod-images-kept",
        description="Workloads of production stacks reference images of the app registry by "
        "digest or by a tag class its retention keeps (deployed-<env>-, release, named prefixes).",
        enforcement=Enforcement.MANDATORY,
        remediation="Deploy `image@sha256:...`, or a tag CI applied for this environment "
        "(deployed-<env>-...), a release tag (v1.2.3) or a kept prefix (docs/registry.md).",
        check=check_kept_images,
        targets=POD_KINDS,
    ),
)
