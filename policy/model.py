"""What the rules read: Kubernetes objects and cloud resources, held together as one inventory.

A Kubernetes object (from a YAML file, a synthesized manifest, or a `kubernetes:*` resource that
Pulumi manages) and a cloud resource (`aws:ec2/instance:Instance` with its engine-style camelCase
properties) both become an `Item`. Cross-object rules (a Service selecting pods, a public access
block naming a bucket) read the whole `Inventory`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Self, TypeVar

T = TypeVar("T")


class Unknown:
    """A value Pulumi cannot know yet: a computed output during `pulumi preview`.

    Rules never report a violation that rests on an unknown value; the same rule runs again with
    the real value when the update registers the resource.
    """

    _instance: Unknown | None = None

    def __new__(cls) -> Self:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<unknown>"


UNKNOWN = Unknown()


def dig(value: Any, *path: str | int) -> Any:
    """Follow `path` through nested mappings and lists; None when a step is missing.

    An unknown value met on the way is returned as UNKNOWN, so callers can tell "absent" from
    "not known yet".
    """
    for step in path:
        if value is UNKNOWN:
            return UNKNOWN
        if isinstance(step, int):
            if not isinstance(value, list) or not -len(value) <= step < len(value):
                return None
            value = value[step]
        elif isinstance(value, dict | Mapping):
            value = value.get(step)
        else:
            return None
    return value


def as_list(value: Any) -> list[Any]:
    """A list property, or [] when it is absent, unknown or not a list."""
    return value if isinstance(value, list) else []


def as_dict(value: Any) -> Mapping[str, Any]:
    """A mapping property, or {} when it is absent, unknown or not a mapping."""
    return value if isinstance(value, dict | Mapping) else {}


def as_int(value: Any) -> int | None:
    """An integer property; synthesized data may carry 22.0 or "22". None if not a whole number."""
    if isinstance(value, bool) or value is None or value is UNKNOWN:
        return None
    if isinstance(value, int):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if number.is_integer() else None


@dataclass(frozen=True, slots=True)
class Item:
    """One object the rules look at: a Kubernetes object or a cloud resource."""

    type: str
    """Pulumi type token; a manifest gets the one Pulumi would give it (kubernetes:apps/v1:...)."""
    props: Mapping[str, Any]
    """The Kubernetes object itself, or the resource's properties (engine camelCase names)."""
    kind: str | None = None
    """Kubernetes kind; None for cloud resources and opaque Kubernetes resources (Helm releases)."""
    urn: str | None = None
    name: str = ""
    """Pulumi resource name (the object's metadata.name for manifests)."""
    source: str | None = None
    """File the manifest was read from."""
    resource_id: str | None = None
    """The cloud provider's id when the caller knows it (stack outputs, synth)."""
    dependencies: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """URNs each input property was computed from (Pulumi property dependencies)."""

    @property
    def metadata(self) -> Mapping[str, Any]:
        return as_dict(self.props.get("metadata"))

    @property
    def namespace(self) -> str:
        """metadata.namespace, or "" when unset (the namespace is chosen at deploy time)."""
        namespace = self.metadata.get("namespace")
        return namespace if isinstance(namespace, str) else ""

    @property
    def object_name(self) -> str:
        name = self.metadata.get("name")
        return name if isinstance(name, str) else self.name

    @property
    def ref(self) -> str:
        """How reports name the item: `Kind/namespace/name` for objects, else the resource URN."""
        if self.urn:
            return self.urn
        if self.kind:
            scope = f"{self.namespace}/" if self.namespace else ""
            return f"{self.kind}/{scope}{self.object_name}"
        return f"{self.type}::{self.name}"


class Inventory:
    """Every item of one evaluation, indexed by Kubernetes kind and by Pulumi type token."""

    def __init__(self, items: Iterable[Item]) -> None:
        self.items: list[Item] = list(items)
        self._index: dict[str, list[Item]] = {}
        for item in self.items:
            self._index.setdefault(item.type, []).append(item)
            if item.kind and item.kind != item.type:
                self._index.setdefault(item.kind, []).append(item)
        self._memo: dict[str, Any] = {}

    def of(self, *keys: str) -> list[Item]:
        """Items whose kind or type token is one of `keys`, in input order."""
        if len(keys) == 1:
            return self._index.get(keys[0], [])
        wanted = {id(item) for key in keys for item in self._index.get(key, ())}
        return [item for item in self.items if id(item) in wanted]

    def memo(self, key: str, build: Callable[[Inventory], T]) -> T:
        """A derived index built once per inventory (Services by namespace, HPA targets...)."""
        if key not in self._memo:
            self._memo[key] = build(self)
        return self._memo[key]
