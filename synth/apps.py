"""`python -m synth.apps [--stack NAME]...`: the guardrails over what Argo CD would apply.

For each stack (default: every stack in stacks/), the root ApplicationSets are expanded over this
working tree and each generated app is built as Argo CD builds it: the overlay of the stack's
environment, the environment's patches (hosts `<app>.<domain>`, issuer, secret store) and the
Namespace the Application creates with Pod Security "restricted". Every app of a stack is one set,
so cross-object rules (unique Ingress hosts, Services selecting pods) see them together. The test
suite runs the same check (tests/argocd_apps), so what fails there fails here first.

Exit status: 0 without mandatory findings, 1 with one, 2 when a stack or an app cannot be built.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from components.argocd import gitops, render
from components.config import from_stack_file
from policy.check import text_report
from policy.engine import Finding, Manifest, evaluate
from policy.rules import Enforcement
from policy.settings import PolicySettings
from policy.stack_file import ConfigError, load
from synth.core import REPO, stack_name
from synth.environments import stack_files

Rendered = list[tuple[gitops.DiscoveredApp, list[dict[str, Any]]]]


def findings(stack_values: dict[str, Any], rendered: Rendered) -> list[Finding]:
    """The guardrails over every app of one stack, with the stack's policy settings."""
    manifests = [Manifest(obj, app.path) for app, objects in rendered for obj in objects]
    return evaluate(manifests=manifests, settings=PolicySettings.from_stack_config(stack_values))


def check_stack(stack: str, out: TextIO, root: Path = REPO) -> int:
    """Report the findings of `stack`'s apps in the tree at `root`; the exit status."""
    file = load(stack_files(root / "stacks")[stack])
    cfg = from_stack_file(file)
    rendered = render.render(render.offline_facts(cfg), root)
    found = findings(file.values, rendered)
    objects = sum(len(objects) for _, objects in rendered)
    out.write(f"== {stack}: {len(rendered)} apps ({cfg.gitops.path}, overlays/{cfg.environment})\n")
    text_report(found, objects, len(rendered), out, unit="apps")
    return 1 if any(f.enforcement is Enforcement.MANDATORY for f in found) else 0


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m synth.apps", description=__doc__)
    parser.add_argument(
        "--stack",
        type=stack_name,
        action="append",
        help="stack name (repeatable; default: every stack in stacks/)",
    )
    args = parser.parse_args(argv)
    known = stack_files()
    unknown = sorted(set(args.stack or ()) - set(known))
    if unknown:
        parser.error(
            f"no stack file for {', '.join(unknown)}; stacks in stacks/: {', '.join(known)}"
        )
    status = 0
    for stack in args.stack or known:
        try:
            status = max(status, check_stack(stack, out or sys.stdout))
        except ConfigError as exc:
            sys.stderr.writelines(f"error: {line}\n" for line in exc.lines())
            status = 2
        except (gitops.LayoutError, render.BuildError) as exc:
            sys.stderr.write(f"error: {stack}: {exc}\n")
            status = 2
    return status


if __name__ == "__main__":
    sys.exit(main())
