"""The scanner findings on AWS resources (docs/security.md), each checked on the synth of the AWS
stacks, and absent from the local stack, which creates nothing on AWS."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from tests.conftest import REPO

AWS_STACKS = ["dev", "prod"]
ACCOUNT = "123456789012"
SSE = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
POLICY_TYPES = {
    "aws:iam/rolePolicy:RolePolicy": False,
    "aws:iam/policy:Policy": False,
    "aws:s3/bucketPolicy:BucketPolicy": True,
    "aws:kms/key:Key": True,
}
"""Resources that carry a policy document, and whether it is a resource policy (names
principals) rather than an identity policy."""
ACTION = re.compile(r"^[a-z0-9-]+:[A-Za-z*]+$")
CONDITION_OPERATORS = {
    "StringEquals",
    "StringLike",
    "ArnLike",
    "ArnEquals",
    "Bool",
    "ForAllValues:StringEquals",
}
SECURITY_TYPES = (
    "aws:s3/bucketLogging:BucketLogging",
    "aws:ec2/flowLog:FlowLog",
    "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup",
    "aws:kms/key:Key",
    "aws:secretsmanager/secret:Secret",
)


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def policy_problems(document: Any, resource_policy: bool) -> list[str]:
    """What is malformed or too broad in an IAM-style policy document."""
    if not isinstance(document, dict) or document.get("Version") != "2012-10-17":
        return ["not a 2012-10-17 policy document"]
    statements = document.get("Statement")
    if not isinstance(statements, list) or not statements:
        return ["Statement is not a non-empty list"]
    problems = []
    for i, st in enumerate(statements):
        label = st.get("Sid", i)
        if st.get("Effect") not in ("Allow", "Deny"):
            problems.append(f"{label}: Effect {st.get('Effect')!r}")
        actions = _as_list(st.get("Action"))
        if not actions or not all(isinstance(a, str) and ACTION.match(a) for a in actions):
            problems.append(f"{label}: Action {st.get('Action')!r} is not service:Action")
        resources = _as_list(st.get("Resource"))
        if not resources or not all(isinstance(r, str) for r in resources):
            problems.append(f"{label}: no Resource")
        if ("Principal" in st) is not resource_policy:
            problems.append(f"{label}: Principal {'missing' if resource_policy else 'present'}")
        if not set(st.get("Condition", {})) <= CONDITION_OPERATORS:
            problems.append(f"{label}: unknown condition operator in {st['Condition']}")
        if st.get("Effect") == "Allow" and "*" in resources and "*" in actions:
            problems.append(f"{label}: grants every action on every resource")
    return problems


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_policy_documents_are_well_formed_and_never_all_on_all(synth_results, stack):
    documents = [
        (reg, json.loads(reg.plain_inputs["policy"]), resource_policy)
        for typ, resource_policy in POLICY_TYPES.items()
        for reg in synth_results[stack].of_type(typ)
        if "policy" in reg.plain_inputs
    ]
    assert {reg.type for reg, _, _ in documents} == set(POLICY_TYPES)
    for reg, document, resource_policy in documents:
        assert policy_problems(document, resource_policy) == [], reg.urn


def test_the_policy_check_finds_what_it_looks_for():
    everything = {"Effect": "Allow", "Action": "*", "Resource": "*"}
    assert policy_problems({"Version": "2012-10-17", "Statement": [everything]}, False) == [
        "0: Action '*' is not service:Action",
        "0: grants every action on every resource",
    ]
    assert policy_problems({"Statement": []}, False) == ["not a 2012-10-17 policy document"]
    loose = {"Sid": "S", "Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}
    assert policy_problems({"Version": "2012-10-17", "Statement": [loose]}, True) == [
        "S: Principal missing"
    ]


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_agents_keep_imds_on_the_host_and_servers_serve_their_pods(synth_results, stack):
    result = synth_results[stack]
    for server in result.of_type("aws:ec2/instance:Instance"):
        assert server.inputs["metadataOptions"]["httpPutResponseHopLimit"] == 2, server.urn
    (template,) = result.of_type("aws:ec2/launchTemplate:LaunchTemplate")
    assert template.inputs["metadataOptions"] == {
        "httpEndpoint": "enabled",
        "httpTokens": "required",
        "httpPutResponseHopLimit": 1,
        "instanceMetadataTags": "disabled",
    }


def test_app_pods_on_the_untainted_dev_server_cannot_reach_imds(synth_results):
    """dev has no agents, so its server runs app pods untainted: the app's NetworkPolicy is what
    keeps them from the metadata service (and the node role)."""
    dev = synth_results["dev"]
    assert dev.config.cluster.agents.min == 0
    policy = yaml.safe_load((REPO / "argocd-apps/apps/hello/base/networkpolicy.yaml").read_text())
    assert "Egress" in policy["spec"]["policyTypes"]
    blocks = [
        peer["ipBlock"]
        for rule in policy["spec"]["egress"]
        for peer in rule["to"]
        if "ipBlock" in peer
    ]
    assert blocks and all("169.254.169.254/32" in b["except"] for b in blocks)


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_snapshots_use_the_stack_key_and_log_their_access(synth_results, stack):
    result = synth_results[stack]
    prefix = f"gitops-platform-{stack}"
    key = result.by_name(f"{prefix}-kms")
    snapshots = result.by_name(f"{prefix}-snapshots")
    logs = result.by_name(f"{prefix}-logs")
    rules = {r.inputs["bucket"]: r.inputs["rules"] for r in result.of_type(SSE)}
    assert rules[snapshots.id] == [
        {
            "applyServerSideEncryptionByDefault": {
                "sseAlgorithm": "aws:kms",
                "kmsMasterKeyId": f"arn:aws:kms:us-east-1:{ACCOUNT}:key/{key.id}",
            },
            "bucketKeyEnabled": True,
        }
    ]
    # S3 delivers server access logs only into SSE-S3 buckets.
    assert rules[logs.id] == [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}]
    (logging,) = result.of_type("aws:s3/bucketLogging:BucketLogging")
    assert logging.inputs == {
        "bucket": snapshots.id,
        "targetBucket": logs.id,
        "targetPrefix": f"s3-access/{prefix}-snapshots/",
    }
    assert logs.protect and logs.inputs["forceDestroy"] is False
    policy = json.loads(result.by_name(f"{prefix}-logs-delivery").inputs["policy"])
    grant = next(s for s in policy["Statement"] if s["Sid"] == "S3ServerAccessLogs")
    assert grant["Principal"] == {"Service": "logging.s3.amazonaws.com"}
    assert grant["Resource"] == f"arn:aws:s3:::{logs.id}/s3-access/*"
    assert grant["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}
    (lifecycle,) = result.by_name(f"{prefix}-logs-lifecycle").inputs["rules"]
    assert lifecycle["expiration"] == {"days": 90}


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_vpc_flow_logs_go_to_the_log_bucket(synth_results, stack):
    result = synth_results[stack]
    (vpc,) = result.of_type("aws:ec2/vpc:Vpc")
    (flow,) = result.of_type("aws:ec2/flowLog:FlowLog")
    logs = result.by_name(f"gitops-platform-{stack}-logs")
    assert flow.inputs["vpcId"] == vpc.id
    assert (flow.inputs["trafficType"], flow.inputs["logDestinationType"]) == ("ALL", "s3")
    assert flow.inputs["logDestination"] == f"arn:aws:s3:::{logs.id}/vpc-flow-logs/"
    policy = json.loads(result.by_name(f"gitops-platform-{stack}-logs-delivery").inputs["policy"])
    write = next(s for s in policy["Statement"] if s["Sid"] == "VpcFlowLogsWrite")
    assert write["Resource"] == f"arn:aws:s3:::{logs.id}/vpc-flow-logs/AWSLogs/{ACCOUNT}/*"
    assert write["Condition"]["ArnLike"] == {"aws:SourceArn": f"arn:aws:logs:us-east-1:{ACCOUNT}:*"}


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_default_security_group_is_managed_without_rules(synth_results, stack):
    result = synth_results[stack]
    (vpc,) = result.of_type("aws:ec2/vpc:Vpc")
    (default,) = result.of_type("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup")
    assert default.inputs["vpcId"] == vpc.id
    assert (default.inputs["ingress"], default.inputs["egress"]) == ([], [])
    used = {
        group
        for reg in result.registrations
        for key in ("vpcSecurityGroupIds", "securityGroups")
        for group in reg.inputs.get(key, [])
    }
    assert default.id not in used, "nothing may rely on the default group"


@pytest.mark.parametrize("stack,auto_ip", [("dev", True), ("prod", False)])
def test_public_subnets_give_addresses_only_to_public_nodes(synth_results, stack, auto_ip):
    result = synth_results[stack]
    subnets = result.of_type("aws:ec2/subnet:Subnet")
    public = [s for s in subnets if s.inputs["tags"]["platform:subnet"] == "public"]
    assert public and all(s.inputs["mapPublicIpOnLaunch"] is auto_ip for s in public)
    assert not any(
        s.inputs["mapPublicIpOnLaunch"]
        for s in subnets
        if s.inputs["tags"]["platform:subnet"] == "private"
    )
    if not auto_ip:
        # What lives in prod's public subnets brings its own address.
        public_ids = {s.id for s in public}
        (nat,) = result.of_type("aws:ec2/natGateway:NatGateway")
        assert nat.inputs["subnetId"] in public_ids and nat.inputs["allocationId"]
        (nlb,) = result.of_type("aws:lb/loadBalancer:LoadBalancer")
        assert all(m["allocationId"] for m in nlb.inputs["subnetMappings"])
        assert not public_ids & {
            i.inputs["subnetId"] for i in result.of_type("aws:ec2/instance:Instance")
        }


def test_prod_load_balancer_is_protected_from_deletion(synth_results):
    (nlb,) = synth_results["prod"].of_type("aws:lb/loadBalancer:LoadBalancer")
    assert nlb.inputs["enableDeletionProtection"] is True
    assert not synth_results["dev"].of_type("aws:lb/loadBalancer:LoadBalancer")


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_key_policy_grants_each_role_exactly_its_uses(synth_results, stack):
    result = synth_results[stack]
    prefix = f"gitops-platform-{stack}"
    key = result.by_name(f"{prefix}-kms")
    roles = [result.by_name(f"{prefix}-{kind}-role") for kind in ("server", "agent")]
    assert {r.urn for r in roles} <= set(key.depends_on), "the roles exist before the key"
    server, agent = (f"arn:aws:iam::{ACCOUNT}:role/{r.id}" for r in roles)
    statements = {s["Sid"]: s for s in json.loads(key.inputs["policy"])["Statement"]}
    assert statements["AccountAdministersKey"]["Principal"] == {
        "AWS": f"arn:aws:iam::{ACCOUNT}:root"
    }
    assert statements["ServersSealVault"]["Principal"] == {"AWS": server}
    assert statements["ServersSealVault"]["Action"] == [
        "kms:Encrypt",
        "kms:Decrypt",
        "kms:DescribeKey",
    ]
    assert statements["ServersWriteSnapshots"]["Condition"] == {
        "StringEquals": {"kms:ViaService": "s3.us-east-1.amazonaws.com"}
    }
    secrets = statements["NodesReadBootstrapSecrets"]
    assert secrets["Principal"] == {"AWS": [server, agent]}
    assert (secrets["Action"], secrets["Condition"]) == (
        "kms:Decrypt",
        {"StringEquals": {"kms:ViaService": "secretsmanager.us-east-1.amazonaws.com"}},
    )
    assert set(statements) == {
        "AccountAdministersKey",
        "ServersSealVault",
        "ServersWriteSnapshots",
        "NodesReadBootstrapSecrets",
    }


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_bootstrap_secrets_use_the_stack_key(synth_results, stack):
    result = synth_results[stack]
    (key,) = result.of_type("aws:kms/key:Key")
    secrets = result.of_type("aws:secretsmanager/secret:Secret")
    assert sorted(s.name.rsplit("-", 2)[-2] for s in secrets) == ["agent", "ca", "server"]
    for secret in secrets:
        assert secret.inputs["kmsKeyId"] == f"arn:aws:kms:us-east-1:{ACCOUNT}:key/{key.id}"
        assert secret.protect, secret.urn


def test_local_stack_has_none_of_it(synth_results):
    local = synth_results["local"]
    assert not [r for r in local.registrations if r.type in SECURITY_TYPES]
    assert "logBucket" not in local.outputs
