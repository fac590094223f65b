"""AWS rules over resources shaped as the Pulumi engine passes them (camelCase properties)."""

from __future__ import annotations

from typing import Any

import pytest

from policy import Enforcement, PolicySettings, evaluate
from policy.model import UNKNOWN
from policy.rules.aws import (
    ACCOUNT_PUBLIC_ACCESS_BLOCK,
    BUCKET_ENCRYPTION,
    INGRESS_RULE,
    INSTANCE,
    KMS_KEY,
    LAUNCH_TEMPLATE,
    PUBLIC_ACCESS_BLOCK,
    SECURITY_GROUP,
    SECURITY_GROUP_RULE,
    VOLUME,
)
from tests.policy.policy_objects import fired, resource

REQUIRED = {"httpTokens": "required", "httpPutResponseHopLimit": 2}
ROOT = {"encrypted": True, "volumeSize": 40}
LT_DISKS = [{"deviceName": "/dev/sda1", "ebs": {"encrypted": "true", "volumeSize": 40}}]


def only(rule: str, resources: list[dict[str, Any]], **config: Any) -> list[Any]:
    settings = PolicySettings.from_policy_config({rule: config} if config else None)
    return evaluate(resources, settings=settings, rules=[rule])


# --- aws-imdsv2-required -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "props", "text"),
    [
        (LAUNCH_TEMPLATE, {"metadataOptions": {"httpTokens": "optional"}}, 'is "optional"'),
        (LAUNCH_TEMPLATE, {}, "is not set"),
        (INSTANCE, {"metadataOptions": {"httpEndpoint": "enabled"}}, "is not set"),
        (
            INSTANCE,
            {"launchTemplate": {"id": "lt-1"}, "metadataOptions": {"httpTokens": "optional"}},
            'is "optional"',
        ),
    ],
    ids=["lt-optional", "lt-unset", "instance-unset", "instance-overrides-template"],
)
def test_imdsv1_left_on_fails(token: str, props: dict[str, Any], text: str) -> None:
    findings = only("aws-imdsv2-required", [resource(token, "node", **props)])
    assert fired(findings) == ["aws-imdsv2-required"]
    assert findings[0].enforcement is Enforcement.MANDATORY
    assert findings[0].urn == f"urn:pulumi:dev::gitops-platform::{token}::node"
    assert f"metadataOptions.httpTokens {text}" in findings[0].message


@pytest.mark.parametrize(
    ("token", "props"),
    [
        (LAUNCH_TEMPLATE, {"metadataOptions": REQUIRED}),
        (INSTANCE, {"metadataOptions": {"httpEndpoint": "disabled"}}),
        (INSTANCE, {"launchTemplate": {"id": "lt-1", "version": "$Latest"}}),
        (LAUNCH_TEMPLATE, {"metadataOptions": {"httpTokens": UNKNOWN}}),
    ],
    ids=["required", "endpoint-disabled", "inherits-template", "unknown-during-preview"],
)
def test_imdsv2_enforced_or_not_decidable(token: str, props: dict[str, Any]) -> None:
    assert only("aws-imdsv2-required", [resource(token, "node", **props)]) == []


# --- aws-ebs-encrypted ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "props", "problems"),
    [
        (INSTANCE, {}, ["rootBlockDevice is not set"]),
        (
            INSTANCE,
            {"rootBlockDevice": {"volumeSize": 40}},
            ["rootBlockDevice.encrypted is not true"],
        ),
        (
            INSTANCE,
            {
                "rootBlockDevice": ROOT,
                "ebsBlockDevices": [{"deviceName": "/dev/sdf", "encrypted": False}],
            },
            ["ebsBlockDevices[0] (/dev/sdf)"],
        ),
        (LAUNCH_TEMPLATE, {}, ["declares no EBS blockDeviceMappings"]),
        (
            LAUNCH_TEMPLATE,
            {"blockDeviceMappings": [{"deviceName": "/dev/sda1", "ebs": {"encrypted": "false"}}]},
            ["blockDeviceMappings[0] (/dev/sda1) ebs.encrypted is not true"],
        ),
        (VOLUME, {"size": 20}, ["encrypted is not true"]),
    ],
    ids=[
        "instance-root-default",
        "instance-root-plain",
        "instance-extra",
        "lt-no-mappings",
        "lt-string-false",
        "volume",
    ],
)
def test_unencrypted_volumes_fail(token: str, props: dict[str, Any], problems: list[str]) -> None:
    findings = only("aws-ebs-encrypted", [resource(token, "disk", **props)])
    assert len(findings) == len(problems)
    for finding, problem in zip(findings, problems, strict=True):
        assert finding.message.startswith(problem)


@pytest.mark.parametrize(
    ("token", "props"),
    [
        (
            INSTANCE,
            {
                "rootBlockDevice": ROOT,
                "ebsBlockDevices": [{"deviceName": "/dev/sdf", "encrypted": True}],
            },
        ),
        (INSTANCE, {"launchTemplate": {"id": "lt-1"}}),
        (LAUNCH_TEMPLATE, {"blockDeviceMappings": LT_DISKS}),
        (
            LAUNCH_TEMPLATE,
            {
                "blockDeviceMappings": [
                    {"deviceName": "/dev/sda1", "ebs": {"encrypted": True}},
                    {"deviceName": "/dev/sdb", "virtualName": "ephemeral0"},
                ]
            },
        ),
        (VOLUME, {"size": 20, "encrypted": True, "kmsKeyId": "arn:aws:kms:eu-west-1:1:key/k"}),
    ],
    ids=["instance", "instance-from-template", "lt-string-true", "lt-instance-store", "volume"],
)
def test_encrypted_volumes_pass(token: str, props: dict[str, Any]) -> None:
    assert only("aws-ebs-encrypted", [resource(token, "disk", **props)]) == []


# --- aws-no-public-ssh ---------------------------------------------------------------------------


def sg(**rule: Any) -> dict[str, Any]:
    return resource(SECURITY_GROUP, "nodes", ingress=[rule])


@pytest.mark.parametrize(
    ("res", "text"),
    [
        (
            sg(protocol="tcp", fromPort=22, toPort=22, cidrBlocks=["0.0.0.0/0"]),
            "ingress[0] allows tcp 22 from 0.0.0.0/0, exposing 22 (SSH)",
        ),
        (
            sg(
                protocol="tcp",
                fromPort=6000.0,
                toPort=7000.0,
                cidrBlocks=["10.0.0.0/8", "0.0.0.0/0"],
            ),
            "allows tcp 6000-7000 from 0.0.0.0/0, exposing 6443 (Kubernetes API)",
        ),
        (
            sg(protocol="-1", fromPort=0, toPort=0, ipv6CidrBlocks=["::/0"]),
            "allows all traffic from ::/0, exposing 22 (SSH), 6443 (Kubernetes API)",
        ),
        (sg(protocol="6", fromPort="22", toPort="22", cidrBlocks=["0.0.0.0/0"]), "tcp 22"),
        (
            resource(
                INGRESS_RULE,
                "ssh",
                ipProtocol="tcp",
                fromPort=22,
                toPort=22,
                cidrIpv4="0.0.0.0/0",
                securityGroupId="sg-1",
            ),
            "rule allows tcp 22",
        ),
        (resource(INGRESS_RULE, "all", ipProtocol="-1", cidrIpv6="::/0"), "all traffic from ::/0"),
        (
            resource(
                SECURITY_GROUP_RULE,
                "api",
                type="ingress",
                protocol="tcp",
                fromPort=6443,
                toPort=6443,
                cidrBlocks=["0.0.0.0/0"],
            ),
            "exposing 6443",
        ),
    ],
    ids=[
        "inline-ssh",
        "range-spanning-6443",
        "all-protocols-ipv6",
        "protocol-number-strings",
        "vpc-ingress-rule",
        "vpc-rule-all",
        "security-group-rule",
    ],
)
def test_world_open_admin_ports_fail(res: dict[str, Any], text: str) -> None:
    findings = only("aws-no-public-ssh", [res])
    assert fired(findings) == ["aws-no-public-ssh"]
    assert text in findings[0].message


@pytest.mark.parametrize(
    "res",
    [
        sg(protocol="tcp", fromPort=22, toPort=22, cidrBlocks=["198.51.100.0/24"]),
        sg(
            protocol="tcp",
            fromPort=443,
            toPort=443,
            cidrBlocks=["0.0.0.0/0"],
            ipv6CidrBlocks=["::/0"],
        ),
        sg(protocol="udp", fromPort=0, toPort=65535, cidrBlocks=["0.0.0.0/0"]),
        sg(protocol="tcp", fromPort=22, toPort=22, cidrBlocks=[UNKNOWN]),
        resource(
            SECURITY_GROUP_RULE,
            "out",
            type="egress",
            protocol="-1",
            fromPort=0,
            toPort=0,
            cidrBlocks=["0.0.0.0/0"],
        ),
    ],
    ids=["office-cidr", "https", "udp", "unknown-cidr", "egress"],
)
def test_restricted_or_other_ports_pass(res: dict[str, Any]) -> None:
    assert only("aws-no-public-ssh", [res]) == []


def test_ports_are_configurable() -> None:
    res = sg(protocol="tcp", fromPort=10250, toPort=10250, cidrBlocks=["0.0.0.0/0"])
    assert only("aws-no-public-ssh", [res]) == []
    assert "10250 (admin)" in only("aws-no-public-ssh", [res], ports=[10250])[0].message


# --- aws-s3-encrypted, aws-s3-public-access-blocked ----------------------------------------------

BUCKET = "aws:s3/bucket:Bucket"
FLAGS = {
    "blockPublicAcls": True,
    "blockPublicPolicy": True,
    "ignorePublicAcls": True,
    "restrictPublicBuckets": True,
}
SSE_RULES = [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "aws:kms"}}]


def s3(bucket: dict[str, Any], *others: dict[str, Any]) -> list[str]:
    return fired(
        evaluate([bucket, *others], rules=["aws-s3-encrypted", "aws-s3-public-access-blocked"])
    )


def test_bare_bucket_fails_both_rules() -> None:
    findings = evaluate([resource(BUCKET, "snapshots", bucket="etcd-snapshots")])
    assert fired(findings) == [
        "aws-s3-encrypted",
        "aws-s3-public-access-blocked",
        "aws-s3-access-logging",
    ]
    assert findings[0].urn.endswith("::snapshots")


def test_bucket_joined_by_name_passes() -> None:
    assert (
        s3(
            resource(BUCKET, "snapshots", bucket="etcd-snapshots"),
            resource(
                BUCKET_ENCRYPTION[0], "snapshots-sse", bucket="etcd-snapshots", rules=SSE_RULES
            ),
            resource(PUBLIC_ACCESS_BLOCK, "snapshots-pab", bucket="etcd-snapshots", **FLAGS),
        )
        == []
    )


def test_bucket_joined_by_property_dependency_during_preview() -> None:
    bucket = resource(BUCKET, "snapshots", bucket=UNKNOWN)
    link = {"propertyDependencies": {"bucket": [bucket["urn"]]}}
    assert (
        s3(
            bucket,
            {**resource(BUCKET_ENCRYPTION[0], "sse", bucket=UNKNOWN, rules=SSE_RULES), **link},
            {**resource(PUBLIC_ACCESS_BLOCK, "pab", bucket=UNKNOWN, **FLAGS), **link},
        )
        == []
    )


def test_bucket_joined_by_provider_id() -> None:
    bucket = {**resource(BUCKET, "snapshots"), "id": "snapshots-3f2a1b"}
    assert (
        s3(
            bucket,
            resource(BUCKET_ENCRYPTION[1], "sse", bucket="snapshots-3f2a1b", rules=SSE_RULES),
            resource(PUBLIC_ACCESS_BLOCK, "pab", bucket="snapshots-3f2a1b", **FLAGS),
        )
        == []
    )


def test_public_access_block_must_set_all_four_flags() -> None:
    findings = evaluate(
        [
            resource(
                BUCKET, "b", bucket="b", serverSideEncryptionConfiguration={"rule": SSE_RULES[0]}
            ),
            resource(
                PUBLIC_ACCESS_BLOCK, "pab", bucket="b", **{**FLAGS, "blockPublicPolicy": False}
            ),
        ],
        rules=["aws-s3-encrypted", "aws-s3-public-access-blocked"],
    )
    assert fired(findings) == ["aws-s3-public-access-blocked"]
    assert "leaves blockPublicPolicy off" in findings[0].message


def test_inline_encryption_and_account_block_pass() -> None:
    legacy = resource(
        "aws:s3/bucketV2:BucketV2",
        "b",
        bucket="b",
        serverSideEncryptionConfigurations=[{"rules": SSE_RULES}],
    )
    assert s3(legacy, resource(ACCOUNT_PUBLIC_ACCESS_BLOCK, "account", **FLAGS)) == []


def test_encryption_resource_for_another_bucket_does_not_count() -> None:
    assert s3(
        resource(BUCKET, "b", bucket="b"),
        resource(BUCKET_ENCRYPTION[0], "sse", bucket="other", rules=SSE_RULES),
        resource(PUBLIC_ACCESS_BLOCK, "pab", bucket="b", **FLAGS),
    ) == ["aws-s3-encrypted"]


# --- aws-kms-key-rotation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("props", "fires"),
    [
        ({"description": "vault unseal"}, True),
        ({"enableKeyRotation": False}, True),
        ({"enableKeyRotation": True}, False),
        ({"customerMasterKeySpec": "RSA_2048", "keyUsage": "SIGN_VERIFY"}, False),
        ({"customerMasterKeySpec": "HMAC_256", "keyUsage": "GENERATE_VERIFY_MAC"}, False),
    ],
    ids=["unset", "off", "on", "asymmetric", "hmac"],
)
def test_kms_rotation(props: dict[str, Any], fires: bool) -> None:
    findings = only("aws-kms-key-rotation", [resource(KMS_KEY, "unseal", **props)])
    assert bool(findings) is fires


# --- aws-imds-hop-limit --------------------------------------------------------------------------


def node(token: str, kind: str | None, hops: Any, **props: Any) -> dict[str, Any]:
    tags = {"platform:node-kind": kind} if kind else {}
    options = {"httpTokens": "required", "httpPutResponseHopLimit": hops}
    return resource(token, f"node-{kind}", metadataOptions=options, tags=tags, **props)


@pytest.mark.parametrize(
    ("res", "fires"),
    [
        (node(LAUNCH_TEMPLATE, "agent", 1), False),
        (node(LAUNCH_TEMPLATE, "agent", 2.0), True),
        (node(INSTANCE, "server-init", 2), False),
        (node(INSTANCE, "server", 3), True),
        (node(INSTANCE, None, 2), True),
        (node(INSTANCE, "agent", UNKNOWN), False),
        (
            resource(
                LAUNCH_TEMPLATE,
                "lt",
                metadataOptions={"httpTokens": "required", "httpPutResponseHopLimit": 2},
                tagSpecifications=[
                    {"resourceType": "instance", "tags": {"platform:node-kind": "server"}}
                ],
            ),
            False,
        ),
        (resource(INSTANCE, "from-template", launchTemplate={"id": "lt-1"}), False),
    ],
    ids=[
        "agent-1",
        "agent-2",
        "server-2",
        "server-3",
        "untagged-2",
        "unknown",
        "kind-from-tag-specification",
        "inherits-template",
    ],
)
def test_hop_limit_per_node_kind(res: dict[str, Any], fires: bool) -> None:
    assert bool(only("aws-imds-hop-limit", [res])) is fires


def test_hop_limit_kinds_are_configurable() -> None:
    servers = [node(INSTANCE, "server", 2)]
    findings = only("aws-imds-hop-limit", servers, podCredentialNodeKinds=[])
    assert "is 2 on nodes of kind 'server'" in findings[0].message
    assert (
        only(
            "aws-imds-hop-limit",
            [node(LAUNCH_TEMPLATE, "agent", 2)],
            podCredentialNodeKinds=["agent"],
        )
        == []
    )


# --- production-only rules -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "res"),
    [
        (
            "aws-prod-no-public-ip-on-launch",
            resource("aws:ec2/subnet:Subnet", "public-0", mapPublicIpOnLaunch=True),
        ),
        (
            "aws-prod-lb-deletion-protection",
            resource("aws:lb/loadBalancer:LoadBalancer", "nlb", loadBalancerType="network"),
        ),
    ],
)
def test_production_rules_skip_other_stacks(rule: str, res: dict[str, Any]) -> None:
    production = PolicySettings(production=True)
    assert fired(evaluate([res], settings=production, rules=[rule])) == [rule]
    assert only(rule, [res]) == []


# --- S3 customer key and access logging, during preview -----------------------------------------


def test_unknown_key_and_log_links_during_preview() -> None:
    bucket = resource(BUCKET, "snapshots", bucket=UNKNOWN)
    link = {"propertyDependencies": {"bucket": [bucket["urn"]]}}
    sse = {
        **resource(
            BUCKET_ENCRYPTION[0],
            "sse",
            bucket=UNKNOWN,
            rules=[
                {
                    "applyServerSideEncryptionByDefault": {
                        "sseAlgorithm": "aws:kms",
                        "kmsMasterKeyId": UNKNOWN,
                    }
                }
            ],
        ),
        **link,
    }
    logging = {
        **resource(
            "aws:s3/bucketLogging:BucketLogging", "log", bucket=UNKNOWN, targetBucket="logs"
        ),
        **link,
    }
    assert (
        evaluate([bucket, sse, logging], rules=["aws-s3-customer-key", "aws-s3-access-logging"])
        == []
    )
