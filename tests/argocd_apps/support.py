"""What the argocd-apps tests share: the stacks' facts, kustomize, schema validators and Git."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from components import config as stack_config
from components import versions
from components.argocd import gitops, render
from synth.core import load_stack_config
from tests.conftest import require_tool

REPO = Path(__file__).resolve().parents[2]
GITOPS_PATH = "argocd-apps"
STACKS = sorted(p.name.split(".")[1] for p in (REPO / "stacks").glob("Pulumi.*.yaml"))
KUBE_VERSION = f"{versions.kubernetes_minor()}.0"
CRD_MODELS = REPO / "tests" / "crd-models"
# The base manifests hold these until the root ApplicationSet patches the environment's values in.
UNPATCHED_MARKERS = ("example.invalid", "set-by-argocd")
# Upstream CRDs (shared/crds/README.md) at the versions pinned in components/versions.py.


def stack_config_values(stack: str) -> dict[str, Any]:
    return load_stack_config(stack)[0]


def stack_facts(stack: str, **overrides: Any) -> gitops.PlatformFacts:
    """The facts the Argo CD component derives for a shipped stack, with every extra enabled so the
    builds cover them; `overrides` replace single facts (repo_url pointed at a test server...)."""
    extras = sorted(
        p.name for p in (REPO / GITOPS_PATH / gitops.EXTRAS_DIR).iterdir() if p.is_dir()
    )
    cfg = stack_config.parse(stack_config_values(stack))
    return render.offline_facts(cfg, **{"extras": tuple(extras), **overrides})


def required_environments() -> list[str]:
    """The environments of the shipped stacks: every app needs an overlay for each."""
    return sorted({stack_facts(stack).environment for stack in STACKS})


def kustomization_folders() -> list[Path]:
    """Every folder of argocd-apps/ that kustomize builds: bases, overlays and extras."""
    return sorted(p.parent for p in (REPO / GITOPS_PATH).rglob("kustomization.yaml"))


def run_kustomize(folder: Path) -> list[dict[str, Any]]:
    try:
        return render.kustomize(folder)
    except render.BuildError as exc:
        raise AssertionError(str(exc)) from None


def ref(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata", {})
    return f"{obj.get('kind')}/{meta.get('namespace', '')}/{meta.get('name')}"


# -- validators ------------------------------------------------------------------------------------


def validate_core(obj: dict[str, Any]) -> None:
    """Raises kubernetes_validate's ValidationError; unknown fields fail (strict)."""
    kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


def model_errors(objects: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run tests/crd-models/validate.mjs (npm @kubernetes-models) over custom resources."""
    node = require_tool("node")
    if not (CRD_MODELS / "node_modules").is_dir():
        message = f"{CRD_MODELS}/node_modules is missing: run `npm ci --prefix tests/crd-models`"
        if os.environ.get("REQUIRE_ALL_TOOLS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    done = subprocess.run(
        [node, str(CRD_MODELS / "validate.mjs")],
        input=json.dumps(list(objects)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode:
        pytest.fail(f"validate.mjs failed:\n{done.stderr}")
    return json.loads(done.stdout)


# -- Git -------------------------------------------------------------------------------------------

_SHA = re.compile(r"^[0-9a-f]{40}$")


class RevisionNotFound(Exception):
    pass


def git(*args: str, cwd: Path | None = None) -> str:
    done = subprocess.run(
        [
            "git",
            "-c",
            "user.name=platform-tests",
            "-c",
            "user.email=tests@example.invalid",
            "-c",
            "init.defaultBranch=main",
            *args,
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
    )
    if done.returncode:
        raise AssertionError(f"git {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def checkout(url: str, revision: str, dest: Path) -> Path:
    """Clone `url` at `revision`: a branch, a tag, HEAD or a full commit SHA, as Argo CD does."""
    if _SHA.match(revision):
        sha = revision
    else:
        refs = dict(
            reversed(line.split("\t")) for line in git("ls-remote", url, revision).splitlines()
        )
        wanted = (
            ("HEAD",) if revision == "HEAD" else (f"refs/heads/{revision}", f"refs/tags/{revision}")
        )
        sha = next((refs[r] for r in wanted if r in refs), "")
        if not sha:
            raise RevisionNotFound(
                f"revision {revision!r} does not exist in {url}: no branch or tag of that name "
                f"(platform:gitops.revision)"
            )
    git("clone", "--quiet", "--no-checkout", url, str(dest))
    git("checkout", "--quiet", "--detach", sha, cwd=dest)
    return dest


def created_kinds(result: Any, type_prefix: str, name: str) -> set[str]:
    """Kinds of the Kubernetes objects named `name` whose type token starts with `type_prefix`
    that a synth result registers."""
    return {
        r.type.rpartition(":")[2]
        for r in result.registrations
        if r.type.startswith(type_prefix) and r.inputs["metadata"]["name"] == name
    }
