"""The GitHub workflows a forked repository runs, checked against GitHub's workflow schema."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yaml"))
CHECK = Path(sys.executable).with_name("check-jsonschema")


def _check(*paths: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(CHECK), "--builtin-schema", "vendor.github-workflows", *map(str, paths)],
        capture_output=True,
        text=True,
    )


def test_workflows_match_the_schema():
    assert {p.name for p in WORKFLOWS} == {"preview.yaml", "deploy.yaml"}
    run = _check(*WORKFLOWS)
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_schema_check_rejects_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-24.04\n    stepz: []\n")
    assert _check(broken).returncode != 0


def test_least_privilege_and_pinned_actions():
    for path in WORKFLOWS:
        doc = yaml.safe_load(path.read_text())
        assert doc["permissions"] == {}, f"{path.name}: default token permissions must be none"
        for name, job in doc["jobs"].items():
            assert "permissions" in job, f"{path.name}:{name} must ask for what it needs"
            for step in job["steps"]:
                if "uses" in step:
                    assert re.match(r"^[\w.-]+/[\w.-]+@[0-9a-f]{40}$", step["uses"]), step["uses"]
        text = path.read_text()
        assert "aws-access-key-id" not in text and "AWS_SECRET_ACCESS_KEY" not in text


def _job_running(doc: dict, command: str) -> dict:
    return next(
        job
        for job in doc["jobs"].values()
        for step in job["steps"]
        if step.get("uses", "").startswith("pulumi/actions@") and step["with"]["command"] == command
    )


@pytest.mark.parametrize(("workflow", "command"), [("preview", "preview"), ("deploy", "up")])
def test_stacks_and_regions_come_from_stacks_folder(workflow, command):
    """The matrix is `python -m synth.environments`'s output: a new stack file is previewed and
    deployed, in its own region, without editing the workflow."""
    doc = yaml.safe_load((REPO / f".github/workflows/{workflow}.yaml").read_text())
    job = _job_running(doc, command)
    (needed,) = [job["needs"]] if isinstance(job["needs"], str) else job["needs"]
    assert job["strategy"]["matrix"] == f"${{{{ fromJSON(needs.{needed}.outputs.matrix) }}}}"
    producer = doc["jobs"][needed]
    assert producer["outputs"]["matrix"] == "${{ steps.stacks.outputs.matrix }}"
    (step,) = [s for s in producer["steps"] if s.get("id") == "stacks"]
    assert step["run"] == '.venv/bin/python -m synth.environments >> "$GITHUB_OUTPUT"'
    steps = {s.get("uses", "").split("@")[0]: s for s in job["steps"]}
    assert steps["aws-actions/configure-aws-credentials"]["with"]["aws-region"] == (
        "${{ matrix.region }}"
    )
    pulumi = steps["pulumi/actions"]["with"]
    assert pulumi["policyPacks"] == "policy" and pulumi["upsert"] is True
    # The Kubernetes API answers only platform:cluster.apiAllowedCidrs; hosted runners are not.
    assert job["runs-on"] == ["self-hosted", "gitops-platform"]


def test_the_matrix_output_is_a_github_output_line(capsys):
    from synth.environments import main, matrix

    assert main() == 0
    assert capsys.readouterr().out == f"matrix={json.dumps(matrix())}\n"


def test_prod_deploys_only_through_its_environment():
    deploy = yaml.safe_load((REPO / ".github/workflows/deploy.yaml").read_text())
    job = deploy["jobs"]["up"]
    assert job["environment"] == "${{ matrix.stack }}" and job["strategy"]["max-parallel"] == 1
    preview = yaml.safe_load((REPO / ".github/workflows/preview.yaml").read_text())
    assert any(s.get("run") == "bash .ci/run" for s in preview["jobs"]["offline"]["steps"])
