"""Shared fixtures: the offline synth of every shipped stack, run once per test session."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from components.vault.bootstrap import WaitTimeout, wait_until
from tests import testdata

REPO = Path(__file__).resolve().parent.parent
STACKS = sorted(p.name.split(".")[1] for p in (REPO / "stacks").glob("Pulumi.*.yaml"))
SERVER_START_TIMEOUT = 20.0
SERVER_STOP_TIMEOUT = 10.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def require_tool(name: str) -> str:
    """Path of a system tool; skip when it is missing, unless CI demands every tool."""
    path = shutil.which(name)
    if path:
        return path
    if os.environ.get("REQUIRE_ALL_TOOLS") == "1":
        pytest.fail(f"{name} is not installed; .ci/run installs it (apt)")
    pytest.skip(f"{name} is not installed (apt-get install {name}); CI runs this test")


def require_data(*parts: str) -> Path:
    """An upstream file or folder the tests read (tests/testdata.py): from the cache, else from
    the ../shared/ mirror; skip with the command that fetches it, unless CI demands everything."""
    path = testdata.located(*parts)
    if path is not None:
        return path
    reason = testdata.missing_reason(*parts)
    if os.environ.get("REQUIRE_ALL_TOOLS") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


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


class MotoServer:
    """`moto_server` (AWS API emulator) on 127.0.0.1.

    The process starts at once and `endpoint` waits for it, so it boots while other fixtures work.
    """

    def __init__(self, log_path: Path):
        self.log_path = log_path
        self.url = f"http://127.0.0.1:{free_port()}"
        self._ready = False
        with log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "moto_server"),
                    "-H",
                    "127.0.0.1",
                    "-p",
                    self.url.split(":")[-1],
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    @property
    def endpoint(self) -> str:
        """The endpoint URL, once the server answers."""
        if not self._ready:

            def probe() -> tuple[bool, str]:
                if self._proc.poll() is not None:
                    raise RuntimeError(f"moto_server exited with status {self._proc.returncode}")
                return requests.get(f"{self.url}/moto-api/", timeout=2).ok, "starting"

            try:
                wait_until(
                    f"moto_server at {self.url}",
                    probe,
                    timeout=SERVER_START_TIMEOUT,
                    progress=print,
                )
            except (WaitTimeout, RuntimeError) as exc:
                log = self.log_path.read_text(errors="replace")[-3000:]
                pytest.fail(f"{exc}\n--- moto_server log ---\n{log}", pytrace=False)
            self._ready = True
        return self.url

    def stop(self) -> None:
        self._proc.kill()
        self._proc.wait(timeout=SERVER_STOP_TIMEOUT)


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer(tmp_path_factory.mktemp("moto") / "moto.log")
    yield server
    server.stop()
