"""Shared fixtures of the policy tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import require_data

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def corpus() -> Path:
    """The upstream checkers' fixtures with their index (tests/testdata.py)."""
    return require_data("policy-corpus", "INDEX.json").parent
