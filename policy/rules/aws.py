"""AWS resource rules over pulumi-aws v7 resources (engine camelCase property names).

Numbers may arrive as floats (22.0) or strings from synthesized data; launch template
`ebs.encrypted` is a string ("true") in the provider schema. Values unknown during preview never
produce a violation.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import Field

from policy.model import UNKNOWN, Inventory, Item, as_dict, as_int, as_list, dig
from policy.rules.base import Enforcement, Params, Rule, Scope, StackInfo, Violation

INSTANCE = "aws:ec2/instance:Instance"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
VOLUME = "aws:ebs/volume:Volume"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
SECURITY_GROUP_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
BUCKETS = ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2")
BUCKET_ENCRYPTION = (
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2",
)
PUBLIC_ACCESS_BLOCK = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
ACCOUNT_PUBLIC_ACCESS_BLOCK = "aws:s3/accountPublicAccessBlock:AccountPublicAccessBlock"
KMS_KEY = "aws:kms/key:Key"

PUBLIC_ACCESS_FLAGS = (
    "blockPublicAcls",
    "blockPublicPolicy",
    "ignorePublicAcls",
    "restrictPublicBuckets",
)
PORT_NAMES = {22: "SSH", 6443: "Kubernetes API"}


def _true(value: Any) -> bool:
    """A boolean property that is true; unknown counts, since it can't be proved false."""
    return value is True or value is UNKNOWN or (isinstance(value, str) and value.lower() == "true")


# --- aws-imdsv2-required -------------------------------------------------------------------------


def check_imdsv2(item: Item, _: Params, __: StackInfo) -> Iterator[Violation]:
    options = item.props.get("metadataOptions")
    endpoint, tokens = dig(options, "httpEndpoint"), dig(options, "httpTokens")
    if UNKNOWN in (options, endpoint, tokens) or endpoint == "disabled" or tokens == "required":
        return
    if tokens is None and item.type == INSTANCE and item.props.get("launchTemplate"):
        return  # the instance takes its metadata options from the launch template
    setting = f'is "{tokens}"' if tokens else "is not set"
    yield Violation(
        item,
        f"metadataOptions.httpTokens {setting}, so IMDSv1 answers unauthenticated requests: any "
        "pod or SSRF that reaches 169.254.169.254 can read the node role's credentials",
    )


# --- aws-ebs-encrypted ---------------------------------------------------------------------------


def _instance_volumes(item: Item) -> Iterator[str]:
    root = item.props.get("rootBlockDevice")
    if root is None and not item.props.get("launchTemplate"):
        yield "rootBlockDevice is not set, so the root volume copies the AMI snapshot (unencrypted)"
    elif isinstance(root, Mapping) and not _true(root.get("encrypted")):
        yield "rootBlockDevice.encrypted is not true"
    for index, device in enumerate(as_list(item.props.get("ebsBlockDevices"))):
        if not _true(dig(device, "encrypted")):
            yield f"ebsBlockDevices[{index}] ({dig(device, 'deviceName')}) is not encrypted"


def _launch_template_volumes(item: Item) -> Iterator[str]:
    mappings = item.props.get("blockDeviceMappings")
    if mappings is UNKNOWN:
        return
    ebs = [(i, m) for i, m in enumerate(as_list(mappings)) if isinstance(dig(m, "ebs"), Mapping)]
    if not ebs:
        yield (
            "declares no EBS blockDeviceMappings, so the root volume copies the AMI snapshot "
            "(unencrypted)"
        )
    for index, mapping in ebs:
        if not _true(dig(mapping, "ebs", "encrypted")):
            yield (
                f"blockDeviceMappings[{index}] ({dig(mapping, 'deviceName')}) ebs.encrypted "
                "is not true"
            )


def check_ebs(item: Item, _: Params, __: StackInfo) -> Iterator[Violation]:
    if item.type == VOLUME:
        problems = [] if _true(item.props.get("encrypted")) else ["encrypted is not true"]
    elif item.type == INSTANCE:
        problems = list(_instance_volumes(item))
    else:
        problems = list(_launch_template_volumes(item))
    for problem in problems:
        yield Violation(
            item,
            f"{problem}: snapshots and detached volumes would expose the data (etcd, secrets, "
            "container layers)",
        )


# --- aws-no-public-ssh ---------------------------------------------------------------------------


class PortParams(Params):
    ports: list[int] = Field(default_factory=lambda: [22, 6443], min_length=1)
    """TCP ports that must never be open to the whole internet."""


def _ingress_rules(item: Item) -> Iterator[tuple[str, Any, Any, Any, list[Any]]]:
    """(label, protocol, fromPort, toPort, CIDRs) for each ingress rule the resource declares."""
    props = item.props
    if item.type == SECURITY_GROUP:
        for index, rule in enumerate(as_list(props.get("ingress"))):
            rule = as_dict(rule)
            cidrs = as_list(rule.get("cidrBlocks")) + as_list(rule.get("ipv6CidrBlocks"))
            yield (
                f"ingress[{index}]",
                rule.get("protocol"),
                rule.get("fromPort"),
                rule.get("toPort"),
                cidrs,
            )
    elif item.type == SECURITY_GROUP_RULE:
        if props.get("type") == "ingress":
            cidrs = as_list(props.get("cidrBlocks")) + as_list(props.get("ipv6CidrBlocks"))
            yield ("rule", props.get("protocol"), props.get("fromPort"), props.get("toPort"), cidrs)
    else:
        yield (
            "rule",
            props.get("ipProtocol"),
            props.get("fromPort"),
            props.get("toPort"),
            [props.get("cidrIpv4"), props.get("cidrIpv6")],
        )


def _whole_internet(cidr: Any) -> bool:
    if not isinstance(cidr, str):
        return False
    try:
        return ipaddress.ip_network(cidr, strict=False).prefixlen == 0
    except ValueError:
        return False


def check_public_ports(item: Item, p: PortParams, _: StackInfo) -> Iterator[Violation]:
    for label, protocol, low, high, cidrs in _ingress_rules(item):
        world = [cidr for cidr in cidrs if _whole_internet(cidr)]
        if not world or protocol is UNKNOWN:
            continue
        protocol = str(protocol).lower()
        if protocol in ("-1", "all"):
            exposed, what = list(p.ports), "all traffic"
        elif protocol in ("tcp", "6"):
            first, last = as_int(low), as_int(high)
            if first is None or last is None:
                continue
            exposed = [port for port in p.ports if first <= port <= last]
            what = f"tcp {first}" if first == last else f"tcp {first}-{last}"
        else:
            continue
        if exposed:
            ports = ", ".join(f"{port} ({PORT_NAMES.get(port, 'admin')})" for port in exposed)
            yield Violation(
                item,
                f"{label} allows {what} from {', '.join(world)}, exposing {ports} to the whole "
                "internet; allow your office/VPN/CI ranges instead",
            )


# --- S3 ------------------------------------------------------------------------------------------


def names_bucket(reference: Item, bucket: Item) -> bool:
    """Whether a bucket-level resource (its `bucket` property) points at `bucket`.

    During preview the bucket's name or id may still be unknown; the property dependency the
    engine records (bucket=my_bucket.id) still ties the two together.
    """
    if bucket.urn and bucket.urn in reference.dependencies.get("bucket", ()):
        return True
    target = reference.props.get("bucket")
    names = {bucket.props.get("bucket"), bucket.props.get("id"), bucket.resource_id}
    return isinstance(target, str) and target in names


def _encryption_rules_set(rules: list[Any]) -> bool:
    return any(
        (algorithm := dig(rule, "applyServerSideEncryptionByDefault", "sseAlgorithm")) is UNKNOWN
        or (isinstance(algorithm, str) and algorithm != "")
        for rule in rules
    )


def _inline_encryption(bucket: Item) -> bool:
    v7 = bucket.props.get("serverSideEncryptionConfiguration")
    if v7 is UNKNOWN:
        return True
    rules = [dig(v7, "rule")]
    for legacy in as_list(bucket.props.get("serverSideEncryptionConfigurations")):
        rules += as_list(dig(legacy, "rules"))
    return _encryption_rules_set(rules)


def check_s3_encrypted(inv: Inventory, _: Params, __: StackInfo) -> Iterator[Violation]:
    configurations = inv.of(*BUCKET_ENCRYPTION)
    for bucket in inv.of(*BUCKETS):
        if _inline_encryption(bucket) or any(
            names_bucket(config, bucket)
            and _encryption_rules_set(as_list(config.props.get("rules")))
            for config in configurations
        ):
            continue
        yield Violation(
            bucket,
            "no BucketServerSideEncryptionConfiguration with an sseAlgorithm names this bucket: "
            "declare SSE-KMS (or SSE-S3) in code so the key and its policy are reviewed",
        )


def _blocking(block: Item) -> list[str]:
    return [flag for flag in PUBLIC_ACCESS_FLAGS if not _true(block.props.get(flag))]


def check_s3_public_access(inv: Inventory, _: Params, __: StackInfo) -> Iterator[Violation]:
    if any(not _blocking(account) for account in inv.of(ACCOUNT_PUBLIC_ACCESS_BLOCK)):
        return  # an account-wide block covers every bucket
    blocks = inv.of(PUBLIC_ACCESS_BLOCK)
    for bucket in inv.of(*BUCKETS):
        gaps = [_blocking(block) for block in blocks if names_bucket(block, bucket)]
        if not gaps:
            yield Violation(
                bucket,
                "no BucketPublicAccessBlock names this bucket: one ACL or bucket-policy change "
                "can publish its objects",
            )
        elif all(gaps):
            yield Violation(
                bucket,
                f"its BucketPublicAccessBlock leaves {', '.join(gaps[0])} off: public ACLs or "
                "policies can still expose its objects",
            )


# --- aws-kms-key-rotation ------------------------------------------------------------------------


def check_kms_rotation(item: Item, _: Params, __: StackInfo) -> Iterator[Violation]:
    spec = item.props.get("customerMasterKeySpec") or "SYMMETRIC_DEFAULT"
    # AWS rotates only symmetric encryption keys; asymmetric and HMAC keys can't enable it.
    if spec != "SYMMETRIC_DEFAULT" or _true(item.props.get("enableKeyRotation")):
        return
    yield Violation(
        item,
        "enableKeyRotation is not true: the key material never changes, so one leaked data key "
        "generation stays usable for the key's whole life",
    )


RULES = (
    Rule(
        id="aws-imdsv2-required",
        description="EC2 instances and launch templates require IMDSv2 session tokens.",
        enforcement=Enforcement.MANDATORY,
        remediation='Set metadataOptions: {httpTokens: "required", httpPutResponseHopLimit: 2} '
        "(hop limit 2 lets pods that need the metadata service reach it).",
        check=check_imdsv2,
        targets=frozenset({INSTANCE, LAUNCH_TEMPLATE}),
    ),
    Rule(
        id="aws-ebs-encrypted",
        description="EBS volumes are encrypted: instance root and extra volumes, launch template "
        "mappings, standalone volumes.",
        enforcement=Enforcement.MANDATORY,
        remediation="Set encrypted: true on rootBlockDevice / ebsBlockDevices, "
        'blockDeviceMappings[].ebs.encrypted: "true" on launch templates, and encrypted: true on '
        "ebs.Volume (optionally with kmsKeyId).",
        check=check_ebs,
        targets=frozenset({INSTANCE, LAUNCH_TEMPLATE, VOLUME}),
    ),
    Rule(
        id="aws-no-public-ssh",
        description="No ingress from 0.0.0.0/0 or ::/0 to SSH (22) or the Kubernetes API (6443), "
        "inline or as separate rule resources.",
        enforcement=Enforcement.MANDATORY,
        remediation="Restrict the rule's CIDRs to known ranges (platform:cluster.apiAllowedCidrs) "
        "or reach nodes through SSM Session Manager instead of SSH.",
        check=check_public_ports,
        targets=frozenset({SECURITY_GROUP, SECURITY_GROUP_RULE, INGRESS_RULE}),
        params=PortParams,
    ),
    Rule(
        id="aws-s3-encrypted",
        description="S3 buckets declare server-side encryption.",
        enforcement=Enforcement.MANDATORY,
        remediation="Add an s3.BucketServerSideEncryptionConfiguration (bucket=bucket.id) with "
        'sseAlgorithm "aws:kms" and a KMS key.',
        check=check_s3_encrypted,
        scope=Scope.STACK,
    ),
    Rule(
        id="aws-s3-public-access-blocked",
        description="S3 buckets have all four public access block settings on.",
        enforcement=Enforcement.MANDATORY,
        remediation="Add an s3.BucketPublicAccessBlock (bucket=bucket.id) with blockPublicAcls, "
        "blockPublicPolicy, ignorePublicAcls and restrictPublicBuckets all true.",
        check=check_s3_public_access,
        scope=Scope.STACK,
    ),
    Rule(
        id="aws-kms-key-rotation",
        description="Symmetric KMS keys rotate their key material.",
        enforcement=Enforcement.MANDATORY,
        remediation="Set enableKeyRotation: true on the kms.Key.",
        check=check_kms_rotation,
        targets=frozenset({KMS_KEY}),
    ),
)
