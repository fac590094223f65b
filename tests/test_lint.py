"""The code style gate: ruff's lint rules and formatter, as configured in pyproject.toml."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

RUFF = Path(sys.executable).with_name("ruff")


def _ruff(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(RUFF), *args, "--exclude", ".venv", "."], cwd=REPO, capture_output=True, text=True
    )


def test_lint_is_clean():
    run = _ruff("check", "--output-format", "concise")
    assert run.returncode == 0, run.stdout


def test_formatting_is_clean():
    run = _ruff("format", "--check")
    assert run.returncode == 0, run.stdout
