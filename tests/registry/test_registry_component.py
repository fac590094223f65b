"""The `Registry` component under Pulumi mocks: what it asks AWS to create."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pytest

from components.registry.component import PULL_ACTIONS, Registry, RegistryArgs, pull_policy_json
from policy.registry.config import RegistryConfig
from policy.registry.lifecycle import lifecycle_policy_json

ACCOUNT = "123456789012"
CFG = RegistryConfig(apps=["shop/web", "shop-api"], environments=["dev", "prod"])
REPO = "aws:ecr/repository:Repository"
NAMESPACE = "platform-test"


class RecordingMocks(pulumi.runtime.Mocks):
    """Answers like AWS for the fields under test and records every resource."""

    def __init__(self) -> None:
        self.resources: list[pulumi.runtime.MockResourceArgs] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        self.resources.append(args)
        outputs = dict(args.inputs)
        if args.typ == REPO:
            name = args.inputs["name"]
            outputs["arn"] = f"arn:aws:ecr:eu-west-1:{ACCOUNT}:repository/{name}"
            outputs["repositoryUrl"] = f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/{name}"
        if args.typ == "aws:iam/policy:Policy":
            outputs["arn"] = f"arn:aws:iam::{ACCOUNT}:policy/{args.name}"
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict:
        return {}

    def inputs(self, typ: str) -> dict[str, dict]:
        return {r.name: r.inputs for r in self.resources if r.typ == typ}


@pytest.fixture
def mocks() -> RecordingMocks:
    recorder = RecordingMocks()
    pulumi.runtime.set_mocks(recorder, project="platform", stack="test", preview=False)
    return recorder


def _deploy(cfg: RegistryConfig) -> dict[str, Any]:
    """Run the component to completion (every child registered) and return its resolved outputs."""
    resolved: dict[str, Any] = {}

    @pulumi.runtime.test
    def program() -> pulumi.Output:
        registry = Registry("apps", RegistryArgs(config=cfg, namespace=NAMESPACE))
        return pulumi.Output.all(
            document=registry.pull_policy_document,
            arn=registry.pull_policy_arn,
            urls=registry.repository_urls,
            repo_urns=pulumi.Output.all(*(r.urn for r in registry.repositories.values())),
        ).apply(resolved.update)

    program()
    return resolved


def test_repositories_are_immutable_scanned_encrypted_and_kept(mocks: RecordingMocks) -> None:
    outputs = _deploy(CFG)
    repos = mocks.inputs(REPO)
    assert set(repos) == {"apps-repo-shop--web", "apps-repo-shop-api"}
    for name, inputs in repos.items():
        assert inputs["imageTagMutability"] == "IMMUTABLE", name
        assert inputs["imageScanningConfiguration"] == {"scanOnPush": True}, name
        assert inputs["encryptionConfigurations"] == [{"encryptionType": "AES256"}], name
        assert inputs["forceDelete"] is False, name
        assert inputs["name"].startswith(f"{NAMESPACE}/"), name
    for urn in outputs["repo_urns"]:
        assert "::platform:registry:Registry$aws:ecr/repository:Repository::" in urn, urn


def test_every_repository_gets_the_generated_lifecycle_policy(mocks: RecordingMocks) -> None:
    _deploy(CFG)
    policies = mocks.inputs("aws:ecr/lifecyclePolicy:LifecyclePolicy")
    assert sorted(policies) == ["apps-lifecycle-shop--web", "apps-lifecycle-shop-api"]
    assert sorted(p["repository"] for p in policies.values()) == sorted(
        f"{NAMESPACE}/{app}" for app in CFG.apps
    )
    assert {p["policy"] for p in policies.values()} == {lifecycle_policy_json(CFG)}


def test_pull_policy_covers_exactly_these_repositories(mocks: RecordingMocks) -> None:
    outputs = _deploy(CFG)
    pull, login = json.loads(outputs["document"])["Statement"]
    assert pull["Effect"] == "Allow"
    assert sorted(pull["Action"]) == sorted(PULL_ACTIONS)
    assert sorted(pull["Resource"]) == sorted(
        f"arn:aws:ecr:eu-west-1:{ACCOUNT}:repository/{NAMESPACE}/{app}" for app in CFG.apps
    )
    assert (login["Action"], login["Resource"]) == ("ecr:GetAuthorizationToken", "*")
    assert mocks.inputs("aws:iam/policy:Policy")["apps-pull"]["policy"] == outputs["document"]
    assert outputs["arn"] == f"arn:aws:iam::{ACCOUNT}:policy/apps-pull"
    assert (
        outputs["urls"]["shop/web"]
        == f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/{NAMESPACE}/shop/web"
    )


@pytest.mark.parametrize(
    "cfg",
    [
        RegistryConfig(enabled=False, apps=["web"], environments=["dev"]),
        RegistryConfig(),
    ],
    ids=["disabled", "no-apps"],
)
def test_inactive_config_is_refused(mocks: RecordingMocks, cfg: RegistryConfig) -> None:
    with pytest.raises(ValueError, match="platform:registry"):
        Registry("apps", RegistryArgs(config=cfg, namespace=NAMESPACE))
    assert mocks.resources == []


def test_pull_policy_needs_a_repository() -> None:
    with pytest.raises(ValueError, match="at least one repository"):
        pull_policy_json([])
