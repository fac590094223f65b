"""Conformance with the upstream checkers' own fixtures (`../shared/policy-corpus/`).

Every `exact` entry must give the upstream verdict when only the mapped rule runs with the
upstream run configuration; the table of `stricter`/`looser`/`partial` differences in
docs/policy.md must be the one policy/conformance_table.py generates today.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from policy.conformance_table import (
    COMPARED,
    DOCS,
    END,
    START,
    WHY,
    kube_score_ignore_map,
    load_index,
    mapped_rules,
    render,
    replace_section,
    run_entry,
)
from tests import testdata

INDEX = ("policy-corpus", "INDEX.json")


def exact_entries() -> list[Any]:
    index = testdata.located(*INDEX)
    if index is None:
        # Collection cannot call pytest.skip; the corpus fixture fails instead under CI's demand.
        return [pytest.param(None, marks=pytest.mark.skip(reason=testdata.missing_reason(*INDEX)))]
    entries = [e for e in json.loads(index.read_text())["entries"] if e["relation"] == "exact"]
    return [pytest.param(entry, id=entry["file"]) for entry in entries]


@pytest.mark.parametrize("entry", exact_entries())
def test_exact_entry_agrees_with_upstream(entry: dict[str, Any], corpus: Path) -> None:
    assert mapped_rules(entry), "an exact entry must map to one of our rules"
    outcome = run_entry(entry, corpus, kube_score_ignore_map(load_index(corpus)))
    assert outcome.ours == outcome.upstream, (
        f"{entry['source_tool']} {entry['check_id']} says {entry['expected']}, "
        f"{mapped_rules(entry)} says {outcome.ours}"
    )


def test_docs_table_is_current(corpus: Path) -> None:
    document = DOCS.read_text(encoding="utf-8")
    assert START in document and END in document
    assert replace_section(document, render(corpus)) == document, (
        "docs/policy.md is stale: python -m policy.conformance_table --write docs/policy.md"
    )


def test_every_compared_check_has_an_explanation(corpus: Path) -> None:
    compared = {
        (entry["source_tool"], entry["check_id"])
        for entry in load_index(corpus)["entries"]
        if entry["relation"] in COMPARED and mapped_rules(entry)
    }
    assert set(WHY) == compared
