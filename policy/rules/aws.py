"""AWS resource rules over pulumi-aws v7 resources (engine camelCase property names).

Numbers may arrive as floats (22.0) or strings from synthesized data; launch template
`ebs.encrypted` is a string ("true") in the provider schema. Values unknown during preview never
produce a violation.
"""

from __future__ import annotations

import ipaddress
import json
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
BUCKET_LOGGING = ("aws:s3/bucketLogging:BucketLogging", "aws:s3/bucketLoggingV2:BucketLoggingV2")
VPC = "aws:ec2/vpc:Vpc"
FLOW_LOG = "aws:ec2/flowLog:FlowLog"
DEFAULT_SECURITY_GROUP = "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup"
SUBNET = "aws:ec2/subnet:Subnet"
LOAD_BALANCERS = ("aws:lb/loadBalancer:LoadBalancer", "aws:alb/loadBalancer:LoadBalancer")
SECRET = "aws:secretsmanager/secret:Secret"
NODE_KIND_TAG = "platform:node-kind"
KMS_ALGORITHMS = ("aws:kms", "aws:kms:dsse")

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


# --- aws-imds-hop-limit --------------------------------------------------------------------------


class HopLimitParams(Params):
    pod_credential_node_kinds: list[str] = Field(default_factory=lambda: ["server-init", "server"])
    """`platform:node-kind` tag values whose pods need the node role (hop limit 2 allowed)."""


def _node_kind(item: Item) -> Any:
    kind = dig(item.props, "tags", NODE_KIND_TAG)
    if kind is None:
        for spec in as_list(item.props.get("tagSpecifications")):
            if dig(spec, "resourceType") == "instance":
                kind = dig(spec, "tags", NODE_KIND_TAG)
    return kind


def check_hop_limit(item: Item, p: HopLimitParams, _: StackInfo) -> Iterator[Violation]:
    options = item.props.get("metadataOptions")
    hops, kind = dig(options, "httpPutResponseHopLimit"), _node_kind(item)
    if UNKNOWN in (options, hops, kind) or dig(options, "httpEndpoint") == "disabled":
        return
    if hops is None and item.type == INSTANCE and item.props.get("launchTemplate"):
        return  # the instance takes its metadata options from the launch template
    allowed = 2 if kind in p.pod_credential_node_kinds else 1
    if hops is None:
        yield Violation(
            item,
            "metadataOptions.httpPutResponseHopLimit is not set: the AMI decides, and AL2023 "
            f"(ImdsSupport v2.0) answers 2 hops, so pods reach the node role; set {allowed}",
        )
    elif (as_int(hops) or 0) > allowed:
        who = f"nodes of kind {kind!r}" if kind else "nodes without a platform:node-kind tag"
        yield Violation(
            item,
            f"metadataOptions.httpPutResponseHopLimit is {as_int(hops)} on {who}: answers cross "
            f"the container network's hop, so every pod there gets the node role; at most "
            f"{allowed} here",
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


def refers_to(reference: Item, target: Item, prop: str = "bucket") -> bool:
    """Whether `reference`'s property `prop` (a bucket's name, a VPC's id) points at `target`.

    During preview the target's name or id may still be unknown; the property dependency the
    engine records (bucket=my_bucket.id) still ties the two together.
    """
    if target.urn and target.urn in reference.dependencies.get(prop, ()):
        return True
    value = reference.props.get(prop)
    names = {target.props.get("bucket"), target.props.get("id"), target.resource_id} - {None}
    return isinstance(value, str) and value in names


def _log_targets(inv: Inventory) -> list[Item]:
    """Buckets that receive S3 server access logs."""
    loggings = inv.of(*BUCKET_LOGGING)
    return [
        bucket
        for bucket in inv.of(*BUCKETS)
        if any(refers_to(logging, bucket, "targetBucket") for logging in loggings)
    ]


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
            refers_to(config, bucket) and _encryption_rules_set(as_list(config.props.get("rules")))
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
        gaps = [_blocking(block) for block in blocks if refers_to(block, bucket)]
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


def _default_encryption(inv: Inventory, bucket: Item) -> list[Any]:
    """The bucket's default-encryption rules, inline or from configurations naming it."""
    rules = [dig(bucket.props.get("serverSideEncryptionConfiguration"), "rule")]
    for legacy in as_list(bucket.props.get("serverSideEncryptionConfigurations")):
        rules += as_list(dig(legacy, "rules"))
    for config in inv.of(*BUCKET_ENCRYPTION):
        if refers_to(config, bucket):
            rules += as_list(config.props.get("rules"))
    return [dig(rule, "applyServerSideEncryptionByDefault") for rule in rules if rule is not None]


def check_s3_customer_key(inv: Inventory, _: Params, __: StackInfo) -> Iterator[Violation]:
    log_targets = {id(bucket) for bucket in _log_targets(inv)}
    for bucket in inv.of(*BUCKETS):
        defaults = _default_encryption(inv, bucket)
        if not defaults or any(
            UNKNOWN in (d, dig(d, "sseAlgorithm"), dig(d, "kmsMasterKeyId")) for d in defaults
        ):
            continue  # no encryption at all is aws-s3-encrypted's finding
        algorithms = {dig(d, "sseAlgorithm") for d in defaults}
        if id(bucket) in log_targets:
            if algorithms & set(KMS_ALGORITHMS):
                yield Violation(
                    bucket,
                    "receives S3 server access logs but defaults to SSE-KMS, which log delivery "
                    "does not support: the logs are silently dropped; use AES256 (SSE-S3)",
                )
        elif not any(
            dig(d, "sseAlgorithm") in KMS_ALGORITHMS and dig(d, "kmsMasterKeyId") for d in defaults
        ):
            yield Violation(
                bucket,
                f"default encryption is {', '.join(sorted(map(str, algorithms)))} without a "
                "customer-managed key: access to the objects is then decided by the bucket "
                "policy alone, not also by a key policy you review",
            )


def check_s3_access_logging(inv: Inventory, _: Params, __: StackInfo) -> Iterator[Violation]:
    log_targets = {id(bucket) for bucket in _log_targets(inv)}
    loggings = inv.of(*BUCKET_LOGGING)
    for bucket in inv.of(*BUCKETS):
        if id(bucket) in log_targets or any(refers_to(lg, bucket) for lg in loggings):
            continue
        yield Violation(
            bucket,
            "no BucketLogging names this bucket: nobody could tell afterwards who read or "
            "deleted its objects",
        )


# --- VPC -----------------------------------------------------------------------------------------


def check_flow_logs(inv: Inventory, _: Params, __: StackInfo) -> Iterator[Violation]:
    flow_logs = inv.of(FLOW_LOG)
    for vpc in inv.of(VPC):
        if not any(refers_to(log, vpc, "vpcId") for log in flow_logs):
            yield Violation(
                vpc,
                "no FlowLog names this VPC: connections to and from the nodes leave no record",
            )


def check_default_security_group(inv: Inventory, _: Params, __: StackInfo) -> Iterator[Violation]:
    groups = inv.of(DEFAULT_SECURITY_GROUP)
    for vpc in inv.of(VPC):
        mine = [group for group in groups if refers_to(group, vpc, "vpcId")]
        if not mine:
            yield Violation(
                vpc,
                "no DefaultSecurityGroup manages this VPC's default group, which AWS creates "
                "allowing all traffic between its members and all egress",
            )
        for group in mine:
            rules = [group.props.get("ingress"), group.props.get("egress")]
            if UNKNOWN not in rules and any(as_list(r) for r in rules):
                yield Violation(
                    group,
                    "the default security group keeps rules: anything launched without an "
                    "explicit group gets them; leave ingress and egress empty",
                )


def check_no_public_ip_on_launch(item: Item, _: Params, stack: StackInfo) -> Iterator[Violation]:
    if stack.production and item.props.get("mapPublicIpOnLaunch") is True:
        yield Violation(
            item,
            "mapPublicIpOnLaunch is true on a production stack: any instance started here is "
            "reachable from the internet; NAT gateways and load balancers bring Elastic IPs",
        )


def check_lb_deletion_protection(item: Item, _: Params, stack: StackInfo) -> Iterator[Violation]:
    if stack.production and not _true(item.props.get("enableDeletionProtection")):
        yield Violation(
            item,
            "enableDeletionProtection is not true on a production stack: one mistaken delete "
            "changes the addresses every client and DNS record points at",
        )


# --- KMS and Secrets Manager ---------------------------------------------------------------------


def _open_to_anyone(statement: Any) -> bool:
    principal = dig(statement, "Principal")
    aws = dig(principal, "AWS")
    anyone = principal == "*" or aws == "*" or "*" in as_list(aws)
    return dig(statement, "Effect") == "Allow" and anyone and not dig(statement, "Condition")


def check_kms_key_policy(item: Item, _: Params, __: StackInfo) -> Iterator[Violation]:
    policy = item.props.get("policy")
    if policy is UNKNOWN:
        return
    if not policy:
        yield Violation(
            item,
            "policy is not set, so AWS applies its default: who may use the key is then decided "
            "by IAM policies alone, outside this code's review",
        )
        return
    try:
        document = json.loads(policy) if isinstance(policy, str) else policy
    except ValueError:
        yield Violation(item, "policy is not valid JSON")
        return
    statements = dig(document, "Statement")
    for index, statement in enumerate(statements if isinstance(statements, list) else [statements]):
        if _open_to_anyone(statement):
            yield Violation(
                item,
                f"policy statement {dig(statement, 'Sid') or index} allows any principal "
                "without a condition",
            )


def check_secret_customer_key(item: Item, _: Params, __: StackInfo) -> Iterator[Violation]:
    if not item.props.get("kmsKeyId"):
        yield Violation(
            item,
            "kmsKeyId is not set, so the secret uses the account's aws/secretsmanager key, whose "
            "policy any principal with secretsmanager:GetSecretValue satisfies",
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
        remediation='Set metadataOptions: {httpTokens: "required", httpPutResponseHopLimit: 1}.',
        check=check_imdsv2,
        targets=frozenset({INSTANCE, LAUNCH_TEMPLATE}),
    ),
    Rule(
        id="aws-imds-hop-limit",
        description="The metadata service answers pods only on node kinds whose pods need the "
        "node role: hop limit 1, or 2 on the kinds listed.",
        enforcement=Enforcement.MANDATORY,
        remediation="Set metadataOptions.httpPutResponseHopLimit: 1; give pods that need AWS "
        "their own nodes (tag platform:node-kind) and list that kind in podCredentialNodeKinds.",
        check=check_hop_limit,
        targets=frozenset({INSTANCE, LAUNCH_TEMPLATE}),
        params=HopLimitParams,
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
        id="aws-s3-customer-key",
        description="S3 buckets default to SSE-KMS with a customer-managed key; buckets that "
        "receive server access logs use SSE-S3, the only encryption log delivery supports.",
        enforcement=Enforcement.MANDATORY,
        remediation='Set sseAlgorithm "aws:kms" and kmsMasterKeyId (bucketKeyEnabled: true keeps '
        'KMS requests low); on access-log buckets, sseAlgorithm "AES256".',
        check=check_s3_customer_key,
        scope=Scope.STACK,
    ),
    Rule(
        id="aws-s3-access-logging",
        description="S3 buckets log requests to a log bucket (log buckets themselves excepted).",
        enforcement=Enforcement.MANDATORY,
        remediation="Add an s3.BucketLogging (bucket=bucket.id) whose targetBucket is an "
        "SSE-S3 log bucket that grants logging.s3.amazonaws.com s3:PutObject.",
        check=check_s3_access_logging,
        scope=Scope.STACK,
    ),
    Rule(
        id="aws-vpc-flow-logs",
        description="Every VPC the stack creates records its flow logs.",
        enforcement=Enforcement.MANDATORY,
        remediation="Add an ec2.FlowLog (vpcId=vpc.id, trafficType ALL) to S3 or CloudWatch Logs.",
        check=check_flow_logs,
        scope=Scope.STACK,
    ),
    Rule(
        id="aws-vpc-default-sg-closed",
        description="Every VPC the stack creates manages its default security group with no rules.",
        enforcement=Enforcement.MANDATORY,
        remediation="Add an ec2.DefaultSecurityGroup (vpcId=vpc.id) with ingress: [] and "
        "egress: [], and give every resource an explicit group.",
        check=check_default_security_group,
        scope=Scope.STACK,
    ),
    Rule(
        id="aws-prod-no-public-ip-on-launch",
        description="On production stacks, subnets do not give instances public addresses.",
        enforcement=Enforcement.MANDATORY,
        remediation="Set mapPublicIpOnLaunch: false and put nodes in private subnets behind a "
        "NAT gateway (platform:network.nodeSubnets: private).",
        check=check_no_public_ip_on_launch,
        targets=frozenset({SUBNET}),
    ),
    Rule(
        id="aws-prod-lb-deletion-protection",
        description="On production stacks, load balancers have deletion protection on.",
        enforcement=Enforcement.MANDATORY,
        remediation="Set enableDeletionProtection: true (docs/operations.md says how to destroy "
        "the stack anyway).",
        check=check_lb_deletion_protection,
        targets=frozenset(LOAD_BALANCERS),
    ),
    Rule(
        id="aws-kms-key-policy",
        description="KMS keys declare their key policy, and no statement allows any principal "
        "unconditionally.",
        enforcement=Enforcement.MANDATORY,
        remediation="Set policy on the kms.Key: the account root administers it, each role gets "
        "exactly the actions it uses (with kms:ViaService when a service uses the key for it).",
        check=check_kms_key_policy,
        targets=frozenset({KMS_KEY}),
    ),
    Rule(
        id="aws-secret-customer-key",
        description="Secrets Manager secrets are encrypted with a customer-managed KMS key.",
        enforcement=Enforcement.MANDATORY,
        remediation="Set kmsKeyId to the stack's key and let the readers decrypt with it through "
        "Secrets Manager (kms:ViaService).",
        check=check_secret_customer_key,
        targets=frozenset({SECRET}),
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
