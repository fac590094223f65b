"""Shared fixtures of the policy tests."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED = REPO_ROOT / ".." / "shared"


@pytest.fixture(scope="session")
def corpus() -> Path:
    """The upstream checkers' fixtures; forks of the repository don't have them."""
    path = SHARED / "policy-corpus"
    if not (path / "INDEX.json").is_file():
        pytest.skip(
            f"upstream policy corpus not present at {path.resolve()} (shared/ is not part "
            "of the repository)"
        )
    return path
