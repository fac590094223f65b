"""Adding stacks/Pulumi.<env>.yaml is the only step to add an environment: what it implies
elsewhere is checked with one line that says what to do, and the CI matrix is derived from it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from components.argocd import gitops
from components.config import from_stack_file
from policy.stack_file import ConfigError, load
from synth import environments
from synth.__main__ import main as synth_main
from tests.conftest import REPO, STACKS

DEV = REPO / "stacks" / "Pulumi.dev.yaml"


def _stack_file(folder: Path, stack: str, **changes) -> Path:
    """A copy of dev's stack file named for `stack`, with top-level keys replaced."""
    values = yaml.safe_load(DEV.read_text())["config"]
    values.update(changes)
    path = folder / f"Pulumi.{stack}.yaml"
    path.write_text(yaml.safe_dump({"config": values}))
    return path


def _issues(stack: str, path: Path) -> list[str]:
    file = load(path)
    with pytest.raises(ConfigError) as err:
        environments.check(stack, file, from_stack_file(file))
    return err.value.lines()


@pytest.mark.parametrize("stack", STACKS)
def test_the_shipped_stacks_pass(stack):
    file = load(environments.stack_files()[stack])
    environments.check(stack, file, from_stack_file(file))


def test_a_copied_stack_file_names_each_thing_to_do(tmp_path):
    path = _stack_file(tmp_path, "perf")
    lines = _issues("perf", path)
    # The overlays checked are those of the environment the file names: dev's exist.
    (name,) = lines
    assert name.startswith(f"{path}:") and "platform:environment: dev in the stack file" in name
    assert name.endswith("set platform:environment: perf")


def test_a_missing_overlay_names_the_app_and_the_path_to_create(tmp_path):
    path = _stack_file(tmp_path, "perf", **{"platform:environment": "perf"})
    apps = sorted(p.name for p in (REPO / "argocd-apps" / gitops.APPS_DIR).iterdir() if p.is_dir())
    assert [line.split(": ", 2)[2] for line in _issues("perf", path)] == [
        f"app {app} has no overlay for perf, so Argo CD would not deploy it: create "
        f"argocd-apps/apps/{app}/overlays/perf/kustomization.yaml (copy overlays/dev and patch "
        "what differs)"
        for app in apps
    ]


def test_every_app_of_the_tree_is_checked(tmp_path):
    shutil.copytree(REPO / "argocd-apps", tmp_path / "argocd-apps")
    apps = tmp_path / "argocd-apps" / gitops.APPS_DIR
    shutil.copytree(apps / "hello", apps / "zz-copied")
    shutil.rmtree(apps / "zz-copied" / gitops.OVERLAYS_DIR / "prod")
    cfg = from_stack_file(load(REPO / "stacks" / "Pulumi.prod.yaml"))
    (issue,) = environments.overlay_issues(cfg, tmp_path)
    assert "app zz-copied has no overlay for prod" in issue.message
    assert environments.overlay_issues(cfg, tmp_path / "elsewhere") == [], (
        "apps kept in another repository cannot be checked from this tree"
    )


def test_the_synth_prints_one_line_per_problem_and_writes_nothing(tmp_path, capsys):
    path = _stack_file(tmp_path, "perf", **{"platform:environment": "qa"})
    out = tmp_path / "out"
    assert synth_main(["--stack-file", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.splitlines()
    apps = [p for p in (REPO / "argocd-apps" / gitops.APPS_DIR).iterdir() if p.is_dir()]
    assert len(err) == 1 + len(apps), err
    assert all(line.startswith(f"synth: {path}:") for line in err)
    assert not out.exists()


@pytest.mark.parametrize(
    "example", sorted((REPO / "tests" / "fixtures" / "config" / "valid").glob("*.yaml"))
)
def test_an_example_file_is_checked_on_its_own(example):
    """Not a stack beside the others: no name to match, no repository names to share."""
    file = load(example)
    environments.check("dev", file, from_stack_file(file))


def test_the_ci_matrix_is_every_aws_stack_with_its_region_production_last(tmp_path):
    for path in environments.stack_files().values():
        shutil.copy(path, tmp_path / path.name)
    _stack_file(tmp_path, "perf", **{"aws:region": "eu-west-1"})
    rows = environments.matrix(tmp_path)["include"]
    aws = {
        stack: from_stack_file(load(path))
        for stack, path in environments.stack_files(tmp_path).items()
    }
    aws = {stack: cfg for stack, cfg in aws.items() if cfg.aws_region}
    assert sorted(r["stack"] for r in rows) == sorted(aws)
    assert {"stack": "perf", "region": "eu-west-1"} in rows
    production = [aws[r["stack"]].production for r in rows]
    assert production == sorted(production), "production stacks come last"
