"""The pack's own virtualenv, as `pulumi install` in this folder creates it.

    python3 policy/install.py               # ./policy/venv from policy/requirements.txt
    python3 policy/install.py --cached      # a shared copy, keyed by the requirements' digest

The pack runs in its own virtualenv (PulumiPolicy.yaml `virtualenv: venv`), never in the project's:
that is what a published pack gets, so it is what the tests and `make e2e` run it with. Standard
library only, so it works before any virtualenv exists.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

PACK_DIR = Path(__file__).resolve().parent
REQUIREMENTS = PACK_DIR / "requirements.txt"
READY = ".installed"


class VenvError(RuntimeError):
    pass


def cached_location() -> Path:
    """Where the shared copy lives: one folder per requirements digest."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:16]
    return Path(base) / "gitops-platform" / "policy-venv" / digest


def python_of(folder: Path) -> Path:
    return folder / "bin" / "python"


def ensure(folder: Path) -> Path:
    """The virtualenv at `folder` with the pinned requirements; rebuilt when they changed."""
    wanted = REQUIREMENTS.read_text(encoding="utf-8")
    ready = folder / READY
    if ready.is_file() and ready.read_text(encoding="utf-8") == wanted:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    print(f"policy venv: installing policy/requirements.txt into {folder}", flush=True)
    venv.EnvBuilder(with_pip=True).create(folder)
    proc = subprocess.run(
        [
            str(python_of(folder)),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
            str(REQUIREMENTS),
        ],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-10:])
        shutil.rmtree(folder, ignore_errors=True)
        raise VenvError(f"pip could not install policy/requirements.txt into {folder}:\n{tail}")
    ready.write_text(wanted, encoding="utf-8")
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="policy/install.py", description=__doc__)
    parser.add_argument(
        "--cached", action="store_true", help="build the shared copy in the user's cache"
    )
    args = parser.parse_args(argv)
    try:
        folder = ensure(cached_location() if args.cached else PACK_DIR / "venv")
    except VenvError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
