"""A seeded fuzz of the stack-file readers: the synth and cost loader, the config model and
`policy.check --stack` answer every mutant of the shipped stack files with a valid config or one
clean line per problem, quickly, naming the file and never a secret."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from pathlib import Path

import pytest

import synth.core
from components import config
from cost.__main__ import main as cost_main
from policy.check import main as check_main
from policy.stack_file import ConfigError, load
from tests.config.mutations import MARKER, mutants

SEED = 20_260_601
CASES = 400
REPO = Path(__file__).resolve().parents[2]


def assert_clean(lines: list[str], path: Path, prefix: str = "") -> None:
    assert lines
    for line in lines:
        assert line.startswith(f"{prefix}{path}"), line
        assert MARKER not in line, line
        assert line.isprintable() and len(line) < 600, line


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("manifests") / "cm.yaml"
    path.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: y}\n")
    return path


def test_every_mutant_is_accepted_or_rejected_cleanly(tmp_path: Path, manifest: Path):
    kinds = {"accepted": 0, "rejected": 0}
    start = time.monotonic()
    for name, data in mutants(SEED, CASES):
        path = tmp_path / f"Pulumi.{name}.yaml"
        path.write_bytes(data)
        case_start = time.monotonic()
        try:
            config.from_stack_file(load(path))
            kinds["accepted"] += 1
        except ConfigError as exc:
            kinds["rejected"] += 1
            assert_clean(exc.lines(), path)
        stderr = io.StringIO()
        sys.stderr, saved = stderr, sys.stderr
        try:
            status = check_main([str(manifest), "--stack", str(path)], stdout=io.StringIO())
        finally:
            sys.stderr = saved
        if status == 2:
            assert_clean(stderr.getvalue().splitlines(), path, "error: ")
        assert time.monotonic() - case_start < 5, name
    assert kinds["rejected"] > CASES / 2 and kinds["accepted"] > 0, kinds
    assert time.monotonic() - start < 120


def rejected(folder: Path, seed: int, count: int) -> list[Path]:
    """The mutants the config model rejects, written to `folder`."""
    paths = []
    for name, data in mutants(seed, count):
        path = folder / f"Pulumi.{name}.yaml"
        path.write_bytes(data)
        try:
            config.from_stack_file(load(path))
        except ConfigError:
            paths.append(path)
    return paths


def test_cost_reports_a_hostile_stack_file_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    paths = rejected(tmp_path, SEED + 1, 40)
    monkeypatch.setattr(synth.core, "stack_file", lambda stack: paths[int(stack)])
    for i, path in enumerate(paths):
        assert cost_main(["--stack", str(i)]) == 2
        assert_clean(capsys.readouterr().err.splitlines(), path, "cost: ")


def test_the_synth_cli_prints_lines_not_tracebacks(tmp_path: Path):
    by_kind = {path.stem.rsplit("-", 1)[1]: path for path in rejected(tmp_path, SEED, 40)}
    for path in by_kind.values():
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "synth",
                # Named here: a mutant's file name can be longer than a stack name may be.
                "--stack",
                "fuzz",
                "--stack-file",
                str(path),
                "--out",
                str(tmp_path / "out"),
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 2, run.stderr
        assert_clean(run.stderr.splitlines(), path, "synth: ")
