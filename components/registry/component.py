"""The app image registry: one private ECR repository per app, the retention policy, pull rights."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from policy.registry.config import RegistryConfig
from policy.registry.lifecycle import lifecycle_policy_json

PULL_ACTIONS = (
    "ecr:BatchCheckLayerAvailability",
    "ecr:BatchGetImage",
    "ecr:GetDownloadUrlForLayer",
)
"""What a node needs to pull an image it is authorised for."""
# Registry login cannot be scoped: GetAuthorizationToken is an account-level action whose only
# resource is "*". The token alone reads nothing; the actions above decide which images.
LOGIN_ACTION = "ecr:GetAuthorizationToken"


def pull_policy_json(repository_arns: Sequence[str]) -> str:
    """IAM policy granting image pulls from exactly these repositories."""
    if not repository_arns:
        raise ValueError("a pull policy needs at least one repository ARN")
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "PullAppImages",
                    "Effect": "Allow",
                    "Action": list(PULL_ACTIONS),
                    "Resource": sorted(repository_arns),
                },
                {
                    "Sid": "RegistryLogin",
                    "Effect": "Allow",
                    "Action": LOGIN_ACTION,
                    "Resource": "*",
                },
            ],
        },
        sort_keys=True,
    )


def _slug(app: str) -> str:
    # ECR names never hold "--", so mapping "/" to it keeps resource names unique.
    return app.replace("/", "--")


@dataclass
class RegistryArgs:
    """Inputs of the `Registry` component."""

    config: RegistryConfig
    """`platform:registry` of the stack; must be enabled and list at least one app."""
    namespace: str
    """Repositories are `<namespace>/<app>`: ECR names are unique per account and region, so
    the stack's name keeps two stacks (or two forks) in one account from claiming the same one."""


class Registry(pulumi.ComponentResource):
    """ECR repositories for the platform's apps with tag-class retention (docs/registry.md)."""

    repositories: dict[str, aws.ecr.Repository]
    """App name -> its repository."""
    repository_urls: pulumi.Output[dict[str, str]]
    """App name -> `<account>.dkr.ecr.<region>.amazonaws.com/<namespace>/<app>`, where CI
    pushes."""
    pull_policy_document: pulumi.Output[str]
    """IAM policy JSON: pull from these repositories only, plus registry login."""
    pull_policy_arn: pulumi.Output[str]
    """Managed policy holding `pull_policy_document`, for the node roles
    (`K3sClusterArgs.extra_node_policy_arns`)."""

    def __init__(
        self, name: str, args: RegistryArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        if not args.config.active:
            raise ValueError(
                "platform:registry: the registry needs enabled: true and at least one entry in "
                "apps; skip the component otherwise"
            )
        policy = lifecycle_policy_json(args.config)
        super().__init__("platform:registry:Registry", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        self.repositories = {}
        for app in args.config.apps:
            repo = aws.ecr.Repository(
                f"{name}-repo-{_slug(app)}",
                name=f"{args.namespace}/{app}",
                # Tags are never moved: a tag names one image for good, so what was tested is what
                # runs, and "deployed" is recorded by adding a new tag per deployment.
                image_tag_mutability="IMMUTABLE",
                image_scanning_configuration={"scan_on_push": True},
                # ECR-managed AES-256: encrypted at rest with no key or key policy to manage and no
                # KMS request (quota, charge) per layer pushed or pulled. Images hold no secrets
                # (they come from Vault at run time). The type is fixed at creation: moving to a
                # customer key later means replacing the repository.
                encryption_configurations=[{"encryption_type": "AES256"}],
                # Images are data that environments run: a destroy keeps the repository
                # (protected) and would refuse to delete one that holds images; both are lifted
                # only by platform:decommission.
                force_delete=False,
                opts=pulumi.ResourceOptions(parent=self, protect=True),
            )
            aws.ecr.LifecyclePolicy(
                f"{name}-lifecycle-{_slug(app)}", repository=repo.name, policy=policy, opts=child
            )
            self.repositories[app] = repo

        self.repository_urls = pulumi.Output.all(
            **{app: repo.repository_url for app, repo in self.repositories.items()}
        )
        self.pull_policy_document = pulumi.Output.all(
            *(repo.arn for repo in self.repositories.values())
        ).apply(pull_policy_json)
        pull_policy = aws.iam.Policy(
            f"{name}-pull",
            description="Pull the platform's app images from ECR",
            policy=self.pull_policy_document,
            opts=child,
        )
        self.pull_policy_arn = pull_policy.arn
        self.register_outputs(
            {
                "repositoryUrls": self.repository_urls,
                "pullPolicyDocument": self.pull_policy_document,
                "pullPolicyArn": self.pull_policy_arn,
            }
        )
