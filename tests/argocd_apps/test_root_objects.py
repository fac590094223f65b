"""The objects Pulumi creates for Argo CD (components/argocd/gitops.py) and what they generate."""

from __future__ import annotations

import fnmatch
import shutil

import pytest

from components import config as stack_config
from components.argocd import gitops
from tests.argocd_apps.support import GITOPS_PATH, REPO, STACKS, stack_facts
from tests.crd import crd_errors


def test_from_config_takes_the_gitops_section():
    cfg = stack_config.parse(
        {
            "platform:environment": "prod",
            "platform:production": True,
            "platform:target": "existing",
            "platform:local": {"kubeconfig": "~/.kube/config"},
            "platform:tls": {"letsEncrypt": False},
            "platform:gitops": {
                "repoUrl": "git@github.com:acme/fork.git",
                "revision": "v1.2.0",
                "path": "deploy/argocd-apps",
            },
        }
    )
    facts = gitops.PlatformFacts.from_config(
        cfg,
        domain="prod.example.com",
        cluster_issuer="le",
        secret_store="vault",
        vault_addr="https://vault.vault.svc:8200",
    )
    assert (facts.environment, facts.production, facts.repo_url, facts.revision, facts.path) == (
        "prod",
        True,
        "git@github.com:acme/fork.git",
        "v1.2.0",
        "deploy/argocd-apps",
    )
    assert facts.extras == (), "extras are off unless the environment lists them"


def test_cluster_secret_metadata():
    facts = stack_facts("prod", extras=("nodelocaldns",))
    assert gitops.cluster_secret_metadata(facts) == {
        "labels": {
            "argocd.argoproj.io/secret-type": "cluster",
            "environment": "prod",
            "production": "true",
            "enable_nodelocaldns": "true",
        },
        "annotations": {
            "platform_domain": facts.domain,
            "platform_cluster_issuer": "letsencrypt-production",
            "platform_secret_store": "vault",
            "platform_vault_addr": "https://vault.vault.svc:8200",
            "platform_repo_url": facts.repo_url,
            "platform_repo_revision": "main",
            "platform_repo_path": "argocd-apps",
        },
    }


@pytest.mark.parametrize("extras", [("Node_Local",), ("x" * 57,), ("a", "a")])
def test_extra_names_must_make_valid_labels(extras):
    with pytest.raises(ValueError, match="extras"):
        stack_facts("dev", extras=extras)


@pytest.mark.parametrize("stack", STACKS)
def test_root_objects_match_the_pinned_crds_strictly(stack):
    for obj in gitops.root_objects(stack_facts(stack)):
        assert crd_errors(obj) == [], obj["metadata"]["name"]


def test_generated_applications_match_the_application_crd(deployed):
    for stack, apps in deployed.items():
        for app, _ in apps:
            assert crd_errors(dict(app.application)) == [], f"{stack}: {app.name}"


def test_extras_are_off_by_default_and_on_per_environment():
    def names(**overrides):
        return sorted(a.name for a in gitops.expand(stack_facts("dev", **overrides), REPO))

    apps = sorted(p.parent.parent.name for p in (REPO / GITOPS_PATH).glob("apps/*/overlays/dev"))
    assert "hello" in apps and names(extras=()) == apps
    assert names() == sorted(["extra-nodelocaldns", *apps])
    qa = names(extras=("nodelocaldns",), environment="qa")
    assert qa == ["extra-nodelocaldns"], "no app has a qa overlay, so only the extra"


def test_a_wrong_path_or_an_unknown_extra_is_an_error():
    with pytest.raises(gitops.LayoutError, match="argocd-app/apps does not exist"):
        gitops.expand(stack_facts("dev", path="argocd-app"), REPO)
    with pytest.raises(gitops.LayoutError, match=r"extras \['nodelocal'\] are enabled"):
        gitops.expand(stack_facts("dev", extras=("nodelocal",)), REPO)


def test_apps_pattern_is_relative_to_a_nested_path(tmp_path):
    nested = tmp_path / "deploy" / "platform"
    nested.mkdir(parents=True)
    shutil.copytree(REPO / GITOPS_PATH, nested / GITOPS_PATH)
    facts = stack_facts("dev", path=f"deploy/platform/{GITOPS_PATH}", extras=())
    (app,) = [a for a in gitops.expand(facts, tmp_path) if a.name == "hello"]
    assert (app.name, app.namespace, app.path) == (
        "hello",
        "hello",
        "deploy/platform/argocd-apps/apps/hello/overlays/dev",
    )


def test_a_template_with_a_missing_key_is_an_error():
    with pytest.raises(gitops.TemplateError, match="no entry for key 'domian'"):
        gitops.render(
            {"host": "{{.metadata.annotations.domian}}"},
            {"metadata": {"annotations": {"domain": "x"}}},
        )
    with pytest.raises(gitops.TemplateError, match="unsupported"):
        gitops.render("{{ .path.path | upper }}", {"path": {"path": "a"}})


def _permits(project: dict, namespace: str) -> bool:
    """Argo CD's destination check: some allow pattern matches and no '!' pattern does."""
    patterns = [
        d["namespace"]
        for d in project["spec"]["destinations"]
        if d["server"] == gitops.IN_CLUSTER_SERVER
    ]
    allow = [p for p in patterns if not p.startswith("!")]
    deny = [p[1:] for p in patterns if p.startswith("!")]
    return any(fnmatch.fnmatchcase(namespace, p) for p in allow) and not any(
        fnmatch.fnmatchcase(namespace, p) for p in deny
    )


@pytest.mark.parametrize("stack", STACKS)
def test_projects_permit_what_their_apps_deploy_and_nothing_of_the_platform(deployed, stack):
    facts = stack_facts(stack)
    projects = {
        p["metadata"]["name"]: p for p in (gitops.app_project(facts), gitops.extras_project(facts))
    }
    for project in projects.values():
        assert project["spec"]["sourceRepos"] == [facts.repo_url]
    for app, objects in deployed[stack]:
        project = projects[app.application["spec"]["project"]]
        assert _permits(project, app.namespace), f"{app.name} -> {app.namespace}"
        # The Namespace is the one the Application creates (managedNamespaceMetadata).
        placed = {o["metadata"].get("namespace") or o["metadata"]["name"] for o in objects}
        assert placed == {app.namespace}, app.name
    apps = projects[gitops.APPS_PROJECT]
    for namespace in ("kube-system", "argocd", "vault", "cert-manager", "cattle-system"):
        assert not _permits(apps, namespace)
    assert apps["spec"]["clusterResourceWhitelist"] == [{"group": "", "kind": "Namespace"}]
    assert projects[gitops.EXTRAS_PROJECT]["spec"]["clusterResourceWhitelist"] == []
