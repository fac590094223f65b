"""The stack's log archive: one bucket that AWS services deliver audit logs into (VPC flow logs,
S3 server access logs), kept for a bounded time."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from components.buckets import private_bucket

RETENTION_DAYS = 90
"""Logs expire after this many days; long enough to investigate an incident noticed late."""
FLOW_LOG_PREFIX = "vpc-flow-logs"
ACCESS_LOG_PREFIX = "s3-access"
# S3 server access logging cannot deliver into a bucket whose default encryption is SSE-KMS, so
# this bucket alone uses S3-managed keys; it holds request metadata, never object contents.
SSE_S3 = {"apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"}}


def delivery_grants(bucket_arn: str, account: str, region: str) -> list[dict]:
    """What the log delivery services may write, each only under its prefix and only for this
    account's resources (the confused-deputy conditions AWS documents for both)."""
    own_account = {"aws:SourceAccount": account}
    own_logs = {"aws:SourceArn": f"arn:aws:logs:{region}:{account}:*"}
    delivery = {"Service": "delivery.logs.amazonaws.com"}
    return [
        {
            "Sid": "S3ServerAccessLogs",
            "Effect": "Allow",
            "Principal": {"Service": "logging.s3.amazonaws.com"},
            "Action": "s3:PutObject",
            "Resource": f"{bucket_arn}/{ACCESS_LOG_PREFIX}/*",
            "Condition": {"StringEquals": own_account},
        },
        {
            "Sid": "VpcFlowLogsWrite",
            "Effect": "Allow",
            "Principal": delivery,
            "Action": "s3:PutObject",
            "Resource": f"{bucket_arn}/{FLOW_LOG_PREFIX}/AWSLogs/{account}/*",
            "Condition": {
                "StringEquals": {**own_account, "s3:x-amz-acl": "bucket-owner-full-control"},
                "ArnLike": own_logs,
            },
        },
        {
            "Sid": "VpcFlowLogsAclCheck",
            "Effect": "Allow",
            "Principal": delivery,
            "Action": ["s3:GetBucketAcl", "s3:ListBucket"],
            "Resource": bucket_arn,
            "Condition": {"StringEquals": own_account, "ArnLike": own_logs},
        },
    ]


class LogArchive(pulumi.ComponentResource):
    """A protected bucket for the stack's AWS logs; other components send their logs here."""

    bucket: aws.s3.Bucket

    def __init__(self, name: str, region: str, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:aws:LogArchive", name, None, opts)
        account = aws.get_caller_identity_output(
            opts=pulumi.InvokeOutputOptions(parent=self)
        ).account_id
        self.bucket = private_bucket(
            f"{name}-logs",
            self,
            encryption=SSE_S3,
            lifecycle_rule={
                "id": "expire-logs",
                "status": "Enabled",
                "filter": {},
                "expiration": {"days": RETENTION_DAYS},
                "noncurrent_version_expiration": {"noncurrent_days": 7},
                "abort_incomplete_multipart_upload": {"days_after_initiation": 7},
            },
            policy_label="delivery",
            grants=lambda arn: account.apply(lambda a: delivery_grants(arn, a, region)),
        )
        self.register_outputs({"bucket": self.bucket.bucket})

    def record_access(
        self, name: str, source: aws.s3.Bucket, parent: pulumi.Resource
    ) -> aws.s3.BucketLogging:
        """Server access logs of `source` under `s3-access/<name>/`."""
        return aws.s3.BucketLogging(
            f"{name}-access-logs",
            bucket=source.id,
            target_bucket=self.bucket.bucket,
            target_prefix=f"{ACCESS_LOG_PREFIX}/{name}/",
            opts=pulumi.ResourceOptions(parent=parent),
        )

    def record_flows(
        self, name: str, vpc_id: pulumi.Input[str], parent: pulumi.Resource
    ) -> aws.ec2.FlowLog:
        """Flow logs of every interface in the VPC, accepted and rejected traffic alike."""
        return aws.ec2.FlowLog(
            f"{name}-flow-logs",
            vpc_id=vpc_id,
            traffic_type="ALL",
            log_destination_type="s3",
            log_destination=self.bucket.arn.apply(lambda arn: f"{arn}/{FLOW_LOG_PREFIX}/"),
            # The longest interval AWS offers: fewer, larger records cost less to deliver.
            max_aggregation_interval=600,
            tags={"Name": f"{name}-flow-logs"},
            opts=pulumi.ResourceOptions(parent=parent),
        )
