"""`make policy` (python -m synth.apps) over a second app copied as argocd-apps/README.md says."""

from __future__ import annotations

import io
import shutil

import yaml

from synth import apps as apps_check
from tests.argocd_apps.support import GITOPS_PATH, REPO


def _fork_with_app(tmp_path, name: str):
    shutil.copytree(REPO / GITOPS_PATH, tmp_path / GITOPS_PATH)
    shutil.copytree(REPO / "stacks", tmp_path / "stacks")
    apps = tmp_path / GITOPS_PATH / "apps"
    shutil.copytree(apps / "hello", apps / name)
    for path in (apps / name).rglob("*.yaml"):
        path.write_text(path.read_text().replace("hello", name))
    return apps / name


def test_a_copied_app_passes_beside_the_reference_app(tmp_path):
    _fork_with_app(tmp_path, "shop")
    out = io.StringIO()
    assert apps_check.check_stack("prod", out, tmp_path) == 0, out.getvalue()
    assert "2 apps" in out.getvalue()


def test_an_app_without_security_context_is_reported_with_the_fix(tmp_path):
    app = _fork_with_app(tmp_path, "shop")
    deployment = app / "base" / "deployment.yaml"
    doc = yaml.safe_load(deployment.read_text())
    pod = doc["spec"]["template"]["spec"]
    del pod["securityContext"]
    for container in pod["containers"]:
        del container["securityContext"]
    deployment.write_text(yaml.safe_dump(doc))
    out = io.StringIO()
    assert apps_check.check_stack("dev", out, tmp_path) == 1
    report = out.getvalue()
    assert "Deployment/shop/shop  (argocd-apps/apps/shop/overlays/dev)" in report
    assert "pod-security-restricted" in report and "read-only-root-filesystem" in report
    assert "How to fix:\n  pod-security-restricted: Set on the pod securityContext" in report


def test_the_cli_checks_every_stack(capsys):
    assert apps_check.main([]) == 0
    assert capsys.readouterr().out.count("== ") == len(list((REPO / "stacks").glob("*.yaml")))


def test_every_app_namespace_gets_the_platform_egress_baseline(tmp_path):
    _fork_with_app(tmp_path, "shop")
    component = tmp_path / GITOPS_PATH / "projects" / "app-namespace" / "kustomization.yaml"
    doc = yaml.safe_load(component.read_text())
    doc["resources"] = []
    component.write_text(yaml.safe_dump(doc))
    out = io.StringIO()
    assert apps_check.check_stack("dev", out, tmp_path) == 1
    report = out.getvalue()
    for app in ("hello", "shop"):
        assert f"Namespace/{app}" in report and f"namespace {app} has no egress" in report


def test_an_app_policy_that_reopens_the_metadata_address_is_reported(tmp_path):
    app = _fork_with_app(tmp_path, "shop")
    (app / "base" / "open-egress.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {"name": "open-egress"},
                "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{}]},
            }
        )
    )
    kustomization = app / "base" / "kustomization.yaml"
    doc = yaml.safe_load(kustomization.read_text())
    doc["resources"].append("open-egress.yaml")
    kustomization.write_text(yaml.safe_dump(doc))
    out = io.StringIO()
    assert apps_check.check_stack("prod", out, tmp_path) == 1
    assert "NetworkPolicy open-egress: an egress rule without `to` allows every address" in (
        out.getvalue()
    )
