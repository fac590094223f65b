"""The layout of argocd-apps/: what the root ApplicationSets discover and what each folder holds."""

from __future__ import annotations

import shutil

import pytest
import yaml

from components.argocd import gitops
from tests.argocd_apps.support import (
    GITOPS_PATH,
    REPO,
    kustomization_folders,
    required_environments,
)

APPS = REPO / GITOPS_PATH / gitops.APPS_DIR


@pytest.mark.parametrize(
    "folder", kustomization_folders(), ids=lambda p: str(p.relative_to(REPO / GITOPS_PATH))
)
def test_every_kustomization_builds(build, folder):
    assert build(folder), f"{folder} builds no objects"


def test_every_folder_has_a_readme():
    root = REPO / GITOPS_PATH
    folders = [
        root,
        *(p for p in root.iterdir() if p.is_dir()),
        *(p for p in APPS.iterdir() if p.is_dir()),
    ]
    missing = [str(f.relative_to(REPO)) for f in folders if not (f / "README.md").is_file()]
    assert not missing, f"folders without a README.md: {missing}"


def test_every_app_has_an_overlay_for_every_stack():
    assert {"dev", "prod", "local"} <= set(required_environments())
    assert gitops.missing_overlays(REPO, GITOPS_PATH, required_environments()) == []


def test_a_missing_overlay_is_reported(tmp_path):
    shutil.copytree(REPO / GITOPS_PATH, tmp_path / GITOPS_PATH)
    shutil.rmtree(tmp_path / GITOPS_PATH / gitops.APPS_DIR / "hello" / gitops.OVERLAYS_DIR / "prod")
    missing = gitops.missing_overlays(tmp_path, GITOPS_PATH, required_environments())
    assert missing == ["hello/overlays/prod"]


@pytest.mark.parametrize(
    "overlay",
    sorted(APPS.glob(f"*/{gitops.OVERLAYS_DIR}/*")),
    ids=lambda p: f"{p.parts[-3]}-{p.name}",
)
def test_overlays_add_nothing_but_patches_to_the_base(overlay):
    kustomization = yaml.safe_load((overlay / "kustomization.yaml").read_text())
    assert kustomization["resources"] == ["../../base"], (
        "an overlay patches its base; new objects go in base/"
    )
    assert not {"components", "namespace", "namePrefix", "nameSuffix"} & kustomization.keys()


def test_root_objects_have_one_owner():
    """Pulumi creates the AppProjects and ApplicationSets (components/argocd/gitops.py); a copy in
    Git would be a second owner fighting over them."""
    owned = {"AppProject", "ApplicationSet", "Application"}
    found = [
        str(path.relative_to(REPO))
        for path in (REPO / GITOPS_PATH).rglob("*.yaml")
        for doc in yaml.safe_load_all(path.read_text())
        if isinstance(doc, dict) and doc.get("kind") in owned
    ]
    assert not found, f"Argo CD root objects kept in Git: {found}"
