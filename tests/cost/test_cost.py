"""The cost estimate over the synthesized stacks and its price table."""

from __future__ import annotations

import pytest

from cost import estimate as cost
from cost.__main__ import markdown
from synth.core import cost_of, cost_resources
from tests.conftest import REPO


def _lines(synth_results, stack) -> dict[str, dict]:
    return {line["item"]: line for line in cost_of(synth_results[stack])["lines"]}


def test_dev_is_one_server_and_no_load_balancer(synth_results):
    lines = _lines(synth_results, "dev")
    assert lines["EC2 t3.large (servers)"]["quantity"] == 1
    assert lines["EC2 t3.large (servers)"]["monthly"] == pytest.approx(0.0832 * 730, abs=0.01)
    assert "network load balancers" not in lines and "NAT gateways" not in lines
    assert lines["Elastic IPs (public IPv4)"]["quantity"] == 1
    assert "public IPv4 of servers in public subnets" not in lines, (
        "the EIP replaces the automatic address"
    )
    assert lines["EBS gp3 root volumes"]["quantity"] == 40


def test_prod_counts_every_billable_resource(synth_results):
    lines = _lines(synth_results, "prod")
    assert lines["EC2 m6i.xlarge (servers)"]["quantity"] == 3
    assert lines["EC2 m6i.large (agents, on-demand)"]["quantity"] == 3
    assert lines["NAT gateways"]["quantity"] == 1
    assert lines["network load balancers"]["quantity"] == 1
    assert lines["Elastic IPs (public IPv4)"]["quantity"] == 4, (
        "3 NLB addresses + the NAT gateway's"
    )
    assert lines["EBS gp3 root volumes"]["quantity"] == 6 * 80
    assert lines["Secrets Manager secrets"]["quantity"] == 2
    total = cost_of(synth_results["prod"])["monthlyTotal"]
    assert total == pytest.approx(sum(line["monthly"] for line in lines.values()), abs=0.01)


def test_stacks_fit_their_budgets(synth_results):
    for stack in ("dev", "prod"):
        result = synth_results[stack]
        assert cost_of(result)["monthlyTotal"] <= result.config.monthly_budget_usd, stack


def test_spot_share_and_public_agents(synth_results):
    dev = synth_results["dev"]
    resources = cost_resources(dev)
    asg = next(r for r in resources if r.type == "aws:autoscaling/group:Group")
    scaled = [
        r
        if r is not asg
        else cost.Resource(r.type, r.name, {**r.inputs, "desiredCapacity": 2}, r.id)
        for r in resources
    ]
    lines = {line.item: line for line in cost.estimate(scaled, "us-east-1").lines}
    spot = lines["EC2 t3.large (agents, Spot)"]
    assert spot.quantity == 2 and spot.unit_price == pytest.approx(0.0832 * 0.35, abs=1e-5)
    assert "EC2 t3.large (agents, on-demand)" not in lines
    assert lines["public IPv4 of agents in public subnets"].quantity == 2


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
