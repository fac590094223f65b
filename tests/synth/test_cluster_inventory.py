"""What each stack would create, from the mock run of the real program."""

from __future__ import annotations

import base64
import json

import pytest
import yaml

INSTANCE = "aws:ec2/instance:Instance"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
SUBNET = "aws:ec2/subnet:Subnet"
AWS_STACKS = ["dev", "prod"]


def _subnet_azs(result) -> dict[str, str]:
    return {r.id: r.inputs["availabilityZone"] for r in result.of_type(SUBNET)}


@pytest.mark.parametrize("stack,servers", [("dev", 1), ("prod", 3)])
def test_servers_spread_over_azs(synth_results, stack, servers):
    result = synth_results[stack]
    instances = result.of_type(INSTANCE)
    assert len(instances) == servers
    azs = _subnet_azs(result)
    assert len({azs[i.inputs["subnetId"]] for i in instances}) == servers
    kinds = sorted(i.inputs["tags"]["platform:node-kind"] for i in instances)
    assert kinds == sorted(["server-init"] + ["server"] * (servers - 1))
    addresses = [i.inputs["privateIp"] for i in instances]
    assert len(set(addresses)) == servers


def test_prod_is_ha_and_dev_is_cheap(synth_results):
    dev, prod = synth_results["dev"], synth_results["prod"]
    assert not dev.of_type("aws:ec2/natGateway:NatGateway")
    assert not dev.of_type("aws:lb/loadBalancer:LoadBalancer")
    assert [e.name for e in dev.of_type("aws:ec2/eip:Eip")] == ["gitops-platform-dev-api-eip"]
    assert len(prod.of_type("aws:ec2/natGateway:NatGateway")) == 1
    (nlb,) = prod.of_type("aws:lb/loadBalancer:LoadBalancer")
    assert nlb.inputs["loadBalancerType"] == "network" and len(nlb.inputs["subnetMappings"]) == 3
    groups = {g.inputs["port"]: g.inputs for g in prod.of_type("aws:lb/targetGroup:TargetGroup")}
    assert sorted(groups) == [80, 443, 6443]
    assert groups[6443]["preserveClientIp"] == "false"
    (asg,) = prod.of_type("aws:autoscaling/group:Group")
    agents = prod.config.cluster.agents
    assert (asg.inputs["minSize"], asg.inputs["maxSize"], asg.inputs["desiredCapacity"]) == (
        3,
        agents.max,
        3,
    )
    assert len(asg.inputs["vpcZoneIdentifiers"]) == 3
    azs = _subnet_azs(prod)
    private = {
        s.id for s in prod.of_type(SUBNET) if s.inputs["tags"]["platform:subnet"] == "private"
    }
    assert set(asg.inputs["vpcZoneIdentifiers"]) == private
    assert all(i.inputs["subnetId"] in private for i in prod.of_type(INSTANCE))
    assert len({azs[s] for s in private}) == 3


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_imdsv2_and_encrypted_disks(synth_results, stack):
    result = synth_results[stack]
    for inst in result.of_type(INSTANCE):
        md = inst.inputs["metadataOptions"]
        assert (md["httpTokens"], md["httpPutResponseHopLimit"]) == ("required", 2), inst.urn
        root = inst.inputs["rootBlockDevice"]
        assert root["encrypted"] is True and root["volumeType"] == "gp3", inst.urn
    for lt in result.of_type(LAUNCH_TEMPLATE):
        assert lt.inputs["metadataOptions"]["httpTokens"] == "required", lt.urn
        assert all(m["ebs"]["encrypted"] == "true" for m in lt.inputs["blockDeviceMappings"]), (
            lt.urn
        )


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_no_ssh_and_api_only_from_allowed_cidrs(synth_results, stack):
    result = synth_results[stack]
    for reg in result.registrations:
        assert "keyName" not in reg.inputs, f"{reg.urn} sets an SSH key pair"
    world = ("0.0.0.0/0", "::/0")
    for rule in result.of_type(INGRESS_RULE):
        spec = rule.inputs
        ports = range(spec.get("fromPort", 0), spec.get("toPort", 65535) + 1)
        if spec["ipProtocol"] == "-1":
            assert "cidrIpv4" not in spec and "cidrIpv6" not in spec, rule.urn
            continue
        assert 22 not in ports, f"{rule.urn} opens port 22"
        if 6443 in ports and "cidrIpv4" in spec:
            assert spec["cidrIpv4"] not in world, rule.urn
    api_cidrs = {
        r.inputs["cidrIpv4"]
        for r in result.of_type(INGRESS_RULE)
        if r.inputs.get("fromPort") == 6443 and "cidrIpv4" in r.inputs
    }
    expected = {"dev": {"198.51.100.0/24"}, "prod": {"198.51.100.0/24", "203.0.113.0/24"}}[stack]
    assert api_cidrs == expected


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_stateful_resources_are_protected(synth_results, stack):
    result = synth_results[stack]
    protected = {r.type for r in result.registrations if r.protect}
    assert protected == {
        "aws:kms/key:Key",
        "aws:s3/bucket:Bucket",
        "aws:secretsmanager/secret:Secret",
        "aws:ecr/repository:Repository",
    }
    (key,) = result.of_type("aws:kms/key:Key")
    assert key.inputs["enableKeyRotation"] is True
    buckets = result.of_type("aws:s3/bucket:Bucket")
    assert sorted(b.name for b in buckets) == [
        f"gitops-platform-{stack}-logs",
        f"gitops-platform-{stack}-snapshots",
    ]
    pab = {
        r.inputs["bucket"]: r.inputs
        for r in result.of_type("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    }
    versioning = {
        r.inputs["bucket"]: r.inputs["versioningConfiguration"]["status"]
        for r in result.of_type("aws:s3/bucketVersioning:BucketVersioning")
    }
    for bucket in buckets:
        assert bucket.inputs["forceDestroy"] is False and bucket.protect, bucket.urn
        assert all(
            pab[bucket.id][k] is True
            for k in (
                "blockPublicAcls",
                "blockPublicPolicy",
                "ignorePublicAcls",
                "restrictPublicBuckets",
            )
        ), bucket.urn
        assert versioning[bucket.id] == "Enabled", bucket.urn


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_secrets_are_secret(synth_results, stack):
    result = synth_results[stack]
    assert result.outputs["kubeconfig"] == "[secret]"
    for version in result.of_type("aws:secretsmanager/secretVersion:SecretVersion"):
        assert version.inputs["secretString"] == "[secret]", version.urn
    for reg in result.of_type("tls:index/locallySignedCert:LocallySignedCert"):
        assert reg.inputs["caPrivateKeyPem"] == "[secret]", reg.urn
    ready = result.by_name(f"gitops-platform-{stack}-ready")
    assert ready.inputs["client_key_pem"] == "[secret]"


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_nothing_reaches_the_cluster_before_the_gate(synth_results, stack):
    result = synth_results[stack]
    ready = result.by_name(f"gitops-platform-{stack}-ready")
    servers = {i.urn for i in result.of_type(INSTANCE)}
    assert servers <= set(ready.depends_on), "the gate must wait for every server"
    (provider,) = result.of_type("pulumi:providers:kubernetes")
    assert ready.urn in provider.depends_on
    for reg in result.registrations:
        if reg.type.startswith("kubernetes:") and reg.custom:
            assert reg.provider == provider.urn, f"{reg.urn} does not use the gated provider"


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_node_roles_are_least_privilege(synth_results, stack):
    result = synth_results[stack]
    inline = {
        r.name: json.loads(r.inputs["policy"])
        for r in result.of_type("aws:iam/rolePolicy:RolePolicy")
    }
    server = inline[f"gitops-platform-{stack}-server-inline"]["Statement"]
    agent = inline[f"gitops-platform-{stack}-agent-inline"]["Statement"]
    secrets = {r.name: r.id for r in result.of_type("aws:secretsmanager/secret:Secret")}
    (key,) = result.of_type("aws:kms/key:Key")
    agent_secret = secrets[f"gitops-platform-{stack}-agent-bootstrap"]
    cluster = {"platform:cluster": f"gitops-platform-{stack}"}
    tag_on_failure = {
        "Effect": "Allow",
        "Action": "ec2:CreateTags",
        "Resource": "arn:aws:ec2:*:*:instance/*",
        "Condition": {
            "StringEquals": {
                "aws:ResourceTag/platform:cluster": cluster["platform:cluster"],
                "aws:RequestTag/platform:boot": "failed",
            },
            "ForAllValues:StringEquals": {"aws:TagKeys": ["platform:boot"]},
        },
    }
    assert tag_on_failure in server
    # The CA keys: their own secret, readable from the founding instance alone.
    (founder,) = [
        r for r in result.of_type("aws:ec2/instance:Instance") if r.name.endswith("-server-0")
    ]
    founder_arn = f"arn:aws:ec2:us-east-1:123456789012:instance/{founder.id}"
    assert inline[f"gitops-platform-{stack}-server-ca-read"]["Statement"] == [
        {
            "Effect": "Allow",
            "Action": "secretsmanager:GetSecretValue",
            "Resource": secrets[f"gitops-platform-{stack}-ca-bootstrap"],
            "Condition": {"ArnEquals": {"ec2:SourceInstanceARN": founder_arn}},
        }
    ]
    versions = {
        r.name: json.loads(r.plain_inputs["secretString"])
        for r in result.of_type("aws:secretsmanager/secretVersion:SecretVersion")
    }
    assert set(versions[f"gitops-platform-{stack}-server-bootstrap-value"]) == {
        "token",
        "agentToken",
    }
    assert set(versions[f"gitops-platform-{stack}-ca-bootstrap-value"]) == {"caFiles"}
    assert agent == [
        {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": agent_secret},
        {
            "Effect": "Allow",
            "Action": "kms:Decrypt",
            "Resource": f"arn:aws:kms:us-east-1:123456789012:key/{key.id}",
            "Condition": {
                "StringEquals": {
                    "kms:ViaService": "secretsmanager.us-east-1.amazonaws.com",
                    "kms:EncryptionContext:SecretARN": agent_secret,
                }
            },
        },
        tag_on_failure,
        {
            "Effect": "Allow",
            "Action": "autoscaling:SetInstanceHealth",
            "Resource": "*",
            "Condition": {
                "StringEquals": {
                    "autoscaling:ResourceTag/platform:cluster": cluster["platform:cluster"]
                }
            },
        },
    ]
    (group,) = result.of_type("aws:autoscaling/group:Group")
    assert {
        "key": "platform:cluster",
        "value": cluster["platform:cluster"],
        "propagateAtLaunch": True,
    } in group.inputs["tags"]
    for server_instance in result.of_type("aws:ec2/instance:Instance"):
        assert server_instance.inputs["tags"]["platform:cluster"] == cluster["platform:cluster"]
    actions = {
        a for s in server for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    assert actions == {
        "secretsmanager:GetSecretValue",
        "s3:ListBucket",
        "s3:GetBucketLocation",
        "s3:GetObject",
        "s3:PutObject",
        "s3:DeleteObject",
        "kms:Encrypt",
        "kms:Decrypt",
        "kms:DescribeKey",
        "kms:GenerateDataKey",
        "ec2:CreateTags",
    }
    (generate,) = [s for s in server if s["Action"] == "kms:GenerateDataKey"]
    assert generate["Condition"] == {
        "StringEquals": {"kms:ViaService": "s3.us-east-1.amazonaws.com"}
    }
    for statement in server:
        resources = (
            statement["Resource"]
            if isinstance(statement["Resource"], list)
            else [statement["Resource"]]
        )
        assert "*" not in resources
    attachments = {
        r.inputs["policyArn"]
        for r in result.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    }
    (pull,) = result.of_type("aws:iam/policy:Policy")
    pull_arn = f"arn:aws:iam::123456789012:policy/{pull.id}"
    assert attachments == {"arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore", pull_arn}
    statements = json.loads(pull.inputs["policy"])["Statement"]
    repos = {r.inputs["name"] for r in result.of_type("aws:ecr/repository:Repository")}
    assert repos == {f"gitops-platform-{stack}/hello"}
    scoped = [s for s in statements if s["Resource"] != "*"]
    assert {
        a for s in statements if s["Resource"] == "*" for a in [s["Action"]] if isinstance(a, str)
    } <= {"ecr:GetAuthorizationToken"}
    assert all(
        r.endswith(f":repository/gitops-platform-{stack}/hello")
        for s in scoped
        for r in s["Resource"]
    )


def test_agents_get_their_own_secret_and_spot_share(synth_results):
    dev = synth_results["dev"]
    (lt,) = dev.of_type(LAUNCH_TEMPLATE)
    text = base64.b64decode(lt.inputs["userData"]).decode()
    assert "agent-bootstrap" in text and "server-bootstrap" not in text
    (asg,) = dev.of_type("aws:autoscaling/group:Group")
    dist = asg.inputs["mixedInstancesPolicy"]["instancesDistribution"]
    assert (
        dist["onDemandPercentageAboveBaseCapacity"] == 0 and asg.inputs["capacityRebalance"] is True
    )


def test_local_stack_creates_no_aws_resources(synth_results):
    local = synth_results["local"]
    assert not [r for r in local.registrations if r.type.startswith("aws:")]
    (provider,) = local.of_type("pulumi:providers:kubernetes")
    ready = local.by_name("gitops-platform-local-ready")
    assert ready.urn in provider.depends_on
    assert ready.inputs["kubeconfig_path"] == "~/.kube/config"


def test_an_existing_vpc_is_used_as_is(tmp_path):
    from synth.core import synthesize
    from tests.conftest import REPO

    values = yaml.safe_load((REPO / "tests/fixtures/config/valid/existing-vpc.yaml").read_text())
    stack_file = tmp_path / "Pulumi.dev.yaml"
    stack_file.write_text(yaml.safe_dump(values))
    result = synthesize("dev", stack_file)
    created = {r.type for r in result.registrations}
    assert not created & {"aws:ec2/vpc:Vpc", SUBNET, "aws:ec2/natGateway:NatGateway"}
    (server,) = result.of_type(INSTANCE)
    assert server.inputs["subnetId"] == "subnet-0123456789abcdef0"
    (sg,) = [r for r in result.of_type("aws:ec2/securityGroup:SecurityGroup")]
    assert sg.inputs["vpcId"] == "vpc-0123456789abcdef0"
    # The fixed server address comes from the subnet's CIDR, which the program looks up.
    assert server.inputs["privateIp"].endswith(".10")
