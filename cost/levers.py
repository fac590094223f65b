"""What each cost lever of `levers.yaml` is worth: every variant of a stack is synthesized with the
real program and priced by the same estimate as the stack itself (docs/cost.md's tables)."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

LEVERS = Path(__file__).with_name("levers.yaml")


@dataclass(frozen=True)
class Row:
    lever: str
    total: float


@dataclass(frozen=True)
class Levers:
    stack: str
    steps: list[Row]
    """`before`, then each step applied on top of the previous ones."""
    alternatives: list[Row]
    """Each alternative applied alone to the stack file."""
    shipped: Row
    ends_at_stack_file: bool
    """Whether `before` plus every step is exactly the stack file's config."""


def merged(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `changes` merged in, key by key through nested mappings."""
    out = dict(base)
    for key, value in changes.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def total(stack: str, values: Mapping[str, Any]) -> float:
    """The monthly estimate of `stack` with this config, from a synth of the program."""
    from synth.core import cost_of, synthesize

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"Pulumi.{stack}.yaml"
        path.write_text(yaml.safe_dump({"config": dict(values)}, sort_keys=False))
        return cost_of(synthesize(stack, path))["monthlyTotal"]


def levers(stack: str) -> Levers:
    from policy.stack_file import load
    from synth.core import stack_file

    spec = yaml.safe_load(LEVERS.read_text())[stack]
    shipped = load(stack_file(stack)).values
    current = merged(shipped, spec["before"]["set"])
    steps = [Row(spec["before"]["label"], total(stack, current))]
    for step in spec["steps"]:
        current = merged(current, step["set"])
        steps.append(Row(step["lever"], total(stack, current)))
    alternatives = [
        Row(alt["lever"], total(stack, merged(shipped, alt["set"])))
        for alt in spec.get("alternatives", [])
    ]
    return Levers(
        stack, steps, alternatives, Row("stack file", total(stack, shipped)), current == shipped
    )


def markdown(stacks: list[str]) -> str:
    """One table per stack: the levers applied in order, then the ones weighed and left out."""
    out = []
    for stack in stacks:
        result = levers(stack)
        out += [f"| `{stack}`: lever applied | monthly | saved |", "|---|---|---|"]
        previous = None
        for row in result.steps:
            saved = "" if previous is None else f"${previous - row.total:,.2f}"
            out.append(f"| {row.lever} | ${row.total:,.2f} | {saved} |")
            previous = row.total
        out += [
            "",
            f"| `{stack}`: instead of the stack file | monthly | difference |",
            "|---|---|---|",
        ]
        for row in result.alternatives:
            out.append(
                f"| {row.lever} | ${row.total:,.2f} | {row.total - result.shipped.total:+,.2f} |"
            )
        out.append("")
    return "\n".join(out)
