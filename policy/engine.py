"""Run the rules over a set of cloud resources and Kubernetes manifests.

    findings = evaluate(resources, manifests, settings)

A resource is `{"type", "urn", "name", "props"}` with the engine's camelCase property names, plus
optionally `"id"` (the provider id, when known) and `"propertyDependencies"` (`{prop: [urn, ...]}`).
`kubernetes:*` resources whose token names an object kind (`kubernetes:apps/v1:Deployment`) are
Kubernetes objects too; Helm releases and charts stay opaque resources. A manifest is a Kubernetes
object dict, or a `Manifest` carrying the file it came from.

Any object or resource can opt out of named rules with the annotation (Kubernetes) or tag (AWS)
`policy.gitops-platform/ignore: "rule-a,rule-b"`: an exemption reviewed in Git like any change.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from policy.model import Inventory, Item, as_dict, dig
from policy.rules import RULES, Enforcement, Params, Rule, Scope, StackInfo, Violation, get_rule
from policy.rules.kubernetes import pod_template
from policy.settings import PolicySettings

IGNORE_KEY = "policy.gitops-platform/ignore"
# Tokens under these modules are Pulumi components or releases, not Kubernetes API objects.
_OPAQUE_MODULES = ("helm.sh/", "yaml", "kustomize")


@dataclass(frozen=True, slots=True)
class Manifest:
    """A Kubernetes object and the file it was read from."""

    obj: Mapping[str, Any]
    source: str | None = None


@dataclass(frozen=True, slots=True)
class Finding:
    """One violation, as reported by the CLI and written to `policy.json` by the synth."""

    rule: str
    enforcement: Enforcement
    message: str
    urn: str | None = None
    """Set for resources (and Kubernetes objects Pulumi manages)."""
    object: str | None = None
    """`Kind/namespace/name`, set for manifests."""
    source: str | None = None
    """File the manifest came from, when known."""

    def to_dict(self) -> dict[str, str]:
        """The `policy.json` entry: rule, enforcement, urn or object, message."""
        where = {"urn": self.urn} if self.urn else {"object": self.object or ""}
        return {
            "rule": self.rule,
            "enforcement": self.enforcement.value,
            **where,
            "message": self.message,
        }


def kubernetes_token(api_version: str, kind: str) -> str:
    """The Pulumi type token of a kind: (apps/v1, Deployment) -> kubernetes:apps/v1:Deployment."""
    module = api_version if "/" in api_version else f"core/{api_version}"
    return f"kubernetes:{module}:{kind}"


def _object_kind(token: str) -> tuple[str, str] | None:
    """(apiVersion, kind) when a `kubernetes:` token names an API object, else None."""
    provider, _, rest = token.partition(":")
    module, _, kind = rest.partition(":")
    if provider != "kubernetes" or "/" not in module or module.startswith(_OPAQUE_MODULES):
        return None
    if kind.endswith(("Patch", "List")):
        return None  # partial objects and list wrappers are not deployable objects
    group, _, version = module.partition("/")
    return (version if group == "core" else module), kind


def item_from_resource(resource: Mapping[str, Any]) -> Item:
    """An Item for a Pulumi resource (`{"type", "urn", "name", "props", ...}`)."""
    token = str(resource["type"])
    props = as_dict(resource.get("props"))
    kind = None
    object_kind = _object_kind(token)
    if object_kind is not None:
        api_version, kind = object_kind
        props = {"apiVersion": api_version, "kind": kind, **props}
    dependencies = {
        key: tuple(urns) for key, urns in as_dict(resource.get("propertyDependencies")).items()
    }
    resource_id = resource.get("id")
    return Item(
        type=token,
        props=props,
        kind=kind,
        urn=resource.get("urn"),
        name=str(resource.get("name", "")),
        resource_id=resource_id if isinstance(resource_id, str) else None,
        dependencies=dependencies,
    )


def items_from_manifest(manifest: Mapping[str, Any] | Manifest) -> list[Item]:
    """Items for a Kubernetes object (a `kind: List` yields its members); [] for non-objects."""
    obj, source = (
        (manifest.obj, manifest.source) if isinstance(manifest, Manifest) else (manifest, None)
    )
    kind, api_version = obj.get("kind"), obj.get("apiVersion")
    if not isinstance(kind, str) or not kind:
        return []
    if kind == "List":
        return [
            item
            for member in obj.get("items") or []
            if isinstance(member, Mapping)
            for item in items_from_manifest(Manifest(member, source))
        ]
    token = kubernetes_token(api_version if isinstance(api_version, str) else "v1", kind)
    name = dig(obj, "metadata", "name")
    return [
        Item(
            type=token,
            props=obj,
            kind=kind,
            name=name if isinstance(name, str) else "",
            source=source,
        )
    ]


def _ignored_rules(item: Item) -> set[str]:
    if item.kind:
        places = [
            item.metadata.get("annotations"),
            dig(pod_template(item), "metadata", "annotations"),
        ]
    else:
        places = [item.props.get("tags")]
    return {
        rule.strip()
        for place in places
        if isinstance(value := as_dict(place).get(IGNORE_KEY), str)
        for rule in value.split(",")
    }


def run_rule(
    rule: Rule, inventory: Inventory, params: Params, stack: StackInfo
) -> Iterator[Violation]:
    """The rule's violations over the inventory, minus items that opted out of it."""
    if rule.scope is Scope.STACK:
        violations: Iterable[Violation] = rule.check(inventory, params, stack)
    else:
        violations = (
            violation
            for item in inventory.of(*rule.targets)
            for violation in rule.check(item, params, stack)
        )
    for violation in violations:
        if rule.id not in _ignored_rules(violation.subject):
            yield violation


def evaluate(
    resources: Iterable[Mapping[str, Any]] = (),
    manifests: Iterable[Mapping[str, Any] | Manifest] = (),
    settings: PolicySettings | None = None,
    *,
    rules: Collection[str] | None = None,
) -> list[Finding]:
    """Every finding of the enabled rules (or only `rules`) over resources and manifests together.

    Findings come in rule order, then input order. Disabled rules produce nothing; the lower tier
    of a graded rule is advisory whatever the rule's level.
    """
    settings = settings or PolicySettings()
    selected = RULES if rules is None else tuple(get_rule(rule_id) for rule_id in rules)
    inventory = Inventory(
        [item_from_resource(resource) for resource in resources]
        + [item for manifest in manifests for item in items_from_manifest(manifest)]
    )
    findings: list[Finding] = []
    for rule in selected:
        level = settings.enforcement(rule.id)
        if level is Enforcement.DISABLED:
            continue
        for violation in run_rule(rule, inventory, settings.params(rule.id), settings.stack):
            subject = violation.subject
            findings.append(
                Finding(
                    rule=rule.id,
                    enforcement=Enforcement.ADVISORY if violation.advisory else level,
                    message=violation.message,
                    urn=subject.urn,
                    object=None if subject.urn else subject.ref,
                    source=subject.source,
                )
            )
    return findings
