"""Session fixtures: each kustomize build runs once, and one git daemon serves every Git test."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from components.argocd import gitops, render
from tests.argocd_apps.support import GITOPS_PATH, REPO, STACKS, git, run_kustomize, stack_facts
from tests.conftest import free_port

Objects = list[dict[str, Any]]


@pytest.fixture(scope="session")
def build() -> Callable[[Path], Objects]:
    """Build a kustomization folder, once per session."""
    cache: dict[Path, Objects] = {}

    def _build(folder: Path) -> Objects:
        key = folder.resolve()
        if key not in cache:
            cache[key] = run_kustomize(key)
        return cache[key]

    return _build


@pytest.fixture(scope="session")
def build_app(tmp_path_factory) -> Callable[[gitops.DiscoveredApp, Path], Objects]:
    """What Argo CD applies for a discovered app of a checkout (components/argocd/render.py), with
    the Namespace the Application creates."""
    cache: dict[str, Objects] = {}

    def _build(app: gitops.DiscoveredApp, checkout: Path) -> Objects:
        key = json.dumps([str(checkout.resolve()), app.path, app.kustomize], sort_keys=True)
        if key not in cache:
            cache[key] = render.build(app, checkout, tmp_path_factory.mktemp(app.name))
        return cache[key]

    return _build


@pytest.fixture(scope="session")
def deployed(build_app) -> dict[str, list[tuple[gitops.DiscoveredApp, Objects]]]:
    """stack -> each app the root ApplicationSets generate from this working tree, with the
    objects Argo CD would apply."""
    return {
        stack: [(app, build_app(app, REPO)) for app in gitops.expand(stack_facts(stack), REPO)]
        for stack in STACKS
    }


@dataclass(frozen=True)
class GitServer:
    url: str
    """git://127.0.0.1:<port>/platform.git, holding argocd-apps/ on the branch main."""
    bare: Path
    work: Path

    def publish_branch(self, branch: str, remove: str) -> None:
        """Push `branch`: main without the folder `remove` (relative to the repository root)."""
        git("checkout", "--quiet", "-B", branch, "main", cwd=self.work)
        git("rm", "-r", "--quiet", remove, cwd=self.work)
        git("commit", "--quiet", "-m", f"remove {remove}", cwd=self.work)
        git("push", "--quiet", str(self.bare), branch, cwd=self.work)
        git("checkout", "--quiet", "main", cwd=self.work)


def _wait_for(port: int, daemon: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            raise AssertionError(f"git daemon exited:\n{log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"git daemon did not listen on 127.0.0.1:{port} within 10 s")


@pytest.fixture(scope="session")
def git_server(tmp_path_factory):
    """A real `git daemon` on loopback serving a copy of argocd-apps/ committed on main."""
    if shutil.which("git") is None:
        pytest.fail(
            "git is not installed: the Git wiring tests serve the repository with git daemon"
        )
    root = tmp_path_factory.mktemp("git")
    repos, work = root / "repos", root / "work"
    bare = repos / "platform.git"
    git("init", "--quiet", "--bare", str(bare))
    shutil.copytree(REPO / GITOPS_PATH, work / GITOPS_PATH)
    git("init", "--quiet", cwd=work)
    git("add", ".", cwd=work)
    git("commit", "--quiet", "-m", "argocd-apps", cwd=work)
    git("push", "--quiet", str(bare), "main", cwd=work)
    port = free_port()
    # A file, not a pipe: a long-running daemon must never block on a full pipe.
    log = root / "daemon.log"
    with log.open("w") as stderr:
        daemon = subprocess.Popen(
            [
                "git",
                "daemon",
                "--reuseaddr",
                "--listen=127.0.0.1",
                f"--port={port}",
                f"--base-path={repos}",
                "--export-all",
                "--informative-errors",
                str(repos),
            ],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        _wait_for(port, daemon, log)
        yield GitServer(f"git://127.0.0.1:{port}/platform.git", bare, work)
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)
