"""Agents roll: a changed launch template reaches running agents through an instance refresh."""

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
