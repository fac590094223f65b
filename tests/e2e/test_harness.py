"""The e2e harness and its tools: one version matrix, and one clear line for every bad input.

The e2e run itself is `make e2e` (CI runs it after `make test`); these tests check what can go
wrong before or around it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from components import versions
from e2e import cluster as control_plane
from e2e.tools import build

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / "e2e" / "tools"


def _requires(path: Path) -> dict[str, str]:
    """module -> version of every require line of a go.mod."""
    text = path.read_text()
    return dict(re.findall(r"^\s*(?:require\s+)?(\S+) (v\S+)(?: // indirect)?$", text, re.M))


def _pin(requirement: str) -> str:
    text = (REPO / "requirements.txt").read_text()
    return re.search(rf"^{re.escape(requirement)}==(\S+)$", text, re.M)[1]


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.lstrip("v").split("."))


def test_the_cli_serves_the_python_sdk_pin():
    mods = _requires(TOOLS / "pulumi" / "go.mod")
    cli = f"v{versions.PULUMI_CLI_VERSION}"
    assert mods["github.com/pulumi/pulumi/pkg/v3"] == cli
    assert mods["github.com/pulumi/pulumi/sdk/v3"] == cli
    assert _version(versions.PULUMI_CLI_VERSION) >= _version(_pin("pulumi"))


def test_the_kubernetes_provider_is_the_sdk_pin():
    mods = _requires(TOOLS / "kubernetes-provider" / "go.mod")
    module = mods["github.com/pulumi/pulumi-kubernetes/provider/v4"]
    assert module == versions.KUBERNETES_PROVIDER_MODULE_VERSION
    assert _pin("pulumi-kubernetes") == versions.KUBERNETES_PROVIDER_VERSION


def test_the_control_plane_is_the_k3s_release():
    gomod = (TOOLS / "cluster" / "go.mod").read_text()
    release = versions.kubernetes_release()
    assert release == versions.K3S_VERSION.split("+")[0]
    assert re.search(rf"k8s.io/kubernetes {re.escape(release)}\b", gomod)
    staging = re.findall(r"^\s*(k8s\.io/\S+) => (\S+) (v\S+)$", gomod, re.M)
    assert len(staging) > 25
    expected = "v0." + release.removeprefix("v1.")
    assert {(m, v) for m, target, v in staging if m == target} == {
        (m, expected) for m, *_ in staging
    }


def test_kwok_is_pinned():
    assert _requires(TOOLS / "kwok" / "go.mod")["sigs.k8s.io/kwok"] == versions.KWOK_VERSION


def test_a_pin_change_names_a_new_cache_folder(monkeypatch):
    before = build.inputs_digest()
    monkeypatch.setattr(versions, "KWOK_VERSION", "v9.9.9")
    assert build.inputs_digest() != before


def _run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )


def test_a_missing_tools_cache_is_one_line(tmp_path):
    env = {**os.environ, "E2E_TOOLS_CACHE": str(tmp_path / "empty")}
    check = _run("-m", "e2e.tools.build", "--check", env=env)
    assert check.returncode == 1
    assert check.stderr.count("\n") == 1 and "run `make e2e-tools`" in check.stderr
    e2e = _run("-m", "e2e", "--workdir", str(tmp_path / "work"), env=env)
    assert e2e.returncode == 2
    assert e2e.stderr.count("\n") == 1 and "make e2e-tools" in e2e.stderr
    assert "Traceback" not in e2e.stderr + e2e.stdout


def test_a_port_in_use_is_named(tmp_path):
    with socket.socket() as taken:
        # When something else already holds the port, the check must name it all the same.
        with contextlib.suppress(OSError):
            taken.bind(("0.0.0.0", control_plane.API_PORT))
        taken.listen()
        cluster = control_plane.Cluster(tmp_path, tmp_path, [], log=lambda _m: None)
        with pytest.raises(control_plane.ClusterError, match=r"port \d+ is already in use"):
            cluster.start()
    assert not cluster.processes


def test_wait_for_reports_progress_and_names_what_it_waited_for(monkeypatch):
    clock = iter(range(0, 1000, 3))
    monkeypatch.setattr(control_plane.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(control_plane.time, "sleep", lambda _s: None)
    notes: list[str] = []
    with pytest.raises(
        control_plane.ClusterError, match="timed out after 20 s waiting for the moon"
    ):
        control_plane.wait_for("the moon", lambda: False, 20, notes.append)
    assert notes and all("still waiting for the moon" in n for n in notes)


needs_netns = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None,
    reason="needs root and iproute2 for a network namespace (CI runs as root)",
)


@needs_netns
def test_a_control_plane_that_does_not_come_up_is_cleaned_up(tmp_path):
    """A broken kube-apiserver: one error line, no process left, no namespace left."""
    cache = tmp_path / "cache"
    env = {**os.environ, "E2E_TOOLS_CACHE": str(cache)}
    tools = cache / build.inputs_digest()
    tools.mkdir(parents=True)
    for name in build.BINARIES:
        script = tools / name
        script.write_text("#!/bin/sh\necho 'boom: flag provided but not defined'\nexit 3\n")
        script.chmod(0o755)
    (tools / "etcd").write_text("#!/bin/sh\nexec sleep 120\n")
    (tools / build.COMPLETE).write_text("0\n")
    charts = tmp_path / "charts"
    charts.mkdir()
    crds = tmp_path / "crds"
    crds.mkdir()
    (crds / "traefik.io_none.yaml").write_text("")
    env |= {"E2E_CHARTS": str(charts), "E2E_TRAEFIK_CRDS": str(crds)}
    before = set(
        subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    )
    work = tmp_path / "work"
    proc = _run("-m", "e2e", "--workdir", str(work), env=env)
    assert proc.returncode == 1
    assert "e2e FAILED: kube-apiserver exited with code 3" in proc.stdout
    assert "boom" in proc.stdout and "Traceback" not in proc.stdout + proc.stderr
    after = set(
        subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    )
    assert not {n for n in after - before if n.startswith("gitops-e2e-")}
    leftover = subprocess.run(["pgrep", "-f", str(work)], capture_output=True, text=True).stdout
    assert leftover == ""
    assert '"error": "kube-apiserver exited with code 3' in (work / "report.json").read_text()


def test_change_counts_are_read_from_the_cli_summary():
    from e2e.__main__ import preview_changes

    output = "Previewing\nResources:\n    + 38 to create\n    ~ 2 to update\n    5 unchanged\n"
    assert preview_changes(output) == {"create": 38, "update": 2, "same": 5}
    assert preview_changes("no summary at all") == {}
