"""The NAT instance (`platform:network.natGateways: instance`): a hardened t4g.nano the private
subnets route through instead of a NAT gateway, priced by the estimate; its user data is valid
cloud-config and its nftables ruleset loads."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

from components.network import NAT_INSTANCE_TYPE, nat_user_data
from cost.levers import merged
from policy.cost import catalogue
from policy.stack_file import load
from synth.core import cost_of, policy_findings, stack_file, synthesize
from tests.conftest import require_tool

INSTANCE = "aws:ec2/instance:Instance"


@pytest.fixture(scope="module")
def prod_with_nat_instance():
    values = merged(
        load(stack_file("prod")).values, {"platform:network": {"natGateways": "instance"}}
    )
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "Pulumi.prod.yaml"
        path.write_text(yaml.safe_dump({"config": values}))
        return synthesize("prod", path)


def _nat(result):
    (nat,) = [i for i in result.of_type(INSTANCE) if i.inputs["tags"].get("platform:role") == "nat"]
    return nat


def test_private_subnets_route_through_the_nat_instance(prod_with_nat_instance):
    result = prod_with_nat_instance
    assert not result.of_type("aws:ec2/natGateway:NatGateway")
    nat = _nat(result)
    public = {
        s.id
        for s in result.of_type("aws:ec2/subnet:Subnet")
        if s.inputs["tags"]["platform:subnet"] == "public"
    }
    assert nat.inputs["subnetId"] in public and nat.inputs["associatePublicIpAddress"] is True
    private = [t for t in result.of_type("aws:ec2/routeTable:RouteTable") if "private" in t.name]
    targets = {r.get("networkInterfaceId") for t in private for r in t.inputs["routes"]}
    assert len(private) == 3 and len(targets) == 1 and targets.pop().startswith("eni-")


def test_the_nat_instance_is_hardened(prod_with_nat_instance):
    result = prod_with_nat_instance
    nat = _nat(result)
    assert nat.inputs["instanceType"] == NAT_INSTANCE_TYPE
    assert nat.inputs["sourceDestCheck"] is False
    assert nat.inputs["metadataOptions"]["httpTokens"] == "required"
    assert nat.inputs["metadataOptions"]["httpPutResponseHopLimit"] == 1
    assert nat.inputs["rootBlockDevice"]["encrypted"] is True
    assert not nat.inputs.get("keyName") and not nat.inputs.get("iamInstanceProfile")
    (sg_id,) = nat.inputs["vpcSecurityGroupIds"]
    ingress = [
        r.inputs
        for r in result.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
        if r.inputs["securityGroupId"] == sg_id
    ]
    assert [r["cidrIpv4"] for r in ingress] == [result.config.network.vpc_cidr]
    assert not [f.to_dict() for f in policy_findings(result) if f.rule.startswith("aws-")]


def test_the_estimate_prices_the_instance_instead_of_the_gateway(
    prod_with_nat_instance, synth_results
):
    prices = catalogue.table()["regions"]["us-east-1"]
    lines = {line["item"]: line for line in cost_of(prod_with_nat_instance)["lines"]}
    assert lines[f"EC2 {NAT_INSTANCE_TYPE} (NAT instance)"]["quantity"] == 1
    assert lines["public IPv4 of the NAT instance"]["quantity"] == 1
    assert "NAT gateways" not in lines
    gateway = (prices["nat_gateway_hourly"] + prices["public_ipv4_hourly"]) * 730
    instance = (
        prices["instance_hourly"][NAT_INSTANCE_TYPE] + prices["public_ipv4_hourly"]
    ) * 730 + 8 * prices["ebs_gp3_gb_month"]
    shipped = cost_of(synth_results["prod"])["monthlyTotal"]
    assert cost_of(prod_with_nat_instance)["monthlyTotal"] == pytest.approx(
        shipped - gateway + instance, abs=0.03
    )


def test_every_priced_region_prices_the_nat_instance():
    for region in catalogue.regions():
        assert NAT_INSTANCE_TYPE in catalogue.table()["regions"][region]["instance_hourly"]
    assert not catalogue.instance_types()[NAT_INSTANCE_TYPE].node
    assert NAT_INSTANCE_TYPE not in catalogue.priced_types("us-east-1"), "too small for a node"


def _ruleset(user_data: str) -> str:
    files = yaml.safe_load(user_data)["write_files"]
    (ruleset,) = [f["content"] for f in files if f["path"] == "/etc/sysconfig/nftables.conf"]
    return ruleset


def test_user_data_is_valid_cloud_config(tmp_path):
    cloud_init = require_tool("cloud-init")
    path = tmp_path / "nat.yaml"
    path.write_text(nat_user_data("10.30.0.0/16"))
    run = subprocess.run(
        [cloud_init, "schema", "--config-file", str(path)], capture_output=True, text=True
    )
    assert run.returncode == 0 and "Valid cloud-config" in run.stdout, run.stdout + run.stderr


def test_the_ruleset_loads_and_forwards_only_the_vpc(tmp_path):
    nft = require_tool("nft")
    ruleset = _ruleset(nat_user_data("10.30.0.0/16"))
    assert "policy drop" in ruleset.split("chain postrouting")[0], "forward: VPC traffic only"
    good, bad = tmp_path / "nat.nft", tmp_path / "bad.nft"
    good.write_text(ruleset)
    bad.write_text(ruleset.replace("masquerade", "masquerade-typo"))
    check = subprocess.run([nft, "--check", "--file", str(good)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    broken = subprocess.run([nft, "--check", "--file", str(bad)], capture_output=True, text=True)
    assert broken.returncode != 0, "nft --check must reject a broken ruleset"
