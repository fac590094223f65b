"""The regions and instance types the platform knows: those `prices.yaml` prices. The stack config
accepts nothing else, so every stack it accepts has an estimate and a budget check."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml

PRICES = Path(__file__).with_name("prices.yaml")


@dataclass(frozen=True)
class InstanceType:
    name: str
    arch: Literal["x86_64", "arm64"]
    vcpu: int
    memory_gib: float
    burstable: bool
    node: bool = True
    """Whether a K3s node may run on it; the NAT instance's type need not be able to."""


@cache
def table() -> dict[str, Any]:
    return yaml.safe_load(PRICES.read_text())


def instance_types() -> dict[str, InstanceType]:
    """Every instance type the table describes, by name."""
    return {name: InstanceType(name, **spec) for name, spec in table()["instance_types"].items()}


def regions() -> list[str]:
    return sorted(table()["regions"])


def priced_types(region: str, arch: str | None = None) -> list[str]:
    """The node instance types priced in `region` (of `arch` when given), in the table's order."""
    specs = instance_types()
    hourly = table()["regions"].get(region, {}).get("instance_hourly", {})
    return [
        t
        for t in hourly
        if t in specs and specs[t].node and (arch is None or specs[t].arch == arch)
    ]
