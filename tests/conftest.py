"""Shared fixtures: the offline synth of every shipped stack, run once per test session."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
STACKS = sorted(p.name.split(".")[1] for p in (REPO / "stacks").glob("Pulumi.*.yaml"))


def require_tool(name: str) -> str:
    """Path of a system tool; skip when it is missing, unless CI demands every tool."""
    path = shutil.which(name)
    if path:
        return path
    if os.environ.get("REQUIRE_ALL_TOOLS") == "1":
        pytest.fail(f"{name} is not installed; .ci/run installs it (apt)")
    pytest.skip(f"{name} is not installed (apt-get install {name}); CI runs this test")


def require_shared(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(
            f"{path} is absent: the shared reference folder only exists beside the project in CI"
        )
    return path


@pytest.fixture(scope="session")
def synth_results():
    """stack name -> SynthResult for every stack in stacks/."""
    from synth.core import synthesize

    return {stack: synthesize(stack) for stack in STACKS}


@pytest.fixture(scope="session")
def synth_dirs(synth_results, tmp_path_factory):
    """stack name -> folder written exactly as `make synth` writes build/synth/<stack>/."""
    from synth.core import write

    root = tmp_path_factory.mktemp("synth")
    dirs = {}
    for stack, result in synth_results.items():
        write(result, root / stack)
        dirs[stack] = root / stack
    return dirs
