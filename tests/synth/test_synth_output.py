"""The synth's files: the documented shape, identical reruns, no secret anywhere, clear errors."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import yaml

from synth.core import synthesize, write
from tests.conftest import REPO, STACKS

RESOURCE_KEYS = {
    "urn",
    "type",
    "name",
    "parent",
    "custom",
    "provider",
    "dependsOn",
    "protect",
    "inputs",
}


def _tree(folder) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.mark.parametrize("stack", STACKS)
def test_resources_json_shape(synth_dirs, stack):
    import json

    doc = json.loads((synth_dirs[stack] / "resources.json").read_text())
    assert (doc["project"], doc["stack"]) == ("gitops-platform", stack)
    urns = {r["urn"] for r in doc["resources"]}
    for res in doc["resources"]:
        assert set(res) == RESOURCE_KEYS
        assert (
            res["parent"] is None
            or res["parent"] in urns
            or res["parent"].endswith(f"pulumi:pulumi:Stack::gitops-platform-{stack}")
        )
        assert all(dep in urns for dep in res["dependsOn"]), res["urn"]
    assert (synth_dirs[stack] / "graph.dot").read_text().startswith("digraph resources {")


def test_same_config_gives_identical_output(synth_dirs, tmp_path):
    again = synthesize("prod")
    write(again, tmp_path / "prod")
    assert _tree(tmp_path / "prod") == _tree(synth_dirs["prod"])


def test_no_secret_value_in_any_file(synth_results, synth_dirs):
    for stack, result in synth_results.items():
        assert result.secret_values, f"{stack}: the mocks handed out no secret to look for"
        files = _tree(synth_dirs[stack])
        for value in result.secret_values:
            needles = {value} | {
                line for line in value.splitlines() if len(line) >= 32 and "-----" not in line
            }
            for name, content in files.items():
                text = content.decode()
                for needle in needles:
                    assert needle not in text, f"{stack}: a secret value leaks into {name}"


def _synth_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "synth", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_invalid_config_exits_non_zero_with_every_error(tmp_path):
    bad = tmp_path / "Pulumi.broken.yaml"
    bad.write_text(
        "config:\n  aws:region: eu-west-1\n  platform:environment: broken\n"
        "  platform:cluster: {servers: 2, apiAllowedCidrs: [10.0.0.0/8], rootVolumeGb: 5}\n"
        "  platform:gitops: {repoUrl: https://example.com/x.git}\n"
        "  platform:tls: {letsEncrypt: true}\n"
    )
    run = _synth_cli("--stack", "broken", "--stack-file", str(bad), "--out", str(tmp_path / "out"))
    assert run.returncode == 2
    for key in ("platform:cluster.servers", "platform:cluster.rootVolumeGb"):
        assert key in run.stderr
    assert not (tmp_path / "out").exists(), "nothing may be written for an invalid config"


def test_a_mandatory_guardrail_finding_fails_the_synth(tmp_path):
    """The synth is the gate: what the policy pack would block fails `make synth`, one line each."""
    text = (REPO / "stacks" / "Pulumi.dev.yaml").read_text()
    over = tmp_path / "Pulumi.dev.yaml"
    over.write_text(re.sub(r"platform:monthlyBudgetUsd: \S+", "platform:monthlyBudgetUsd: 5", text))
    run = _synth_cli("--stack", "dev", "--stack-file", str(over), "--out", str(tmp_path / "out"))
    assert run.returncode == 1
    lines = [line for line in run.stderr.splitlines() if line.startswith("synth: ")]
    assert len(lines) == 1 and lines[0].startswith("synth: cost-within-budget: ")
    assert "above its budget of $5.00" in lines[0] and "(fix: " in lines[0]
    assert (tmp_path / "out" / "policy.json").exists(), "the files are written all the same"


def test_a_stack_file_alone_names_its_stack(tmp_path):
    run = _synth_cli(
        "--stack-file", str(REPO / "stacks" / "Pulumi.local.yaml"), "--out", str(tmp_path)
    )
    assert run.returncode == 0 and run.stdout.startswith("synth: local: ")


def test_unknown_stack_names_the_known_ones():
    run = _synth_cli("--stack", "nope")
    assert run.returncode == 2 and "stacks in stacks/: dev, local, prod" in run.stderr


def test_summary_groups_by_component(synth_dirs):
    text = (synth_dirs["prod"] / "summary.txt").read_text()
    assert text.startswith("gitops-platform/prod: ")
    assert "\nplatform:k3s:Cluster gitops-platform-prod\n" in text
    assert "    3  aws:ec2/instance:Instance" in text


def test_graph_svg_is_rendered(synth_dirs):
    from tests.conftest import require_tool

    require_tool("dot")
    import html

    svg = html.unescape((synth_dirs["dev"] / "graph.svg").read_text())
    # Labels inside a component's cluster drop its name: the cluster says it.
    assert svg.lstrip().startswith("<?xml") and ">server-0<" in svg
    assert "gitops-platform/dev: " in svg and "cluster_" in svg


def test_mocks_refuse_names_aws_refuses():
    from synth.mocks import check_name_limits

    with pytest.raises(ValueError, match="longer than AWS allows"):
        check_name_limits("aws:lb/targetGroup:TargetGroup", "gitops-platform-prod-tg-6443", {})
    with pytest.raises(ValueError, match="over 37 characters"):
        check_name_limits("aws:s3/bucket:Bucket", "b", {"bucketPrefix": "x" * 38})
    check_name_limits(
        "aws:lb/targetGroup:TargetGroup",
        "gitops-platform-prod-tg-6443",
        {"name": "k3s-0123abcd-6443"},
    )
    tg = "aws:lb/targetGroup:TargetGroup"
    check_name_limits(tg, "gitops-platform-prod-tg-6443", {"namePrefix": "tg6443"})
    with pytest.raises(ValueError, match="name_prefix 'tg64430' is longer than AWS allows"):
        check_name_limits(tg, "gitops-platform-prod-tg-6443", {"namePrefix": "tg64430"})


def test_target_groups_can_be_replaced_before_they_are_deleted(synth_results):
    """Fixed names would make create-before-delete collide; prefixes let AWS add a suffix."""
    groups = synth_results["prod"].of_type("aws:lb/targetGroup:TargetGroup")
    assert len(groups) == 3
    assert all("name" not in g.inputs and len(g.inputs["namePrefix"]) <= 6 for g in groups)


def test_long_stack_names_still_fit_aws_limits(tmp_path):
    import yaml

    values = yaml.safe_load((REPO / "stacks" / "Pulumi.prod.yaml").read_text())
    path = tmp_path / "Pulumi.production-eu-central.yaml"
    path.write_text(yaml.safe_dump(values))
    result = synthesize("production-eu-central", path)
    prefixes = [b.inputs["bucketPrefix"] for b in result.of_type("aws:s3/bucket:Bucket")]
    assert len(set(prefixes)) == 2 and all(len(p) <= 37 for p in prefixes)
    (lb,) = result.of_type("aws:lb/loadBalancer:LoadBalancer")
    assert len(lb.inputs["name"]) <= 32


@pytest.mark.parametrize("stack", ["dev", "local"])
def test_secrets_show_their_keys_not_their_values(synth_dirs, stack):
    repo = yaml.safe_load(
        (synth_dirs[stack] / "manifests" / "secret-argocd-gitops-repo.yaml").read_text()
    )
    assert repo["stringData"] == {"type": "[secret]", "url": "[secret]"}
