"""Run the Pulumi program of one stack under the mock runtime and write what it would create."""

from __future__ import annotations

import argparse
import base64
import json
import re
import runpy
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime import settings as runtime_settings
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from components import config as stack_config
from components.platform import sizing
from policy.cost import estimate as cost
from policy.engine import Finding, Manifest, evaluate
from policy.settings import PolicySettings
from policy.stack_file import StackFile, load, printable
from synth import capacity, charts
from synth.mocks import SECRET, RecordingMonitor, Registration, SynthMocks, redact

REPO = Path(__file__).resolve().parent.parent
K8S_NOT_OBJECTS = ("kubernetes:helm.sh/", "pulumi:providers:", "kubernetes:yaml")
STACK_NAME_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,27}$")
"""What Pulumi allows in a stack name, except a leading dot (the name is also a folder name),
and short enough for the longest name the program derives from it: IAM's 64 characters hold
`gitops-platform-<stack>-server-role` and Pulumi's 8-character suffix."""


@dataclass
class SynthResult:
    stack: str
    project: str
    config: stack_config.PlatformConfig
    stack_values: dict[str, Any]
    """The stack file's `config:` as written (policy settings are read from it)."""
    registrations: list[Registration]
    outputs: dict[str, Any]
    secret_values: set[str] = field(default_factory=set)

    def of_type(self, typ: str) -> list[Registration]:
        return [r for r in self.registrations if r.type == typ]

    def by_name(self, name: str) -> Registration:
        matches = [r for r in self.registrations if r.name == name]
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} resources named {name!r}")
        return matches[0]


def project_name() -> str:
    return yaml.safe_load((REPO / "Pulumi.yaml").read_text())["name"]


def stack_name(text: str) -> str:
    """An argparse type: a stack name that can also name its files and folders."""
    if not STACK_NAME_RE.match(text):
        raise argparse.ArgumentTypeError(
            f"{printable(repr(text))} is not a stack name (at most 28 letters, digits, '_', '-' "
            "and '.')"
        )
    return text


def stack_file(stack: str) -> Path:
    return REPO / "stacks" / f"Pulumi.{stack}.yaml"


def read_stack_file(stack: str, path: Path | None = None) -> StackFile:
    """The stack file, `path` or `stacks/Pulumi.<stack>.yaml`, read and checked by
    `policy.stack_file`."""
    if path is None and not stack_file(stack).exists():
        known = sorted(p.name.split(".")[1] for p in (REPO / "stacks").glob("Pulumi.*.yaml"))
        raise FileNotFoundError(
            f"no stack file stacks/Pulumi.{printable(stack)}.yaml; "
            f"stacks in stacks/: {', '.join(known)}"
        )
    return load(path or stack_file(stack))


def _offline_values(file: StackFile) -> dict[str, Any]:
    """`secure:` values cannot be decrypted offline; they become "[secret]"."""
    return {key: SECRET if key in file.secret_keys else v for key, v in file.values.items()}


def load_stack_config(stack: str, path: Path | None = None) -> tuple[dict[str, Any], list[str]]:
    """The stack file's config as written, with secrets as "[secret]", and its secret keys."""
    file = read_stack_file(stack, path)
    return _offline_values(file), file.secret_keys


def synthesize(stack: str, path: Path | None = None) -> SynthResult:
    """Validate the stack's config, then run the program under mocks. Raises ConfigError first.

    `path` overrides the stack file (default `stacks/Pulumi.<stack>.yaml`)."""
    file = read_stack_file(stack, path)
    cfg = stack_config.from_stack_file(file)
    values, secret_keys = _offline_values(file), file.secret_keys
    mocks = SynthMocks(region=cfg.aws_region or "us-east-1")
    monitor = RecordingMonitor(mocks)
    project = project_name()
    runtime_settings.ROOT.set(None)
    pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=False, monitor=monitor)
    pulumi.runtime.set_all_config(
        {k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}, secret_keys
    )
    _sync_await(
        run_pulumi_func(lambda: runpy.run_path(str(REPO / "__main__.py"), run_name="__main__"))
    )
    outputs = _stack_outputs()
    return SynthResult(
        stack,
        project,
        cfg,
        values,
        sorted(monitor.registrations, key=lambda r: r.urn),
        outputs,
        mocks.secret_values,
    )


def _stack_outputs() -> dict[str, Any]:
    root = runtime_settings.get_root_resource()
    resolved = {}
    for key, value in sorted(getattr(root, "outputs", {}).items()):
        output = pulumi.Output.from_input(value)
        is_secret = _sync_await(output.is_secret())
        resolved[key] = SECRET if is_secret else redact(_sync_await(output.future()))
    return resolved


# -- writing ------------------------------------------------------------------------------------


def _json(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True) + "\n"


def node_user_data(result: SynthResult) -> dict[str, str]:
    """Node kind -> user data, from the instances and launch templates the program declares."""
    found: dict[str, str] = {}
    for reg in result.registrations:
        if reg.type == "aws:ec2/instance:Instance":
            kind, text = (
                reg.inputs.get("tags", {}).get("platform:node-kind"),
                reg.inputs.get("userData"),
            )
        elif reg.type == "aws:ec2/launchTemplate:LaunchTemplate":
            kind = reg.inputs.get("tags", {}).get("platform:node-kind")
            text = base64.b64decode(reg.inputs.get("userData", "")).decode()
        else:
            continue
        if kind and text and found.setdefault(kind, text) != text:
            raise ValueError(f"instances of node kind {kind} have different user data")
    return found


def kubernetes_objects(result: SynthResult) -> list[tuple[Registration, dict]]:
    """Every Kubernetes object the program creates directly; its inputs are the object itself."""
    return [
        (reg, _readable(reg))
        for reg in result.registrations
        if reg.custom
        and reg.type.startswith("kubernetes:")
        and not reg.type.startswith(K8S_NOT_OBJECTS)
    ]


def _readable(reg: Registration) -> dict:
    """The object as written: the SDK makes a Secret's whole data one secret, so show its keys
    with every value redacted, which is what a reviewer needs to see."""
    if reg.inputs.get("kind") != "Secret":
        return reg.inputs
    shown = dict(reg.inputs)
    for key in ("data", "stringData"):
        value = reg.plain_inputs.get(key)
        if isinstance(value, dict):
            shown[key] = dict.fromkeys(value, SECRET)
    return shown


def helm_releases(result: SynthResult) -> list[tuple[dict, dict]]:
    """(`releases.json` entry, exact values) of every Helm release, sorted by name."""
    found = []
    for reg in result.of_type("kubernetes:helm.sh/v3:Release"):
        spec = reg.inputs
        entry = {
            "name": spec.get("name", reg.name),
            "namespace": spec.get("namespace", "default"),
            "chart": spec.get("chart"),
            "repo": (spec.get("repositoryOpts") or {}).get("repo"),
            "version": spec.get("version"),
        }
        found.append((entry, redact_leaves(reg.plain_inputs.get("values") or {}, result)))
    return sorted(found, key=lambda pair: pair[0]["name"])


def redact_leaves(value: Any, result: SynthResult) -> Any:
    """The value with every string that holds a secret the stack handed out (or a secret config
    value) replaced by "[secret]": one secret leaf makes the SDK mark a whole input secret, and a
    reviewer still needs to see the rest of it."""
    if isinstance(value, dict):
        return {key: redact_leaves(item, result) for key, item in value.items()}
    if isinstance(value, list):
        return [redact_leaves(item, result) for item in value]
    if isinstance(value, str) and any(s and s in value for s in result.secret_values):
        return SECRET
    return value


PROVIDER_COLOURS = {
    "aws": "#ffd8a8",
    "kubernetes": "#c5dcff",
    "tls": "#c8f0c8",
    "random": "#f0e0ff",
    "pulumi-python": "#e8d0f8",
    "pulumi": "#e0e0e0",
}
"""Fill colour of a resource by the package of its type (`aws:...`); other packages are white."""


def resource_counts(result: SynthResult) -> tuple[int, int]:
    """(resources, components): what the stack creates, and the ComponentResources grouping it.
    The CLI, summary.txt and graph.svg all say these two numbers."""
    custom = sum(r.custom for r in result.registrations)
    return custom, len(result.registrations) - custom


def _label(reg: Registration, parent: Registration | None) -> str:
    """The name without its component's prefix, and the type's last part (Instance, Secret)."""
    name = reg.name
    if parent is not None and name.startswith(f"{parent.name}-"):
        name = name[len(parent.name) + 1 :]
    return f"{name}\\n{reg.type.rsplit(':', 1)[-1]}"


def _dot(result: SynthResult) -> str:
    """The dependency graph, one cluster per ComponentResource (nested as the components are),
    filled by provider package, with a legend and the counts in the title."""
    regs = {r.urn: r for r in result.registrations}
    ids = {urn: f"n{i}" for i, urn in enumerate(regs)}
    children: dict[str | None, list[Registration]] = {}
    for reg in result.registrations:
        children.setdefault(reg.parent if reg.parent in regs else None, []).append(reg)
    resources, components = resource_counts(result)
    lines = [
        "digraph resources {",
        "  rankdir=LR; compound=true; newrank=true; ranksep=0.6;",
        f'  label="{result.project}/{result.stack}: {resources} resources in {components} '
        'components"; labelloc=t; fontsize=20; fontname=Helvetica;',
        '  node [shape=box, style="rounded,filled", fillcolor=white, fontsize=10, '
        "fontname=Helvetica];",
    ]

    def emit(parent: Registration | None, indent: str) -> None:
        for reg in children.get(parent.urn if parent else None, []):
            if reg.custom:
                colour = PROVIDER_COLOURS.get(reg.type.split(":", 1)[0], "white")
                lines.append(
                    f'{indent}{ids[reg.urn]} [label="{_label(reg, parent)}", fillcolor="{colour}"];'
                )
                continue
            lines.append(f"{indent}subgraph cluster_{ids[reg.urn]} {{")
            lines.append(
                f'{indent}  label="{reg.name}\\n{reg.type.rsplit(":", 1)[-1]}"; '
                'style="rounded"; fontsize=12; fontname=Helvetica;'
            )
            emit(reg, indent + "  ")
            lines.append(f"{indent}}}")

    emit(None, "  ")
    lines.append('  subgraph cluster_legend { label="provider"; style="rounded"; fontsize=12;')
    used = sorted({r.type.split(":", 1)[0] for r in result.registrations if r.custom})
    lines += [
        f'    legend_{i} [label="{package}", fillcolor="{PROVIDER_COLOURS.get(package, "white")}"];'
        for i, package in enumerate(used)
    ]
    lines.append("  }")
    for reg in result.registrations:
        for dep in reg.depends_on:
            # Every Kubernetes object depends on its provider; those edges would hide the rest.
            if (
                dep in ids
                and reg.custom
                and regs[dep].custom
                and not regs[dep].type.startswith("pulumi:providers:")
            ):
                lines.append(f"  {ids[dep]} -> {ids[reg.urn]} [color=gray40, arrowsize=0.6];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def write(result: SynthResult, out: Path) -> list[Finding]:
    """Write build/synth/<stack>/ from scratch so stale files never survive a run; returns the
    guardrails' findings (also in policy.json)."""
    if out.exists():
        shutil.rmtree(out)
    (out / "cloud-init").mkdir(parents=True)
    (out / "manifests").mkdir()
    resources = [
        {
            "urn": r.urn,
            "type": r.type,
            "name": r.name,
            "parent": r.parent,
            "custom": r.custom,
            "provider": r.provider,
            "dependsOn": r.depends_on,
            "protect": r.protect,
            "inputs": r.inputs,
        }
        for r in result.registrations
    ]
    (out / "resources.json").write_text(
        _json({"project": result.project, "stack": result.stack, "resources": resources})
    )
    (out / "outputs.json").write_text(_json(result.outputs))
    for kind, text in sorted(node_user_data(result).items()):
        (out / "cloud-init" / f"{kind}.yaml").write_text(text)
    for reg, obj in kubernetes_objects(result):
        meta = obj.get("metadata") or {}
        parts = [
            obj.get("kind", reg.type.rsplit(":", 1)[-1]),
            meta.get("namespace"),
            meta.get("name") or reg.name,
        ]
        filename = "-".join(p for p in parts if p).lower() + ".yaml"
        (out / "manifests" / filename).write_text(yaml.safe_dump(obj, sort_keys=True))
    releases = helm_releases(result)
    (out / "helm").mkdir()
    (out / "helm" / "releases.json").write_text(_json([entry for entry, _ in releases]))
    for entry, values in releases:
        (out / "helm" / f"{entry['name']}.values.yaml").write_text(
            yaml.safe_dump(values, sort_keys=True)
        )
    folder = charts.chart_folder()
    rendered: list[tuple[str, dict[str, Any]]] = []
    if folder is None:
        print(
            f"synth: no chart cache at {charts.cache_dir()} (`make charts` fills it): "
            "rendered/ and capacity.json skipped"
        )
    else:
        rendered = charts.render_releases(releases, out / "rendered", folder)
    (out / "graph.dot").write_text(_dot(result))
    (out / "summary.txt").write_text(summary(result))
    (out / "cost.json").write_text(_json(cost_of(result)))
    findings = policy_findings(result, rendered)
    if folder is not None:
        objects = [obj for _, obj in rendered] + [obj for _, obj in kubernetes_objects(result)]
        report, short = capacity.check(result.config, objects)
        (out / "capacity.json").write_text(_json(report))
        findings += short
    (out / "policy.json").write_text(_json([f.to_dict() for f in findings]))
    dot = shutil.which("dot")
    if dot:
        subprocess.run(
            [dot, "-Tsvg", "-o", str(out / "graph.svg"), str(out / "graph.dot")], check=True
        )
    return findings


def policy_resources(result: SynthResult) -> list[dict[str, Any]]:
    """The stack's resources in the shape the guardrails read."""
    return [
        {"type": r.type, "urn": r.urn, "name": r.name, "props": r.inputs, "id": r.id}
        for r in result.registrations
        if r.custom
    ]


def policy_findings(
    result: SynthResult, rendered: list[tuple[str, dict[str, Any]]] = ()
) -> list[Finding]:
    """The guardrails over everything the stack registers and the objects its releases render
    (`rendered/`), with the stack's own settings."""
    settings = PolicySettings.from_stack_config(result.stack_values)
    size = sizing.size_of(result.config.production)
    manifests = [
        Manifest(charts.exempted(release, obj, size), f"rendered/{release}.yaml")
        for release, obj in rendered
    ]
    return evaluate(policy_resources(result), manifests, settings)


def cost_resources(result: SynthResult) -> list[cost.Resource]:
    return [cost.Resource(r.type, r.name, r.inputs, r.id) for r in result.registrations if r.custom]


def cost_of(result: SynthResult) -> dict[str, Any]:
    """`cost.json`: the monthly estimate, or why there is none."""
    region = result.config.aws_region
    if region is None:
        return {
            "region": None,
            "currency": "USD",
            "monthlyTotal": 0,
            "lines": [],
            "note": "no AWS resources: the stack targets an existing cluster",
        }
    try:
        return cost.estimate(cost_resources(result), region).to_dict()
    except cost.UnknownPrice as exc:
        return {
            "region": region,
            "currency": "USD",
            "monthlyTotal": None,
            "lines": [],
            "error": str(exc),
        }


def summary(result: SynthResult) -> str:
    """What the stack creates, grouped by the top component of each resource's parent chain."""
    by_urn = {r.urn: r for r in result.registrations}

    def owner(reg: Registration) -> str:
        while reg.parent in by_urn and by_urn[reg.parent].parent in by_urn:
            reg = by_urn[reg.parent]
        top = by_urn.get(reg.parent) if reg.parent in by_urn else reg
        return f"{top.type} {top.name}" if not top.custom else "stack"

    groups: dict[str, dict[str, int]] = {}
    for reg in result.registrations:
        if reg.custom:
            counts = groups.setdefault(owner(reg), {})
            counts[reg.type] = counts.get(reg.type, 0) + 1
    resources, components = resource_counts(result)
    lines = [
        f"{result.project}/{result.stack}: {resources} resources in {components} components, "
        f"{len(groups)} groups"
    ]
    for group in sorted(groups):
        lines.append(f"\n{group}")
        lines += [f"  {count:3d}  {typ}" for typ, count in sorted(groups[group].items())]
    return "\n".join(lines) + "\n"
