"""Private S3 buckets and the IAM-style policy documents that guard AWS resources."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence

import pulumi
import pulumi_aws as aws

BUCKET_PREFIX_MAX = 36
"""S3 allows 37 characters of bucket_prefix, the trailing `-` included."""


def bounded(text: str, limit: int) -> str:
    """`text`, or its head plus a short hash when it is longer than `limit` (still unique)."""
    if len(text) <= limit:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"{text[: limit - 9]}-{digest}"


def policy_document(statements: Sequence[dict]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)}, sort_keys=True)


def deny_insecure_transport(bucket_arn: str) -> dict:
    return {
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [bucket_arn, f"{bucket_arn}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }


def private_bucket(
    name: str,
    parent: pulumi.Resource,
    *,
    encryption: pulumi.Input[dict],
    lifecycle_rule: dict,
    policy_label: str,
    grants: Callable[[str], pulumi.Input[list[dict]]] = lambda _arn: [],
) -> aws.s3.Bucket:
    """A protected, versioned bucket that only its owner's principals and TLS clients can use.

    `encryption` is the default-encryption rule, `lifecycle_rule` its one lifecycle rule, and
    `grants(bucket_arn)` the statements that let services deliver into it.
    """
    child = pulumi.ResourceOptions(parent=parent)
    # Only an empty bucket can be deleted; a stray destroy must not get that far.
    bucket = aws.s3.Bucket(
        name,
        bucket_prefix=bounded(name, BUCKET_PREFIX_MAX) + "-",
        force_destroy=False,
        opts=pulumi.ResourceOptions(parent=parent, protect=True),
    )
    settings = {
        "ownership": (
            aws.s3.BucketOwnershipControls,
            {"rule": {"object_ownership": "BucketOwnerEnforced"}},
        ),
        "pab": (
            aws.s3.BucketPublicAccessBlock,
            dict.fromkeys(
                (
                    "block_public_acls",
                    "block_public_policy",
                    "ignore_public_acls",
                    "restrict_public_buckets",
                ),
                True,
            ),
        ),
        "sse": (aws.s3.BucketServerSideEncryptionConfiguration, {"rules": [encryption]}),
        "versioning": (
            aws.s3.BucketVersioning,
            {"versioning_configuration": {"status": "Enabled"}},
        ),
        "lifecycle": (aws.s3.BucketLifecycleConfiguration, {"rules": [lifecycle_rule]}),
    }
    for suffix, (resource, properties) in settings.items():
        resource(f"{name}-{suffix}", bucket=bucket.id, opts=child, **properties)
    aws.s3.BucketPolicy(
        f"{name}-{policy_label}",
        bucket=bucket.id,
        policy=bucket.arn.apply(
            lambda arn: pulumi.Output.from_input(grants(arn)).apply(
                lambda extra: policy_document([deny_insecure_transport(arn), *extra])
            )
        ),
        opts=child,
    )
    return bucket
