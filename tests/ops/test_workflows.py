"""The GitHub workflows a forked repository runs, checked against GitHub's workflow schema."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

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


def test_prod_deploys_only_through_its_environment():
    deploy = yaml.safe_load((REPO / ".github/workflows/deploy.yaml").read_text())
    job = deploy["jobs"]["up"]
    assert job["environment"] == "${{ matrix.stack }}" and job["strategy"]["max-parallel"] == 1
    assert job["strategy"]["matrix"]["stack"] == ["dev", "prod"]
    preview = yaml.safe_load((REPO / ".github/workflows/preview.yaml").read_text())
    steps = preview["jobs"]["preview"]["steps"]
    pulumi = next(s for s in steps if s.get("uses", "").startswith("pulumi/actions@"))
    assert pulumi["with"]["command"] == "preview" and pulumi["with"]["policyPacks"] == "policy"
    assert any(s.get("run") == "bash .ci/run" for s in preview["jobs"]["offline"]["steps"])
