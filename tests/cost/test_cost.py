"""The cost estimate over the synthesized stacks and its price table."""

from __future__ import annotations

import json

import pytest

from components import config
from cost import levers
from cost.__main__ import markdown
from policy.cost import catalogue
from policy.cost import estimate as cost
from synth.core import cost_of, cost_resources
from tests.conftest import REPO

TARGETS = {"dev": 30, "prod": 350}
"""USD a month each shipped AWS stack must stay within, HA and the full platform included."""
INSTANCE = "aws:ec2/instance:Instance"


def _lines(synth_results, stack) -> dict[str, dict]:
    return {line["item"]: line for line in cost_of(synth_results[stack])["lines"]}


def _prices(region: str = "us-east-1") -> dict:
    return catalogue.table()["regions"][region]


def test_dev_is_one_spot_server_and_no_load_balancer(synth_results):
    cl = synth_results["dev"].config.cluster
    lines = _lines(synth_results, "dev")
    server = lines[f"EC2 {cl.server_instance_type} (servers, Spot)"]
    hourly = _prices()["instance_hourly"][cl.server_instance_type]
    assert server["quantity"] == 1
    assert server["unit_price"] == pytest.approx(
        hourly * _prices()["spot_share_of_on_demand"], abs=1e-5
    )
    assert "network load balancers" not in lines and "NAT gateways" not in lines
    assert lines["Elastic IPs (public IPv4)"]["quantity"] == 1
    assert "public IPv4 of servers in public subnets" not in lines, (
        "the EIP replaces the automatic address"
    )
    assert lines["EBS gp3 root volumes"]["quantity"] == cl.root_volume_gb


def test_prod_counts_every_billable_resource(synth_results):
    cl = synth_results["prod"].config.cluster
    lines = _lines(synth_results, "prod")
    assert lines[f"EC2 {cl.server_instance_type} (servers)"]["quantity"] == 3
    agents = cl.agents.instance_type
    assert lines[f"EC2 {agents} (agents, on-demand)"]["quantity"] == 1
    assert lines[f"EC2 {agents} (agents, Spot)"]["quantity"] == 2
    assert lines["NAT gateways"]["quantity"] == 1
    assert lines["network load balancers"]["quantity"] == 1
    assert lines["Elastic IPs (public IPv4)"]["quantity"] == 4, (
        "3 NLB addresses + the NAT gateway's"
    )
    assert lines["EBS gp3 root volumes"]["quantity"] == 6 * cl.root_volume_gb
    assert lines["Secrets Manager secrets"]["quantity"] == 3
    total = cost_of(synth_results["prod"])["monthlyTotal"]
    assert total == pytest.approx(sum(line["monthly"] for line in lines.values()), abs=0.01)


def test_stacks_fit_their_budgets_and_the_targets(synth_results):
    for stack, target in TARGETS.items():
        result = synth_results[stack]
        assert result.config.monthly_budget_usd <= target, stack
        assert cost_of(result)["monthlyTotal"] <= result.config.monthly_budget_usd, stack


def test_dev_server_is_a_persistent_spot_request_that_stops(synth_results):
    (server,) = synth_results["dev"].of_type(INSTANCE)
    spot = server.inputs["instanceMarketOptions"]
    assert spot["marketType"] == "spot"
    assert spot["spotOptions"]["spotInstanceType"] == "persistent"
    assert spot["spotOptions"]["instanceInterruptionBehavior"] == "stop"
    # Without it EC2 closes the request after 7 days and a stopped server never starts again.
    assert spot["spotOptions"]["validUntil"] >= "2030"
    assert server.inputs["creditSpecification"] == {"cpuCredits": "standard"}
    assert server.inputs["rootBlockDevice"]["deleteOnTermination"] is True
    for prod_server in synth_results["prod"].of_type(INSTANCE):
        assert "instanceMarketOptions" not in prod_server.inputs
        assert "creditSpecification" not in prod_server.inputs


def test_spot_share_and_public_agents(synth_results):
    dev = synth_results["dev"]
    itype = dev.config.cluster.agents.instance_type
    resources = cost_resources(dev)
    asg = next(r for r in resources if r.type == "aws:autoscaling/group:Group")
    scaled = [
        r
        if r is not asg
        else cost.Resource(r.type, r.name, {**r.inputs, "desiredCapacity": 2}, r.id)
        for r in resources
    ]
    lines = {line.item: line for line in cost.estimate(scaled, "us-east-1").lines}
    spot = lines[f"EC2 {itype} (agents, Spot)"]
    hourly = _prices()["instance_hourly"][itype]
    assert spot.quantity == 2 and spot.unit_price == pytest.approx(hourly * 0.35, abs=1e-5)
    assert f"EC2 {itype} (agents, on-demand)" not in lines
    assert lines["public IPv4 of agents in public subnets"].quantity == 2


def test_unlimited_credits_are_noted_on_demand_only(synth_results):
    lines = _lines(synth_results, "prod")
    servers = lines[f"EC2 {synth_results['prod'].config.cluster.server_instance_type} (servers)"]
    assert servers["note"] == cost.UNLIMITED_NOTE, "T servers on demand run unlimited"
    assert all(
        cost.UNLIMITED_NOTE not in line["note"] for item, line in lines.items() if "agents" in item
    ), "agents with Spot in their group run standard credits"


def _with_cluster(region: str, arch: str, itype: str) -> dict:
    raw = config_values("dev")
    cluster = {**raw["platform:cluster"], "arch": arch, "serverInstanceType": itype}
    cluster["agents"] = {**cluster["agents"], "instanceType": itype}
    return {**raw, "aws:region": region, "platform:cluster": cluster}


def config_values(stack: str) -> dict:
    from policy.stack_file import load

    return load(REPO / "stacks" / f"Pulumi.{stack}.yaml").values


@pytest.mark.parametrize("region", catalogue.regions())
def test_config_accepts_exactly_the_priced_types(region):
    """Every type the catalogue describes, in every priced region: the config takes it when the
    price table prices it there and names the key and the allowed types otherwise."""
    for itype, spec in catalogue.instance_types().items():
        raw = _with_cluster(region, spec.arch, itype)
        if itype in catalogue.priced_types(region):
            assert config.parse(raw).cluster.server_instance_type == itype
            assert cost.estimate([cost.Resource(INSTANCE, "n", {"instanceType": itype})], region)
        else:
            with pytest.raises(config.ConfigError) as err:
                config.parse(raw)
            keys = {i.key for i in err.value.issues}
            assert keys == {
                "platform:cluster.serverInstanceType",
                "platform:cluster.agents.instanceType",
            }
            assert ", ".join(catalogue.priced_types(region, spec.arch)) in str(err.value)
    raw = _with_cluster(region, "x86_64", "m5.large")
    with pytest.raises(config.ConfigError, match=r"m5\.large has no .* price"):
        config.parse(raw)


def test_config_rejects_a_region_without_prices():
    raw = {**config_values("dev"), "aws:region": "ap-south-2"}
    with pytest.raises(config.ConfigError) as err:
        config.parse(raw)
    (issue,) = [i for i in err.value.issues if i.key == "aws:region"]
    assert "no prices in policy/cost/prices.yaml" in issue.message
    assert ", ".join(catalogue.regions()) in issue.message


def test_catalogue_agrees_with_the_type_names():
    """arm64 exactly for the Graviton families (a `g` after the generation), and sizes that
    double memory with each step within a family."""
    specs = catalogue.instance_types()
    for name, spec in specs.items():
        assert config.instance_arch(name) == spec.arch, name
        assert spec.burstable == name.startswith("t"), name
    for region in catalogue.regions():
        hourly = _prices(region)["instance_hourly"]
        assert set(hourly) <= set(specs), f"{region} prices types instance_types does not describe"
        for name, price in hourly.items():
            family, size = name.split(".")
            bigger = {"medium": "large", "large": "xlarge", "xlarge": "2xlarge"}.get(size)
            if f"{family}.{bigger}" in hourly:
                assert hourly[f"{family}.{bigger}"] == pytest.approx(2 * price, rel=0.01), name
                assert specs[f"{family}.{bigger}"].memory_gib == 2 * specs[name].memory_gib


def test_levers_end_at_the_stack_files_and_the_docs_show_them():
    doc = (REPO / "docs" / "cost.md").read_text()
    for stack in ("dev", "prod"):
        result = levers.levers(stack)
        assert result.ends_at_stack_file, f"cost/levers.yaml's {stack} steps must end at its file"
        assert result.steps[-1].total == result.shipped.total
        assert [r.total for r in result.steps] == sorted(
            (r.total for r in result.steps), reverse=True
        ), "every applied lever saves"
    assert levers.markdown(["dev", "prod"]) in doc, "regenerate: python -m cost --levers"


def test_local_stack_costs_nothing(synth_results):
    assert cost_of(synth_results["local"])["monthlyTotal"] == 0


def test_unknown_region_and_type_are_named(synth_results):
    resources = cost_resources(synth_results["dev"])
    with pytest.raises(cost.UnknownPrice, match="no prices for region eu-north-1"):
        cost.estimate(resources, "eu-north-1")
    odd = [cost.Resource("aws:ec2/instance:Instance", "x", {"instanceType": "z9.huge"}, "i-1")]
    with pytest.raises(cost.UnknownPrice, match="instance type z9.huge"):
        cost.estimate(odd, "us-east-1")


def test_eks_comparison_adds_control_plane_and_nat(synth_results):
    est = cost.estimate(cost_resources(synth_results["prod"]), "us-east-1")
    eks = cost.eks_comparison(est, azs=3)
    assert eks.total == pytest.approx(est.total - 32.85 + 73 + 3 * 32.85, abs=0.02)


def test_docs_table_is_current():
    doc = (REPO / "docs" / "cost.md").read_text()
    assert markdown(["dev", "prod"]) in doc, "regenerate the table: python -m cost --markdown"


def test_make_cost_shows_the_budget_and_fails_above_it(monkeypatch, capsys):
    from types import SimpleNamespace

    import cost.__main__ as cli

    result, est, eks = cli.stack_estimates("dev")
    budget = result.config.monthly_budget_usd
    shown = f"${budget:,.2f}/month: within" if budget is not None else "No budget set"
    assert cli.main(["--stack", "dev"]) == 0
    assert shown in capsys.readouterr().out
    tight = result.config.model_copy(update={"monthly_budget_usd": 5.0})
    monkeypatch.setattr(
        cli, "stack_estimates", lambda _stack: (SimpleNamespace(config=tight), est, eks)
    )
    assert cli.main(["--stack", "dev"]) == 1
    assert "$5.00/month: OVER" in capsys.readouterr().out


def test_docs_capacity_is_the_synths(synth_dirs):
    """docs/cost.md's capacity table is what the synth's capacity check finds on the nodes."""
    doc = (REPO / "docs" / "cost.md").read_text()
    for stack in TARGETS:
        path = synth_dirs[stack] / "capacity.json"
        if not path.exists():
            pytest.skip("no chart cache: the synth wrote no capacity.json (make charts)")
        for name, group in json.loads(path.read_text())["groups"].items():
            if not group["nodes"]:
                continue
            alloc, req, room = group["allocatable"], group["requested"], group["headroom"]
            row = (
                f"| `{stack}` {name} | {group['nodes']} x {group['instanceType']} "
                f"| {alloc['cpu']}, {alloc['memory']} | {req['cpu']}, {req['memory']} "
                f"| {room['cpu']:.0%}, {room['memory']:.0%} |"
            ).replace("%", " %")
            assert row in doc, f"update docs/cost.md's capacity table: {row}"
            assert room["memory"] >= 0.2, f"{stack} {name}: under 20 % memory headroom"
