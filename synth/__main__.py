"""`python -m synth --stack dev [--out build/synth/dev]`: the offline synth of one stack."""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

from components.config import ConfigError, from_stack_file
from policy.rules import RULES_BY_ID, Enforcement
from synth import capacity, charts, environments
from synth.core import REPO, read_stack_file, resource_counts, stack_name, synthesize, write


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m synth", description=__doc__)
    parser.add_argument(
        "--stack",
        type=stack_name,
        help="stack name (stacks/Pulumi.<stack>.yaml); default: the --stack-file's, else dev",
    )
    parser.add_argument("--out", type=Path, help="output folder (default build/synth/<stack>)")
    parser.add_argument(
        "--stack-file", type=Path, help="stack file to use instead of stacks/Pulumi.<stack>.yaml"
    )
    args = parser.parse_args(argv)
    if args.stack is None:
        # `--stack-file stacks/Pulumi.prod.yaml` alone is the prod stack, not a second dev.
        named = args.stack_file and re.fullmatch(r"Pulumi\.(.+)\.ya?ml", args.stack_file.name)
        try:
            args.stack = stack_name(named[1]) if named else "dev"
        except argparse.ArgumentTypeError as exc:
            parser.error(f"--stack-file {args.stack_file.name}: {exc}; give --stack")
    out = args.out or REPO / "build" / "synth" / args.stack
    start = time.monotonic()
    try:
        file = read_stack_file(args.stack, args.stack_file)
        environments.check(args.stack, file, from_stack_file(file))
        result = synthesize(args.stack, args.stack_file)
    except FileNotFoundError as exc:
        print(f"synth: {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print("\n".join(f"synth: {line}" for line in exc.lines()), file=sys.stderr)
        return 2
    try:
        findings = write(result, out)
    except charts.RenderError as exc:
        print(f"synth: {exc}", file=sys.stderr)
        return 1
    resources, components = resource_counts(result)
    print(
        f"synth: {args.stack}: {resources} resources in {components} components -> {out} "
        f"({time.monotonic() - start:.1f}s)"
    )
    # The synth is the gate: what the policy pack would block in `pulumi preview` fails here.
    blocking = [f for f in findings if f.enforcement is Enforcement.MANDATORY]
    for finding in blocking:
        rule = RULES_BY_ID.get(finding.rule)
        fix = rule.remediation if rule else capacity.REMEDIATION
        print(
            f"synth: {finding.rule}: {finding.urn or finding.object}: {finding.message} "
            f"(fix: {fix})",
            file=sys.stderr,
        )
    return 1 if blocking else 0


if __name__ == "__main__":
    status = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Every file is written and closed; tearing down the SDK's modules and gRPC threads at
    # interpreter exit would add most of a second to each run for nothing.
    os._exit(status)
