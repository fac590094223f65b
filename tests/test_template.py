"""The repository as a template: a fork that renames the org, adds an app and an environment by the
documented steps (README, argocd-apps/README.md, docs/operations.md) synthesizes, passes the
guardrails and its own tests, with no test edited."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests import testdata
from tests.conftest import REPO

UPSTREAM_URL = "https://github.com/example-org/gitops-platform.git"
FORK_URL = "https://github.com/acme-corp/platform.git"
NOT_COPIED = shutil.ignore_patterns(".git", ".venv", "build", "node_modules", "__pycache__")
FORK_TESTS = (
    "tests/argocd_apps/test_layout.py",
    "tests/argocd_apps/test_practices.py",
    "tests/argocd_apps/test_root_objects.py",
    "tests/synth/test_environments.py",
    "tests/ops/test_workflows.py",
)


def _run(fork: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=fork, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def fork(tmp_path_factory) -> Path:
    fork = tmp_path_factory.mktemp("fork") / "platform"
    shutil.copytree(REPO, fork, ignore=NOT_COPIED)
    # The fork's tests read the same upstream files: the mirror beside it, or the shared cache.
    if testdata.MIRROR.is_dir():
        (fork.parent / "shared").symlink_to(testdata.MIRROR)
    # README, "Deploying for real": the apps repository is the fork.
    for stack in (fork / "stacks").glob("Pulumi.*.yaml"):
        stack.write_text(stack.read_text().replace(UPSTREAM_URL, FORK_URL))
    # argocd-apps/README.md, "Add an app": copy hello and rename it.
    apps = fork / "argocd-apps" / "apps"
    shutil.copytree(apps / "hello", apps / "shop")
    for path in (apps / "shop").rglob("*"):
        if path.is_file():
            path.write_text(path.read_text().replace("hello", "shop"))
    # docs/operations.md, "Add an environment": a stack file from dev in its own account, and an
    # overlay per app.
    values = yaml.safe_load((fork / "stacks" / "Pulumi.dev.yaml").read_text())
    values["config"]["platform:environment"] = "staging"
    values["config"]["aws:allowedAccountIds"] = ["777788889999"]
    (fork / "stacks" / "Pulumi.staging.yaml").write_text(yaml.safe_dump(values))
    for app in apps.iterdir():
        if (app / "overlays" / "dev").is_dir():
            shutil.copytree(app / "overlays" / "dev", app / "overlays" / "staging")
    return fork


def test_the_fork_synthesizes_every_stack(fork):
    for stack in ("dev", "staging", "prod", "local"):
        done = _run(fork, "-m", "synth", "--stack", stack, "--out", f"build/synth/{stack}")
        assert done.returncode == 0, done.stderr
    cluster = [
        yaml.safe_load(p.read_text())
        for p in (fork / "build" / "synth" / "staging" / "manifests").glob("secret-argocd-*.yaml")
    ]
    assert any(
        s["metadata"].get("annotations", {}).get("platform_repo_url") == FORK_URL for s in cluster
    )


def test_the_fork_passes_the_guardrails_and_its_matrix_has_staging(fork):
    done = _run(fork, "-m", "synth.apps")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "== staging: 2 apps" in done.stdout
    matrix = _run(fork, "-m", "synth.environments")
    assert '{"stack": "staging", "region": "us-east-1"}' in matrix.stdout


def test_the_forks_own_tests_pass(fork):
    done = _run(fork, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", *FORK_TESTS)
    assert done.returncode == 0, done.stdout[-4000:]
