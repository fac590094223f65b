"""`platform:decommission: true`: the `pulumi up` that lets the next `pulumi destroy` delete the
stack completely, data included (docs/operations.md, "Destroy").

Day to day, what holds data is protected (KMS key, buckets, bootstrap secrets, image
repositories), buckets and repositories refuse to be deleted while they hold objects, and a
production load balancer has AWS deletion protection. Each of these stops `pulumi destroy`, on
purpose. `release`, a transformation on the AWS layer's components (inherited by every child),
lifts all of them at once, in the program, so the one `up` records the change in the state and the
engine applies it; nothing is edited by hand.
"""

from __future__ import annotations

import pulumi

RELEASED_INPUTS: dict[str, dict[str, bool]] = {
    "aws:s3/bucket:Bucket": {"force_destroy": True},
    "aws:ecr/repository:Repository": {"force_delete": True},
    "aws:lb/loadBalancer:LoadBalancer": {"enable_deletion_protection": False},
}
"""Per resource type, the inputs that make a delete succeed even when the resource holds data."""


def release(args: pulumi.ResourceTransformationArgs) -> pulumi.ResourceTransformationResult:
    props = {**args.props, **RELEASED_INPUTS.get(args.type_, {})}
    opts = pulumi.ResourceOptions.merge(args.opts, pulumi.ResourceOptions(protect=False))
    return pulumi.ResourceTransformationResult(props, opts)
