"""`pulumi destroy` leaves nothing behind: nothing inside the cluster can make AWS create resources
that Pulumi does not know about (docs/operations.md, "Destroy")."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from synth.core import helm_releases, kubernetes_objects
from synth.mocks import Registration

AWS_CONTROLLER_CHARTS = {
    "aws-load-balancer-controller",
    "aws-ebs-csi-driver",
    "aws-efs-csi-driver",
    "aws-cloud-controller-manager",
    "cluster-autoscaler",
    "karpenter",
    "external-dns",
}
AWS_PROVISIONERS = {"ebs.csi.aws.com", "kubernetes.io/aws-ebs", "efs.csi.aws.com"}
CREATING_ACTIONS = (
    "ec2:Create",
    "ec2:RunInstances",
    "ec2:AllocateAddress",
    "elasticloadbalancing:",
    "autoscaling:",
    "route53:CreateHostedZone",
    "iam:",
    "s3:CreateBucket",
    "ec2:*",
    "*",
)
# Match a prefix above but create nothing: a failed boot tags its own instance and hands it back
# to the Auto Scaling group (components/k3s/boot.sh), which replaces it with one of its own.
NOT_CREATING = {"ec2:CreateTags", "autoscaling:SetInstanceHealth"}


def _walk(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield f"{path}.{key}", item
            yield from _walk(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _walk(item, f"{path}[{i}]")


def _k3s_configs(result) -> list[dict]:
    configs = []
    for reg in result.of_type("aws:ec2/instance:Instance"):
        doc = yaml.safe_load(reg.inputs["userData"])
        files = {f["path"]: f["content"] for f in doc["write_files"]}
        configs.append(yaml.safe_load(files["/etc/platform/k3s-config.yaml"]))
    return configs


def _statements(result) -> Iterator[dict]:
    for reg in result.registrations:
        if reg.type in ("aws:iam/rolePolicy:RolePolicy", "aws:iam/policy:Policy"):
            yield from json.loads(reg.plain_inputs["policy"])["Statement"]


def aws_side_effects(result) -> list[str]:
    """Every way the synthesized stack lets Kubernetes create AWS resources on its own."""
    problems = []
    for entry, values in helm_releases(result):
        if entry["chart"] in AWS_CONTROLLER_CHARTS:
            problems.append(f"Helm release {entry['name']} installs {entry['chart']}")
        for path, value in _walk(values):
            key = path.rsplit(".", 1)[-1]
            if key in ("storageClass", "storageClassName") and value not in (
                None,
                "",
                "local-path",
            ):
                problems.append(f"{entry['name']} values{path} = {value!r} (dynamic cloud volume)")
            if key.startswith("service.beta.kubernetes.io/aws-load-balancer"):
                problems.append(f"{entry['name']} values{path} asks AWS for a load balancer")
    for _, obj in kubernetes_objects(result):
        kind = obj.get("kind")
        if kind == "StorageClass" and obj.get("provisioner") in AWS_PROVISIONERS:
            problems.append(f"StorageClass {obj['metadata']['name']} provisions AWS volumes")
        if kind == "Service" and (obj.get("spec") or {}).get("loadBalancerClass", "").startswith(
            "service.k8s.aws"
        ):
            problems.append(
                f"Service {obj['metadata']['name']} is handled by the AWS load balancer controller"
            )
    for config in _k3s_configs(result):
        if any("cloud-provider=external" in arg for arg in config.get("kubelet-arg", [])):
            problems.append("kubelets wait for an external (AWS) cloud controller")
    for statement in _statements(result):
        actions = (
            [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
        )
        for action in actions:
            if (
                statement["Effect"] == "Allow"
                and action not in NOT_CREATING
                and (action in ("*", "ec2:*") or action.startswith(CREATING_ACTIONS[:-2]))
            ):
                problems.append(f"a node role may call {action}")
    return problems


@pytest.mark.parametrize("stack", ["dev", "prod", "local"])
def test_shipped_stacks_cannot_create_aws_resources_behind_pulumi(synth_results, stack):
    assert aws_side_effects(synth_results[stack]) == []


def test_the_check_finds_each_kind_of_side_effect(synth_results):
    base = synth_results["prod"]

    def add(typ: str, inputs: dict) -> Registration:
        return Registration(
            urn=f"urn:test::{typ}",
            id="x",
            type=typ,
            name="x",
            parent=None,
            custom=True,
            provider=None,
            depends_on=[],
            protect=False,
            inputs=inputs,
            plain_inputs=inputs,
        )

    extra = [
        add(
            "kubernetes:helm.sh/v3:Release",
            {"name": "ebs", "chart": "aws-ebs-csi-driver", "values": {}},
        ),
        add(
            "kubernetes:helm.sh/v3:Release",
            {
                "name": "db",
                "chart": "postgresql",
                "values": {"primary": {"persistence": {"storageClass": "gp3"}}},
            },
        ),
        add(
            "kubernetes:storage.k8s.io/v1:StorageClass",
            {
                "apiVersion": "storage.k8s.io/v1",
                "kind": "StorageClass",
                "metadata": {"name": "gp3"},
                "provisioner": "ebs.csi.aws.com",
            },
        ),
        add(
            "aws:iam/rolePolicy:RolePolicy",
            {
                "policy": json.dumps(
                    {
                        "Statement": [
                            {"Effect": "Allow", "Action": ["ec2:CreateVolume"], "Resource": "*"}
                        ]
                    }
                )
            },
        ),
    ]
    tampered = dataclasses.replace(base, registrations=base.registrations + extra)
    problems = aws_side_effects(tampered)
    assert len(problems) == 4, problems
    assert any("aws-ebs-csi-driver" in p for p in problems)
    assert any("'gp3'" in p for p in problems)
    assert any("ec2:CreateVolume" in p for p in problems)
