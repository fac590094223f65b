"""The tagging convention (`classify`, `is_kept_reference`) and the `platform:registry` settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from policy.registry.config import RegistryConfig
from policy.registry.lifecycle import Image, evaluate, lifecycle_policy
from policy.registry.tags import (
    KEPT_CLASSES,
    TagClass,
    classify,
    is_kept_reference,
    parse_image_reference,
)

CFG = RegistryConfig(
    apps=["shop/web"], environments=["dev", "prod", "prod-eu"], kept_tag_prefixes=["base-"]
)
ECR = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop/web"
DIGEST = "sha256:" + "0123456789abcdef" * 4

TAGS = {
    "deployed-prod-20261125T1012Z": TagClass.DEPLOYED,
    "deployed-prod-eu-20261125T1012Z": TagClass.DEPLOYED,
    "deployed-dev-4711": TagClass.DEPLOYED,
    "deployed-qa-4711": TagClass.OTHER,
    "base-python3.12": TagClass.NAMED,
    "v1.4.2": TagClass.RELEASE,
    "v2.0.0-rc.1": TagClass.RELEASE,
    "pr-42-9f8e7d": TagClass.PULL_REQUEST,
    "sha-9f8e7d6": TagClass.OTHER,
    "latest": TagClass.OTHER,
    "1.4.2": TagClass.OTHER,
}


@pytest.mark.parametrize("tag", sorted(TAGS))
def test_classify(tag: str) -> None:
    assert classify(tag, CFG) is TAGS[tag]


@pytest.mark.parametrize("tag", sorted(TAGS))
def test_kept_classes_are_what_the_policy_keeps(tag: str) -> None:
    # A lone image far older than every age limit survives only if its class is a kept one.
    now = datetime(2026, 11, 25, tzinfo=UTC)
    image = Image("sha256:1", now - timedelta(days=3000), (tag,))
    kept = evaluate(lifecycle_policy(CFG), [image], now)["sha256:1"] is None
    assert kept == (classify(tag, CFG) in KEPT_CLASSES)


REFERENCES = {
    f"{ECR}@{DIGEST}": True,
    f"{ECR}:sha-9f8e7d6@{DIGEST}": True,
    f"{ECR}@sha256:abc": False,
    f"{ECR}:v1.4.2": True,
    f"{ECR}:base-python3.12": True,
    f"{ECR}:deployed-prod-20261125T1012Z": True,
    f"{ECR}:pr-42-9f8e7d": False,
    f"{ECR}:sha-9f8e7d6": False,
    ECR: False,
    "registry.local:5000/shop/web": False,
    "registry.local:5000/shop/web:v1.4.2": True,
}


@pytest.mark.parametrize("ref", sorted(REFERENCES))
def test_is_kept_reference(ref: str) -> None:
    assert is_kept_reference(ref, CFG) is REFERENCES[ref]


@pytest.mark.parametrize(
    ("tag", "environment", "kept"),
    [
        ("deployed-prod-1", "prod", True),
        ("deployed-prod-eu-1", "prod-eu", True),
        ("deployed-prod-eu-1", "prod", False),
        ("deployed-dev-1", "prod", False),
        ("v1.4.2", "prod", True),
    ],
)
def test_deployed_tags_only_count_for_their_environment(
    tag: str, environment: str, kept: bool
) -> None:
    assert is_kept_reference(f"{ECR}:{tag}", CFG, environment=environment) is kept


def test_parse_image_reference_keeps_registry_port() -> None:
    ref = parse_image_reference(f"registry.local:5000/shop/web:v1@{DIGEST}")
    assert (ref.repository, ref.tag, ref.digest) == ("registry.local:5000/shop/web", "v1", DIGEST)


def test_defaults() -> None:
    cfg = RegistryConfig()
    assert (
        cfg.enabled,
        cfg.apps,
        cfg.environments,
        cfg.releases_kept,
        cfg.pull_request_days,
        cfg.kept_tag_prefixes,
        cfg.build_image_days,
    ) == (True, [], [], 10, 14, [], 7)
    assert not cfg.active


def test_stack_file_spelling() -> None:
    cfg = RegistryConfig.model_validate(
        {
            "apps": ["shop/web"],
            "environments": ["dev"],
            "releasesKept": 5,
            "pullRequestDays": 3,
            "keptTagPrefixes": ["base-"],
            "buildImageDays": 2,
        }
    )
    assert (cfg.releases_kept, cfg.pull_request_days, cfg.build_image_days) == (5, 3, 2)
    assert cfg.active


@pytest.mark.parametrize(
    ("raw", "key", "fragment"),
    [
        ({"apps": ["Shop"], "environments": ["dev"]}, "apps", "not ECR repository names"),
        ({"apps": ["web", "web"], "environments": ["dev"]}, "apps", "more than once"),
        ({"apps": ["web"], "environments": ["Prod"]}, "environments", "not environment names"),
        ({"keptTagPrefixes": ["pr-keep"]}, "keptTagPrefixes", "would also match"),
        ({"keptTagPrefixes": ["deployed"]}, "keptTagPrefixes", "would also match"),
        ({"keptTagPrefixes": ["v2"]}, "keptTagPrefixes", "would also match"),
        ({"keptTagPrefixes": ["-x"]}, "keptTagPrefixes", "not image tag prefixes"),
        ({"apps": ["web"]}, None, "environments is empty"),
        ({"releasesKept": "10"}, "releasesKept", "valid integer"),
        ({"pullRequestDays": 0}, "pullRequestDays", "greater than or equal to 1"),
        ({"retention": 3}, "retention", "Extra inputs"),
    ],
)
def test_invalid_settings_name_the_key(raw: dict, key: str | None, fragment: str) -> None:
    with pytest.raises(ValidationError) as err:
        RegistryConfig.model_validate(raw)
    (error,) = err.value.errors()
    assert error["loc"] == ((key,) if key else ())
    assert fragment in error["msg"]


def test_vendor_prefix_is_not_taken_for_a_release() -> None:
    cfg = RegistryConfig(kept_tag_prefixes=["vendor-"])
    assert classify("vendor-1.2.3", cfg) is TagClass.NAMED
