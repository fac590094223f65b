"""Day 2 on AWS: agents roll to a new launch template, and the ingress survives a lost zone."""

from __future__ import annotations

import pytest

GROUP = "aws:autoscaling/group:Group"
TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_group_names_the_templates_newest_version(synth_results, stack):
    (group,) = synth_results[stack].of_type(GROUP)
    (template,) = synth_results[stack].of_type(TEMPLATE)
    spec = group.inputs["mixedInstancesPolicy"]["launchTemplate"]["launchTemplateSpecification"]
    # `$Latest` would keep an instance refresh from starting.
    assert spec["version"].isdigit()
    assert template.inputs["updateDefaultVersion"] is True
    refresh = group.inputs["instanceRefresh"]
    assert refresh["strategy"] == "Rolling"
    assert refresh["preferences"]["minHealthyPercentage"] >= 50


def test_agents_behind_the_load_balancer_are_replaced_when_it_sees_them_fail(synth_results):
    (prod,) = synth_results["prod"].of_type(GROUP)
    assert prod.inputs["targetGroupArns"] and prod.inputs["healthCheckType"] == "ELB"
    assert prod.inputs["healthCheckGracePeriod"] >= 300
    (dev,) = synth_results["dev"].of_type(GROUP)
    assert not dev.inputs.get("targetGroupArns") and dev.inputs["healthCheckType"] == "EC2"


def test_dns_records_hold_every_zones_address(tmp_path):
    """Behind the NLB each AZ has its own address; a name on one of them dies with its zone."""
    import yaml

    from synth.core import synthesize
    from tests.conftest import REPO

    values = yaml.safe_load((REPO / "stacks" / "Pulumi.prod.yaml").read_text())
    values["config"]["platform:dns"] = {"domain": "prod.example.org", "hostedZoneId": "Z0123456789"}
    path = tmp_path / "Pulumi.prod.yaml"
    path.write_text(yaml.safe_dump(values))
    result = synthesize("prod", path)
    eips = {e.name: e for e in result.of_type("aws:ec2/eip:Eip") if "-lb-eip-" in e.name}
    assert len(eips) == 3
    records = result.of_type("aws:route53/record:Record")
    assert {r.inputs["name"] for r in records} >= {"argocd.prod.example.org", "*.prod.example.org"}
    for record in records:
        assert len(record.inputs["records"]) == 3 and len(set(record.inputs["records"])) == 3


def test_prod_servers_change_one_at_a_time_and_dev_has_no_member_gate(synth_results):
    from tests.ops.test_server_rollout import program_rollout_order

    assert program_rollout_order(synth_results["prod"]) == [0, 1, 2]
    gates = [r for r in synth_results["prod"].registrations if r.name.endswith("-member")]
    assert len(gates) == 3
    for gate in gates:
        assert gate.inputs["client_key_pem"] == "[secret]"
    (ready,) = [r for r in synth_results["prod"].registrations if r.name.endswith("-ready")]
    assert {g.urn for g in gates} <= set(ready.depends_on)
    assert not [r for r in synth_results["dev"].registrations if r.name.endswith("-member")]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_boot_downloads_carry_the_pinned_digests(synth_dirs, stack):
    import re

    import yaml

    from components import versions

    for path in sorted((synth_dirs[stack] / "cloud-init").glob("*.yaml")):
        files = {f["path"]: f["content"] for f in yaml.safe_load(path.read_text())["write_files"]}
        env = dict(re.findall(r"^(\w+)=(.*)$", files["/etc/platform/boot.env"], re.MULTILINE))
        pins = versions.K3S_BINARY_SHA256[versions.K3S_VERSION]
        assert env["K3S_BINARY_SHA256"] in pins.values(), path.name
        assert env["K3S_BINARY_URL"].startswith(
            "https://github.com/k3s-io/k3s/releases/download/v1.34.10%2Bk3s1/k3s"
        )
        assert env["K3S_INSTALL_SHA256"] == versions.K3S_INSTALL_SCRIPT_SHA256
        assert versions.K3S_INSTALL_SCRIPT_COMMIT in env["K3S_INSTALL_URL"]
