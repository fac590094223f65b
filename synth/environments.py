"""An environment is its stack file: what the file implies elsewhere is checked against it.

Adding `stacks/Pulumi.<env>.yaml` is the only step to add an environment. The app overlays Argo CD
selects by `platform:environment` and the environment's name itself are checked here, each problem
as a `ConfigIssue` that says what to do; the CI matrices are generated from the same files
(`python -m synth.environments`). Names AWS holds once per account and region carry the stack's
name, so two stacks never claim the same one (tests/ops/test_unique_names.py).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from components.argocd import gitops
from components.config import PlatformConfig, from_stack_file
from policy.stack_file import ConfigError, ConfigIssue, StackFile, load, printable

REPO = Path(__file__).resolve().parent.parent
STACKS_DIR = REPO / "stacks"


def stack_files(stacks_dir: Path = STACKS_DIR) -> dict[str, Path]:
    """Stack name -> `stacks/Pulumi.<stack>.yaml`."""
    return {p.name.split(".")[1]: p for p in sorted(stacks_dir.glob("Pulumi.*.yaml"))}


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def overlay_issues(cfg: PlatformConfig, root: Path = REPO) -> list[ConfigIssue]:
    """Apps of this working tree without an overlay for the environment: Argo CD would skip them
    without a word."""
    apps_dir = root / cfg.gitops.path / gitops.APPS_DIR
    if not apps_dir.is_dir():
        # The apps live in another repository; this tree cannot tell what it holds.
        return []
    issues = []
    for missing in gitops.missing_overlays(root, cfg.gitops.path, [cfg.environment]):
        app = missing.split("/", 1)[0]
        overlays = apps_dir / app / gitops.OVERLAYS_DIR
        model = next((p.name for p in sorted(overlays.glob("*")) if p.is_dir()), None)
        start = f" (copy overlays/{model} and patch what differs)" if model else ""
        path = _relative(apps_dir / missing / "kustomization.yaml", root)
        issues.append(
            ConfigIssue(
                "platform:environment",
                f"app {app} has no overlay for {printable(cfg.environment)}, so Argo CD would not "
                f"deploy it: create {path}{start}",
            )
        )
    return issues


def name_issues(stack: str, cfg: PlatformConfig) -> list[ConfigIssue]:
    if cfg.environment == stack:
        return []
    return [
        ConfigIssue(
            "platform:environment",
            f"{printable(cfg.environment)} in the stack file of {printable(stack)}: Argo CD would "
            f"deploy {printable(cfg.environment)}'s overlays here; set platform:environment: "
            f"{printable(stack)}",
        )
    ]


def check(stack: str, file: StackFile, cfg: PlatformConfig) -> None:
    """Raise `ConfigError`, located in the stack file, for what the environment implies elsewhere.

    The name check applies to stack files named after a stack (`Pulumi.<stack>.yaml`), which
    deploy beside the others; any other file is an example checked on its own."""
    named = file.path.name == f"Pulumi.{stack}.yaml"
    issues = [
        *(name_issues(stack, cfg) if named else []),
        *overlay_issues(cfg),
    ]
    if issues:
        raise file.located(ConfigError(issues))


def matrix(stacks_dir: Path = STACKS_DIR) -> dict[str, list[dict[str, str]]]:
    """The CI matrix: every stack on AWS with its region, non-production stacks first so that a
    change reaches production last."""
    rows = []
    for stack, path in stack_files(stacks_dir).items():
        cfg = from_stack_file(load(path))
        if cfg.aws_region:
            rows.append((cfg.production, stack, cfg.aws_region))
    return {"include": [{"stack": s, "region": r} for _, s, r in sorted(rows)]}


def main() -> int:
    """Print the matrix as a GitHub step output line, `matrix=<json>`."""
    try:
        print(f"matrix={json.dumps(matrix())}")
    except ConfigError as exc:
        print("\n".join(exc.lines()), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
