"""The Git wiring end to end: a real git daemon serves argocd-apps/, and the repository URL,
revision and path the Pulumi side writes are cloned, expanded and built as Argo CD would."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from components.argocd import gitops
from synth.core import kubernetes_objects, synthesize
from tests.argocd_apps.support import (
    STACKS,
    RevisionNotFound,
    checkout,
    required_environments,
    stack_config_values,
    stack_facts,
)


def git_sources(application_sets: list[dict]) -> set[tuple[str, str]]:
    """(repoURL, revision) of every git generator and template source: what Argo CD fetches."""
    found = set()
    for appset in application_sets:
        source = appset["spec"]["template"]["spec"]["source"]
        found.add((source["repoURL"], source["targetRevision"]))
        for generator in appset["spec"]["generators"]:
            for child in generator["matrix"]["generators"]:
                if "git" in child:
                    found.add((child["git"]["repoURL"], child["git"]["revision"]))
    return found


def expected_apps(checkout_dir: Path, facts: gitops.PlatformFacts) -> list[str]:
    apps = checkout_dir / facts.path / gitops.APPS_DIR
    return sorted(
        [p.name for p in apps.iterdir() if (p / gitops.OVERLAYS_DIR / facts.environment).is_dir()]
        + [gitops.EXTRA_APP_PREFIX + e for e in facts.extras]
    )


@pytest.mark.parametrize("stack", STACKS)
def test_each_stack_clones_expands_and_builds_its_apps(git_server, build_app, tmp_path, stack):
    facts = stack_facts(stack, repo_url=git_server.url)
    application_sets = [o for o in gitops.root_objects(facts) if o["kind"] == "ApplicationSet"]
    ((url, revision),) = git_sources(application_sets)
    assert (url, revision) == (git_server.url, facts.revision)
    cloned = checkout(url, revision, tmp_path / "checkout")
    apps = gitops.expand(facts, cloned)
    assert sorted(a.name for a in apps) == expected_apps(cloned, facts)
    assert "hello" in {a.name for a in apps}
    for app in apps:
        assert app.application["spec"]["source"]["repoURL"] == git_server.url
        assert build_app(app, cloned), f"{app.name} builds nothing"


def test_a_wrong_path_fails(git_server, tmp_path):
    cloned = checkout(git_server.url, "main", tmp_path / "checkout")
    with pytest.raises(gitops.LayoutError, match="points at no argocd-apps folder"):
        gitops.expand(stack_facts("dev", repo_url=git_server.url, path="argocd-app"), cloned)


def test_a_missing_overlay_skips_the_app_and_is_reported(git_server, tmp_path):
    git_server.publish_branch("no-prod-overlay", "argocd-apps/apps/hello/overlays/prod")
    facts = stack_facts("prod", repo_url=git_server.url, revision="no-prod-overlay")
    cloned = checkout(facts.repo_url, facts.revision, tmp_path / "checkout")
    assert "hello" not in {a.name for a in gitops.expand(facts, cloned)}
    missing = gitops.missing_overlays(cloned, facts.path, required_environments())
    assert missing == ["hello/overlays/prod"]


def test_a_revision_that_does_not_exist_fails_clearly(git_server, tmp_path):
    with pytest.raises(RevisionNotFound, match="revision 'release-9' does not exist in git://"):
        checkout(git_server.url, "release-9", tmp_path / "checkout")
    assert not (tmp_path / "checkout").exists()


@pytest.mark.parametrize("stack", STACKS)
def test_the_synthesized_program_points_argo_cd_at_the_served_repo(
    git_server, build_app, tmp_path, stack
):
    """The synth of each stack, pointed at the daemon, yields the repository and cluster Secrets
    and ApplicationSets whose repository, revision and path clone, expand and build."""
    values = stack_config_values(stack)
    values["platform:gitops"] = {**values["platform:gitops"], "repoUrl": git_server.url}
    stack_file = tmp_path / f"Pulumi.{stack}.yaml"
    stack_file.write_text(yaml.safe_dump({"config": values}))
    registrations = [reg for reg, _ in kubernetes_objects(synthesize(stack, stack_file))]
    # Secret data is secret in the synth's files; the in-memory record holds what was sent.
    objects = [reg.plain_inputs for reg in registrations]
    secrets = {
        s["metadata"]["labels"].get(gitops.SECRET_TYPE_LABEL): s
        for s in objects
        if s.get("kind") == "Secret"
    }
    assert {"repository", "cluster"} <= secrets.keys()
    application_sets = [o for o in objects if o.get("kind") == "ApplicationSet"]
    ((url, revision),) = git_sources(application_sets)
    assert url == secrets["repository"]["stringData"]["url"] == git_server.url
    cloned = checkout(url, revision, tmp_path / "checkout")
    apps = gitops.expand_application_sets(application_sets, secrets["cluster"]["metadata"], cloned)
    assert "hello" in {a.name for a in apps}
    for app in apps:
        assert build_app(app, cloned), f"{app.name} builds nothing"
