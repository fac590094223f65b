"""The Vault pod's TLS reloader, run for real: it signals the server only when the certificate
changes (the server re-reads its listener certificate on SIGHUP)."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from components import versions
from components.platform.vault import FLAVORS, Flavor, tls_reloader

SHELLCHECK = Path(sys.executable).with_name("shellcheck")


def test_the_script_is_clean_shell(tmp_path):
    script = tls_reloader(FLAVORS["vault"])["command"][2]
    path = tmp_path / "reloader.sh"
    path.write_text("#!/bin/sh\n" + script)
    run = subprocess.run([str(SHELLCHECK), str(path)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout


def _wait(proc: subprocess.Popen, seconds: float) -> int | None:
    try:
        return proc.wait(seconds)
    except subprocess.TimeoutExpired:
        return None


def test_a_renewed_certificate_makes_the_server_reload(tmp_path):
    # A stand-in server process with a name of its own, so nothing else on the machine matches.
    name = f"srv{int(time.time() * 1000) % 10**9}"
    binary = tmp_path / name
    shutil.copy("/bin/sleep", binary)
    server = subprocess.Popen([str(binary), "30"])
    cert = tmp_path / "tls.crt"
    cert.write_text("first certificate")
    flavor = Flavor("vault", versions.VAULT, "VAULT", name)
    container = tls_reloader(flavor, cert=str(cert), interval=0.1)
    reloader = subprocess.Popen(container["command"])
    try:
        assert _wait(server, 0.6) is None, "the server was signalled without a new certificate"
        cert.write_text("renewed certificate")
        assert _wait(server, 3) == -signal.SIGHUP
    finally:
        reloader.kill()
        server.kill()
        reloader.wait(5)
        server.wait(5)


def test_both_flavors_run_it_beside_the_server():
    from components.platform.vault import VaultArgs, release_values

    for flavor in ("vault", "openbao"):
        server = release_values(VaultArgs(flavor=flavor), None)["server"]
        assert server["shareProcessNamespace"] is True
        (container,) = server["extraContainers"]
        assert f"pkill -HUP -x {FLAVORS[flavor].binary}" in container["command"][2]
