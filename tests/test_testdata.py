"""`make test-data`: pinned upstream files into the cache, from the mirror or a real HTTP server."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import testdata


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def upstream(tmp_path) -> Iterator[tuple[str, Path]]:
    """(base URL, served folder): a real HTTP server on 127.0.0.1."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", served
    server.shutdown()
    server.server_close()


def test_downloads_verified_files_and_refuses_changed_ones(tmp_path, upstream):
    base, served = upstream
    (served / "crd.yaml").write_bytes(b"kind: CustomResourceDefinition\n")
    (served / "changed.yaml").write_bytes(b"upstream moved on\n")
    files = [
        testdata.Pinned(
            "crds/x/crd.yaml", _sha(b"kind: CustomResourceDefinition\n"), f"{base}/crd.yaml"
        ),
        testdata.Pinned("crds/x/changed.yaml", _sha(b"what was pinned\n"), f"{base}/changed.yaml"),
        testdata.Pinned("crds/x/gone.yaml", _sha(b""), f"{base}/gone.yaml"),
    ]
    cache = tmp_path / "cache"
    problems = testdata.fetch(files, cache, tmp_path / "no-mirror")
    assert (cache / "crds/x/crd.yaml").read_bytes() == b"kind: CustomResourceDefinition\n"
    assert not (cache / "crds/x/changed.yaml").exists(), "bytes that differ are never stored"
    served_sha, pinned_sha = _sha(b"upstream moved on\n"), _sha(b"what was pinned\n")
    assert problems[0] == f"{base}/changed.yaml: sha256 {served_sha}, pinned {pinned_sha}"
    assert problems[1].startswith(f"{base}/gone.yaml: HTTP Error 404")
    assert len(problems) == 2


def test_the_mirror_is_used_when_its_bytes_match_and_skipped_when_not(tmp_path, upstream):
    base, served = upstream
    mirror = tmp_path / "shared"
    (mirror / "a").mkdir(parents=True)
    (mirror / "a" / "same.json").write_bytes(b"{}")
    (mirror / "a" / "edited.json").write_bytes(b'{"edited": true}')
    (served / "edited.json").write_bytes(b"[]")
    files = [
        # No server file: it can only come from the mirror.
        testdata.Pinned("a/same.json", _sha(b"{}"), f"{base}/missing.json"),
        testdata.Pinned("a/edited.json", _sha(b"[]"), f"{base}/edited.json"),
        testdata.Pinned("a/index.json", _sha(b"{}")),
    ]
    cache = tmp_path / "cache"
    problems = testdata.fetch(files, cache, mirror)
    assert (cache / "a/same.json").read_bytes() == b"{}"
    assert (cache / "a/edited.json").read_bytes() == b"[]", "downloaded after the mirror's mismatch"
    edited_sha = _sha(b'{"edited": true}')
    assert problems == [
        f"{mirror}/a/edited.json: sha256 {edited_sha}, pinned {_sha(b'[]')}",
        f"a/index.json: only in the mirror {mirror}, which does not hold it",
    ]
    assert testdata.fetch(files[:2], cache, tmp_path / "gone") == [], "cached files stay"


def test_the_manifest_pins_every_file_the_mirror_offers_by_commit():
    files = testdata.pinned()
    assert len({f.path for f in files}) == len(files)
    for file in files:
        assert len(file.sha256) == 64
        if file.url:
            assert file.url.startswith("https://raw.githubusercontent.com/"), file.url
            # A commit, not a branch: the bytes behind the URL cannot change.
            assert len(file.url.split("/")[5]) == 40, file.url


def test_a_missing_file_names_the_command(monkeypatch, tmp_path):
    monkeypatch.setenv("GITOPS_TEST_DATA", str(tmp_path))
    reason = testdata.missing_reason("crds", "nothing-here")
    assert "`make test-data` downloads it" in reason and str(tmp_path) in reason
    assert "has no upstream copy" in testdata.missing_reason("policy-corpus", "INDEX.json")
