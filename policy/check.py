"""Guardrail checker for Kubernetes YAML: `python -m policy.check PATH... [--format json]`.

PATHs are files, directories (searched recursively for *.yaml and *.yml) or `-` for standard
input, e.g. `kubectl kustomize argocd-apps/apps/web/overlays/prod | python -m policy.check -`.
Every document of every path joins one set, so cross-object rules (a Service selecting pods,
unique Ingress hosts, PodDisruptionBudgets) see all of them. Documents without a `kind` (Helm
values, JSON patches) are skipped.

Exit status: 0 when no mandatory rule is violated, 1 when one is, 2 on a usage or parse error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import yaml

from components.config import checked_values
from policy.engine import Finding, Manifest, evaluate, items_from_manifest
from policy.rules import RULES_BY_ID, Enforcement
from policy.settings import STACK_KEY, PolicyConfigError, PolicySettings
from policy.stack_file import ConfigError, load, load_mapping

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class InputError(Exception):
    """A path that can't be read or parsed; reported with exit status 2."""


def _parse(text: str, where: str) -> list[Any]:
    try:
        return list(yaml.load_all(text, Loader=_LOADER))
    except yaml.YAMLError as exc:
        raise InputError(f"{where}: not valid YAML: {exc}") from None


def _yaml_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise InputError(f"{path}: no such file or directory")
    return sorted(
        found
        for pattern in ("*.yaml", "*.yml")
        for found in path.rglob(pattern)
        if found.is_file()
        and not any(part.startswith(".") for part in found.relative_to(path).parts)
    )


def load_manifests(paths: Sequence[str], stdin: TextIO) -> tuple[list[Manifest], int]:
    """Every mapping document under `paths` with the file it came from, and the file count."""
    sources: list[tuple[str, str]] = []
    for raw in paths:
        if raw == "-":
            sources.append(("<stdin>", stdin.read()))
            continue
        for file in _yaml_files(Path(raw)):
            try:
                sources.append((str(file), file.read_text(encoding="utf-8")))
            except (OSError, UnicodeDecodeError) as exc:
                raise InputError(f"{file}: cannot read: {exc}") from None
    if not sources:
        raise InputError(f"no YAML files found in {', '.join(paths)}")
    manifests = [
        Manifest(document, source)
        for source, text in sources
        for document in _parse(text, source)
        if isinstance(document, dict)
    ]
    return manifests, len(sources)


def settings_from_args(args: argparse.Namespace) -> PolicySettings:
    """Stack file facts and `platform:policy`, with the --config entries and flags on top.

    ConfigError names the file (and line) of every problem with the stack file or --config."""
    stack: dict[str, Any] = {}
    if args.stack:
        file = load(args.stack)
        stack = checked_values(file)
        _settings(stack, file.located)
    if args.config:
        stack[STACK_KEY] = {**(stack.get(STACK_KEY) or {}), **load_mapping(args.config)}
    if args.production:
        stack["platform:production"] = True
    return _settings(stack, lambda error: ConfigError(error.issues, str(args.config)))


def _settings(
    stack: dict[str, Any], located: Callable[[ConfigError], ConfigError]
) -> PolicySettings:
    try:
        return PolicySettings.from_stack_config(stack)
    except PolicyConfigError as exc:
        raise located(ConfigError(exc.config_issues())) from None


def text_report(
    findings: list[Finding], objects: int, files: int, out: TextIO, unit: str = "files"
) -> None:
    """Findings by object, each violated rule's remediation, and the counts."""
    by_subject: dict[tuple[str, str | None], list[Finding]] = {}
    for finding in findings:
        by_subject.setdefault((finding.urn or finding.object or "", finding.source), []).append(
            finding
        )
    width = max((len(f.rule) for f in findings), default=0)
    for (subject, source), group in by_subject.items():
        out.write(f"{subject}" + (f"  ({source})" if source else "") + "\n")
        for finding in group:
            level = finding.enforcement.value
            label = level.upper() if finding.enforcement is Enforcement.MANDATORY else level
            out.write(f"  {label:<9}  {finding.rule:<{width}}  {finding.message}\n")
        out.write("\n")
    violated = list(dict.fromkeys(f.rule for f in findings))
    if violated:
        out.write("How to fix:\n")
        out.writelines(f"  {rule_id}: {RULES_BY_ID[rule_id].remediation}\n" for rule_id in violated)
        out.write("\n")
    mandatory = sum(f.enforcement is Enforcement.MANDATORY for f in findings)
    out.write(
        f"{objects} objects in {files} {unit}: {mandatory} mandatory and "
        f"{len(findings) - mandatory} advisory violations\n"
    )


def _json_report(findings: list[Finding], objects: int, files: int, out: TextIO) -> None:
    mandatory = sum(f.enforcement is Enforcement.MANDATORY for f in findings)
    report = {
        "files": files,
        "objects": objects,
        "mandatory": mandatory,
        "advisory": len(findings) - mandatory,
        "findings": [
            {**f.to_dict(), **({"source": f.source} if f.source else {})} for f in findings
        ],
    }
    json.dump(report, out, indent=2)
    out.write("\n")


def main(
    argv: Sequence[str] | None = None, stdout: TextIO = sys.stdout, stdin: TextIO = sys.stdin
) -> int:
    """Run the checker; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m policy.check",
        description="Check Kubernetes YAML against the platform guardrails.",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="file, directory or - (stdin)")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument(
        "--config", type=Path, help="policy config file: {rule-id: level | {enforcementLevel, ...}}"
    )
    parser.add_argument(
        "--stack",
        type=Path,
        help="stack file (stacks/Pulumi.<stack>.yaml): platform:policy, production, target",
    )
    parser.add_argument(
        "--production", action="store_true", help="judge as a production stack (ACME server)"
    )
    args = parser.parse_args(argv)
    try:
        settings = settings_from_args(args)
        manifests, files = load_manifests(args.paths, stdin)
    except ConfigError as exc:
        sys.stderr.writelines(f"error: {line}\n" for line in exc.lines())
        return 2
    except InputError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    findings = evaluate(manifests=manifests, settings=settings)
    objects = sum(len(items_from_manifest(m)) for m in manifests)
    report = _json_report if args.format == "json" else text_report
    report(findings, objects, files, stdout)
    return 1 if any(f.enforcement is Enforcement.MANDATORY for f in findings) else 0


if __name__ == "__main__":
    sys.exit(main())
