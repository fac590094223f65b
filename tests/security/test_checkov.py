"""checkov, a third-party IaC scanner, over what the platform deploys: the Kubernetes objects the
Pulumi program creates (a synth of every stack), the objects each Helm release creates (the
synth's rendered charts), argocd-apps as Argo CD builds each app and extra, and the GitHub
workflows. Every finding must be explained in checkov-skips.yaml, and every entry there must
still match a finding."""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from components.argocd import render
from synth import charts
from tests.argocd_apps.support import stack_facts
from tests.conftest import STACKS

REPO = Path(__file__).resolve().parents[2]
CHECKOV = REPO / ".venv" / "checkov" / "bin" / "checkov"
SKIPS = yaml.safe_load((Path(__file__).parent / "checkov-skips.yaml").read_text())
TIMEOUT = 300


def checkov() -> Path:
    if CHECKOV.exists():
        return CHECKOV
    reason = f"{CHECKOV} is missing: make venv installs it (requirements-checkov.txt)"
    if os.environ.get("REQUIRE_ALL_TOOLS") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def scan(folder: Path, framework: str) -> list[tuple[str, str, str]]:
    """(check id, resource, file) of every failed check; raises if checkov itself fails."""
    done = subprocess.run(
        [str(checkov()), "-d", str(folder), "--framework", framework, "--output", "json"]
        + ["--quiet", "--compact", "--skip-download"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        # No telemetry or guideline downloads: the scan runs offline.
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"},
    )
    if done.returncode not in (0, 1) or not done.stdout.strip():
        raise AssertionError(f"checkov exited {done.returncode}:\n{done.stderr[-3000:]}")
    reports = json.loads(done.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    found = []
    for report in reports:
        assert report.get("summary", report)["parsing_errors"] == 0, report
        for failed in report.get("results", {}).get("failed_checks", []):
            found.append((failed["check_id"], failed["resource"], failed["file_path"]))
    return found


def _explained(where: str, check: str, resource: str) -> dict | None:
    for entry in SKIPS:
        if (
            entry["where"] == where
            and entry["check"] == check
            and fnmatch.fnmatchcase(resource, entry["resource"])
        ):
            return entry
    return None


@pytest.fixture(scope="module")
def findings(synth_dirs, tmp_path_factory):
    """where -> findings, each scanned once for every stack; the rendered charts only where the
    chart cache is (test_the_rendered_charts_are_scanned says when they are not)."""
    root = tmp_path_factory.mktemp("checkov")
    cached = charts.chart_folder() is not None
    for stack in STACKS:
        shutil.copytree(synth_dirs[stack] / "manifests", root / "synth" / stack)
        if cached:
            shutil.copytree(synth_dirs[stack] / "rendered", root / "rendered" / stack)
        folder = root / "apps" / stack
        folder.mkdir(parents=True)
        for app, objects in render.render(stack_facts(stack), REPO):
            (folder / f"{app.name}.yaml").write_text(yaml.safe_dump_all(objects))
    # checkov finds workflows by their place in a repository.
    shutil.copytree(REPO / ".github" / "workflows", root / "repo" / ".github" / "workflows")
    found = {
        "synth": scan(root / "synth", "kubernetes"),
        "apps": scan(root / "apps", "kubernetes"),
        "workflows": scan(root / "repo", "github_actions"),
    }
    if cached:
        found["rendered"] = scan(root / "rendered", "kubernetes")
    return found


def test_the_rendered_charts_are_scanned(findings):
    """Without the chart cache the synth writes no rendered/ and their skips go unchecked."""
    if "rendered" in findings:
        return
    reason = f"no chart cache at {charts.cache_dir()}: `make charts` fills it"
    if os.environ.get("REQUIRE_ALL_TOOLS") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def test_every_finding_is_explained(findings):
    unexplained = [
        f"{where}: {check} {resource} ({file})"
        for where, found in findings.items()
        for check, resource, file in found
        if _explained(where, check, resource) is None
    ]
    assert unexplained == [], "\n".join(unexplained)


def test_every_skip_still_matches_a_finding(findings):
    used = {
        id(entry)
        for where, found in findings.items()
        for check, resource, _ in found
        if (entry := _explained(where, check, resource)) is not None
    }
    stale = [
        f"{e['check']} {e['resource']} ({e['where']})"
        for e in SKIPS
        if e["where"] in findings and id(e) not in used
    ]
    assert stale == []


def test_every_skip_says_why():
    for entry in SKIPS:
        assert set(entry) == {"check", "resource", "where", "reason"}, entry
        assert entry["where"] in ("synth", "rendered", "apps", "workflows"), entry
        assert len(entry["reason"]) > 40, entry


def test_the_scanner_finds_what_it_should(tmp_path):
    """A container that may escalate and runs an untagged image is reported: the scan is real."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "loose", "namespace": "shop"},
        "spec": {"containers": [{"name": "app", "image": "nginx"}]},
    }
    (tmp_path / "pod.yaml").write_text(yaml.safe_dump(pod))
    checks = {check for check, resource, _ in scan(tmp_path, "kubernetes")}
    assert {"CKV_K8S_20", "CKV_K8S_43", "CKV_K8S_14"} <= checks
