"""Our own pass/fail fixtures, for the rules upstream checkers have no fixtures for.

`fixtures/fail/<rule>/*.yaml` must make exactly that rule fire (and nothing else); every
`fixtures/pass/**.yaml` must pass every rule. A fixture is Kubernetes YAML, or a descriptor with
`resources` (Pulumi resources: type, name, props, optional id), `manifests` and `stack` (stack
config keys such as `platform:production`). Each starts with a comment saying what it shows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from policy import Manifest, PolicySettings, evaluate
from policy.rules import RULES_BY_ID

FIXTURES = Path(__file__).resolve().parent / "fixtures"
CASES = sorted(FIXTURES.glob("*/*/*.yaml"))
UNCOVERED_UPSTREAM = (
    "graceful-shutdown",
    "pod-security-restricted",
    "read-only-root-filesystem",
    "metadata-address-blocked",
    "apps-off-servers",
    "aws-imdsv2-required",
    "aws-ebs-encrypted",
    "aws-no-public-ssh",
    "aws-imds-hop-limit",
    "aws-s3-customer-key",
    "aws-s3-access-logging",
    "aws-vpc-flow-logs",
    "aws-vpc-default-sg-closed",
    "aws-prod-no-public-ip-on-launch",
    "aws-prod-lb-deletion-protection",
    "aws-kms-key-policy",
    "aws-secret-customer-key",
    "acme-server-per-stack",
    "helm-chart-pinned",
)


def load(path: Path) -> tuple[list[dict[str, Any]], list[Manifest], PolicySettings]:
    documents = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
    first = documents[0]
    if len(documents) == 1 and "kind" not in first:
        resources = [
            {"urn": f"urn:pulumi:fixture::gitops-platform::{r['type']}::{r['name']}", **r}
            for r in first.get("resources", [])
        ]
        manifests = [Manifest(obj, str(path)) for obj in first.get("manifests", [])]
        return resources, manifests, PolicySettings.from_stack_config(first.get("stack", {}))
    return [], [Manifest(obj, str(path)) for obj in documents], PolicySettings()


def case_id(path: Path) -> str:
    return str(path.relative_to(FIXTURES).with_suffix(""))


@pytest.mark.parametrize("path", CASES, ids=case_id)
def test_fixture(path: Path) -> None:
    verdict, rule = path.parent.parent.name, path.parent.name
    assert rule in RULES_BY_ID, f"{path}: folder must be a rule id"
    assert path.read_text(encoding="utf-8").startswith("# "), f"{path}: starts with what it shows"
    resources, manifests, settings = load(path)
    findings = evaluate(resources, manifests, settings)
    if verdict == "fail":
        assert findings, f"{rule} did not fire"
        assert {f.rule for f in findings} == {rule}, [f.to_dict() for f in findings]
    else:
        assert verdict == "pass"
        assert findings == [], [f.to_dict() for f in findings]


@pytest.mark.parametrize("rule", UNCOVERED_UPSTREAM)
def test_rules_without_upstream_fixtures_have_both_verdicts(rule: str) -> None:
    for verdict in ("pass", "fail"):
        assert list((FIXTURES / verdict / rule).glob("*.yaml")), f"no {verdict} fixture for {rule}"
