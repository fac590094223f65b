"""The policy pack as the Pulumi engine drives it: a process speaking the Analyzer gRPC protocol.

The engine starts Python packs as `python -m pulumi.policy <engine> <pack dir>` in the pack
folder, with the stack config in PULUMI_CONFIG, reads the port from the first stdout line, then
calls GetAnalyzerInfo, Configure, Analyze (per resource) and AnalyzeStack (whole stack).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc

from policy.pack import PACK_NAME
from policy.rules import RULES
from tests.policy.conftest import REPO_ROOT
from tests.policy.policy_objects import container, workload

LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
BAD_TEMPLATE = {
    "metadataOptions": {"httpTokens": "optional", "httpPutResponseHopLimit": 1},
    "blockDeviceMappings": [{"deviceName": "/dev/sda1", "ebs": {"encrypted": "true"}}],
}
GOOD_TEMPLATE = {
    "metadataOptions": {"httpTokens": "required", "httpPutResponseHopLimit": 1},
    "blockDeviceMappings": [{"deviceName": "/dev/sda1", "ebs": {"encrypted": "true"}}],
}
FLAGS = {
    "blockPublicAcls": True,
    "blockPublicPolicy": True,
    "ignorePublicAcls": True,
    "restrictPublicBuckets": True,
}


@contextmanager
def start_pack(
    stack_config: dict[str, str] | None = None,
    python: str = sys.executable,
    folder: Path = REPO_ROOT / "policy",
) -> Iterator[Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_")}
    if stack_config is not None:
        env["PULUMI_CONFIG"] = json.dumps(stack_config)
    process = subprocess.Popen(
        [python, "-u", "-m", "pulumi.policy", "127.0.0.1:0", "."],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        line = process.stdout.readline()  # type: ignore[union-attr]
        assert line.strip().isdigit(), process.stderr.read().decode()  # type: ignore[union-attr]
        channel = grpc.insecure_channel(f"127.0.0.1:{int(line)}")
        grpc.channel_ready_future(channel).result(timeout=30)
        yield analyzer_pb2_grpc.AnalyzerStub(channel)
        channel.close()
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module")
def analyzer() -> Iterator[Any]:
    with start_pack() as stub:
        yield stub


@pytest.fixture(scope="module")
def configured() -> Iterator[Any]:
    """A pack whose stack config makes aws-imdsv2-required advisory."""
    with start_pack({"platform:policy": json.dumps({"aws-imdsv2-required": "advisory"})}) as stub:
        yield stub


def struct(props: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(props)
    return message


def urn(token: str, name: str) -> str:
    return f"urn:pulumi:dev::gitops-platform::{token}::{name}"


def analyze(stub: Any, token: str, props: dict[str, Any], name: str = "r") -> list[Any]:
    request = analyzer_pb2.AnalyzeRequest(
        type=token, properties=struct(props), urn=urn(token, name), name=name
    )
    return list(stub.Analyze(request).diagnostics)


def stack_resource(
    token: str, name: str, props: dict[str, Any], dependencies: dict[str, list[str]] | None = None
) -> Any:
    return analyzer_pb2.AnalyzerResource(
        type=token,
        properties=struct(props),
        urn=urn(token, name),
        name=name,
        propertyDependencies={
            key: analyzer_pb2.AnalyzerPropertyDependencies(urns=urns)
            for key, urns in (dependencies or {}).items()
        },
    )


def test_analyzer_info_lists_every_rule(analyzer: Any) -> None:
    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty())
    assert info.name == PACK_NAME and info.supportsConfig
    levels = {policy.name: policy.enforcementLevel for policy in info.policies}
    expected = {
        rule.id: analyzer_pb2.EnforcementLevel.Value(rule.enforcement.name) for rule in RULES
    }
    expected["limit-request-ratio-advisory"] = analyzer_pb2.ADVISORY
    assert levels == expected
    types = {policy.name: policy.policy_type for policy in info.policies}
    assert types["aws-imdsv2-required"] == analyzer_pb2.POLICY_TYPE_RESOURCE
    assert types["aws-s3-public-access-blocked"] == analyzer_pb2.POLICY_TYPE_STACK
    ratio = next(policy for policy in info.policies if policy.name == "limit-request-ratio")
    assert "maxRatio" in ratio.configSchema.properties
    assert ratio.remediation_steps.startswith("Raise the request")
    assert len(info.initialConfig) == 0


def test_bad_launch_template_gets_mandatory_imdsv2_diagnostic(analyzer: Any) -> None:
    (diagnostic,) = analyze(analyzer, LAUNCH_TEMPLATE, BAD_TEMPLATE, "agents")
    assert diagnostic.policyName == "aws-imdsv2-required"
    assert diagnostic.policyPackName == PACK_NAME
    assert diagnostic.enforcementLevel == analyzer_pb2.MANDATORY
    assert 'metadataOptions.httpTokens is "optional"' in diagnostic.message


def test_clean_resource_gets_no_diagnostic(analyzer: Any) -> None:
    assert analyze(analyzer, LAUNCH_TEMPLATE, GOOD_TEMPLATE) == []


DEPLOYMENT = "kubernetes:apps/v1:Deployment"
TRIPLE_CPU = workload(
    containers=[
        container(
            resources={
                "requests": {"cpu": "100m", "memory": "128Mi"},
                "limits": {"cpu": "300m", "memory": "128Mi"},
            }
        )
    ]
)


def test_kubernetes_object_advisory_tier(analyzer: Any) -> None:
    (diagnostic,) = analyze(analyzer, DEPLOYMENT, TRIPLE_CPU, "web")
    assert diagnostic.policyName == "limit-request-ratio-advisory"
    assert diagnostic.enforcementLevel == analyzer_pb2.ADVISORY


def test_stack_bucket_without_public_access_block(analyzer: Any) -> None:
    bucket = stack_resource(
        "aws:s3/bucket:Bucket",
        "snapshots",
        {
            "bucket": "etcd-snapshots",
            "serverSideEncryptionConfiguration": {
                "rule": {
                    "applyServerSideEncryptionByDefault": {
                        "sseAlgorithm": "aws:kms",
                        "kmsMasterKeyId": "alias/snapshots",
                    }
                }
            },
        },
    )
    logging = stack_resource(
        "aws:s3/bucketLogging:BucketLogging",
        "logging",
        {"bucket": "etcd-snapshots", "targetBucket": "logs", "targetPrefix": "s3-access/"},
    )
    response = analyzer.AnalyzeStack(analyzer_pb2.AnalyzeStackRequest(resources=[bucket, logging]))
    (diagnostic,) = response.diagnostics
    assert diagnostic.policyName == "aws-s3-public-access-blocked"
    assert diagnostic.urn == urn("aws:s3/bucket:Bucket", "snapshots")
    assert diagnostic.enforcementLevel == analyzer_pb2.MANDATORY

    # During preview the name is unknown; the property dependency still links the block.
    block = stack_resource(
        "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
        "pab",
        {"bucket": "04da6b54-80e4-46f7-96ec-b56ff0331ba9", **FLAGS},
        {"bucket": [bucket.urn]},
    )
    response = analyzer.AnalyzeStack(
        analyzer_pb2.AnalyzeStackRequest(resources=[bucket, logging, block])
    )
    assert list(response.diagnostics) == []


def test_stack_config_sets_enforcement(configured: Any) -> None:
    info = configured.GetAnalyzerInfo(empty_pb2.Empty())
    assert info.initialConfig["aws-imdsv2-required"].enforcementLevel == analyzer_pb2.ADVISORY
    imds = next(policy for policy in info.policies if policy.name == "aws-imdsv2-required")
    assert imds.enforcementLevel == analyzer_pb2.ADVISORY
    # Without pack config of its own, the engine configures the pack with its initial config.
    configured.Configure(analyzer_pb2.ConfigureAnalyzerRequest(policyConfig=info.initialConfig))
    (diagnostic,) = analyze(configured, LAUNCH_TEMPLATE, BAD_TEMPLATE)
    assert diagnostic.enforcementLevel == analyzer_pb2.ADVISORY


def test_configure_sets_enforcement(configured: Any) -> None:
    # The engine's reconciled config (e.g. --policy-pack-config) arrives through Configure, which
    # replaces the whole previous configuration.
    configured.Configure(
        analyzer_pb2.ConfigureAnalyzerRequest(
            policyConfig={
                "aws-imdsv2-required": analyzer_pb2.PolicyConfig(
                    enforcementLevel=analyzer_pb2.DISABLED
                ),
                "aws-ebs-encrypted": analyzer_pb2.PolicyConfig(
                    enforcementLevel=analyzer_pb2.ADVISORY
                ),
            }
        )
    )
    assert analyze(configured, LAUNCH_TEMPLATE, BAD_TEMPLATE) == []
    (ebs,) = analyze(configured, "aws:ebs/volume:Volume", {"size": 20})
    assert (ebs.policyName, ebs.enforcementLevel) == ("aws-ebs-encrypted", analyzer_pb2.ADVISORY)


def test_configure_sets_thresholds(configured: Any) -> None:
    # The advisory tier is its own Pulumi policy, so pack config sets the threshold for both.
    ceiling = struct({"maxRatio": 2.5})
    configured.Configure(
        analyzer_pb2.ConfigureAnalyzerRequest(
            policyConfig={
                "limit-request-ratio": analyzer_pb2.PolicyConfig(
                    enforcementLevel=analyzer_pb2.MANDATORY, properties=ceiling
                ),
                "limit-request-ratio-advisory": analyzer_pb2.PolicyConfig(
                    enforcementLevel=analyzer_pb2.ADVISORY, properties=ceiling
                ),
            }
        )
    )
    (diagnostic,) = analyze(configured, DEPLOYMENT, TRIPLE_CPU, "web")
    assert diagnostic.policyName == "limit-request-ratio"
    assert diagnostic.enforcementLevel == analyzer_pb2.MANDATORY
    assert "above the 2.5x ceiling" in diagnostic.message
