"""The upstream files some tests read: CRDs, chart schemas and the policy checkers' fixtures.

`tests/testdata.json` pins each file to an upstream URL at a commit and its sha256. `python -m
tests.testdata` (`make test-data`) puts them into the cache (`GITOPS_TEST_DATA`, default
~/.cache/gitops-platform/test-data), taking each from `../shared/` when that offline mirror holds
it with the pinned sha256 and downloading it otherwise; a file whose bytes differ from the pin is
never stored. Files without an upstream copy (`mirrorOnly`) come from the mirror alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MANIFEST = REPO / "tests" / "testdata.json"
MIRROR = REPO.parent / "shared"
FETCH_COMMAND = "make test-data"
DOWNLOAD_TIMEOUT = 60


@dataclass(frozen=True)
class Pinned:
    path: str
    """Where the file goes, relative to the cache (and where the mirror holds it)."""
    sha256: str
    url: str | None = None
    """None for files that exist only in the mirror."""


def cache_dir() -> Path:
    return Path(
        os.environ.get("GITOPS_TEST_DATA")
        or Path.home() / ".cache" / "gitops-platform" / "test-data"
    )


def pinned(manifest: Path = MANIFEST) -> list[Pinned]:
    doc = json.loads(manifest.read_text())
    return [Pinned(f["path"], f["sha256"], f["url"]) for f in doc["files"]] + [
        Pinned(f["path"], f["sha256"]) for f in doc["mirrorOnly"]
    ]


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _store(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    # A half-written file must never look fetched: write beside it, then rename.
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
        tmp.write(data)
    os.replace(tmp.name, target)


def _download(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as answer:
        return answer.read()


def fetch(files: Iterable[Pinned], cache: Path, mirror: Path = MIRROR) -> list[str]:
    """Bring every file into `cache`; the problems, one line per file that could not be."""
    problems = []
    for file in files:
        target = cache / file.path
        if target.is_file() and _digest(target.read_bytes()) == file.sha256:
            continue
        source = mirror / file.path
        if source.is_file():
            data = source.read_bytes()
            if _digest(data) == file.sha256:
                _store(target, data)
                continue
            problems.append(f"{source}: sha256 {_digest(data)}, pinned {file.sha256}")
        if file.url is None:
            problems.append(f"{file.path}: only in the mirror {mirror}, which does not hold it")
            continue
        try:
            data = _download(file.url)
        except OSError as exc:
            problems.append(f"{file.url}: {exc}")
            continue
        if _digest(data) != file.sha256:
            problems.append(f"{file.url}: sha256 {_digest(data)}, pinned {file.sha256}")
            continue
        _store(target, data)
    return problems


def located(*parts: str) -> Path | None:
    """The cached file or folder, else the mirror's, else None."""
    for root in (cache_dir(), MIRROR):
        path = root.joinpath(*parts)
        if path.exists():
            return path
    return None


def missing_reason(*parts: str) -> str:
    wanted = "/".join(parts)
    if any(f.path == wanted and f.url is None for f in pinned()):
        return (
            f"{wanted} has no upstream copy and is neither in {cache_dir()} nor in the mirror "
            f"{MIRROR}: put the mirror there and run `{FETCH_COMMAND}`"
        )
    return (
        f"{'/'.join(parts)} is not in {cache_dir()} (nor in the mirror {MIRROR}): "
        f"`{FETCH_COMMAND}` downloads it from the URLs pinned in tests/testdata.json"
    )


def main() -> int:
    cache = cache_dir()
    files = pinned()
    print(f"test data: {len(files)} files into {cache} (mirror {MIRROR})", flush=True)
    problems = fetch(files, cache)
    for line in problems:
        print(f"test data: {line}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
