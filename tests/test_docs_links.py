"""Every relative link in the repository's Markdown points at a file or folder that exists: the
docs name files that move (the policy pack's modules did), and a dead link fails quietly."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LINK = re.compile(r"\]\((?P<target>[^)#\s]+)(?:#[^)]*)?\)")
DOCS = subprocess.run(
    ["git", "ls-files", "*.md"], cwd=REPO, capture_output=True, text=True, check=True
).stdout.split()


def dead_links(path: Path) -> list[str]:
    targets = [m["target"] for m in LINK.finditer(path.read_text(encoding="utf-8"))]
    return [t for t in targets if "://" not in t and not (path.parent / t).exists()]


@pytest.mark.parametrize("doc", DOCS)
def test_relative_links_resolve(doc: str) -> None:
    assert dead_links(REPO / doc) == [], f"{doc} links to missing paths"


def test_a_dead_link_is_found(tmp_path: Path) -> None:
    (tmp_path / "here.md").write_text("x")
    doc = tmp_path / "page.md"
    doc.write_text("[gone](cost/prices.yaml), [ok](here.md#top), [site](https://example.org/x)\n")
    assert dead_links(doc) == ["cost/prices.yaml"]
