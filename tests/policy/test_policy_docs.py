"""policy/README.md documents every rule with its default enforcement and every threshold."""

from __future__ import annotations

import re

from policy.rules import RULES
from tests.policy.conftest import REPO_ROOT

README = (REPO_ROOT / "policy" / "README.md").read_text(encoding="utf-8")
ROW = re.compile(r"^\| `(?P<rule>[a-z0-9-]+)` \| (?P<second>[^|]+) \|", re.MULTILINE)


def section(title: str) -> str:
    return README.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_rules_table_matches_the_registry() -> None:
    rows = {m["rule"]: m["second"].strip() for m in ROW.finditer(section("Rules"))}
    assert list(rows) == [rule.id for rule in RULES]
    for rule in RULES:
        assert rows[rule.id].startswith(rule.enforcement.value), rule.id


def test_every_threshold_is_documented() -> None:
    documented = {
        (m["rule"], key.strip(" `"))
        for m in ROW.finditer(section("Configuration"))
        for key in m["second"].split(",")
    }
    expected = {
        (rule.id, field.alias or name)
        for rule in RULES
        for name, field in rule.params.model_fields.items()
    }
    assert documented == expected
