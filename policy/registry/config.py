"""`platform:registry` — ECR repositories for the apps and how long their images are kept.

The tagging convention these settings parameterise is described in docs/registry.md.
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from policy.sections import ENV_NAME_RE, Section, unique
from policy.stack_file import shown

# ECR's repository-name grammar (CreateRepository API): lower-case components joined by
# single `.`, `_` or `-`, optionally namespaced with `/`, 2 to 256 characters.
ECR_REPOSITORY_RE = re.compile(
    r"^(?=.{2,256}$)(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*$"
)
# An image tag may start with a letter, digit or `_` and holds at most 128 characters; a prefix
# obeys the same alphabet so that some real tag can carry it.
TAG_PREFIX_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")

DEPLOYED_PREFIX = "deployed-"
"""CI adds `deployed-<env>-<deploy id>` to the image it deploys to `<env>`."""
PULL_REQUEST_PREFIX = "pr-"
"""CI tags pull-request builds `pr-<number>-<commit>`."""
RELEASE_PATTERN = "v*.*.*"
"""Release tags are semver with a `v` (`v1.4.2`); ECR patterns only know `*`."""
RESERVED_PREFIXES = (DEPLOYED_PREFIX, PULL_REQUEST_PREFIX)


def _overlaps_reserved(prefix: str) -> bool:
    """True when a kept prefix would claim deployed, pull-request or release tags too."""
    clashes_prefix = any(prefix.startswith(r) or r.startswith(prefix) for r in RESERVED_PREFIXES)
    return clashes_prefix or re.match(r"^v(\d|$)", prefix) is not None


class RegistryConfig(Section):
    """`platform:registry` — one private ECR repository per app, with the retention policy."""

    enabled: bool = True
    """Create the repositories (only stacks with `platform:target: aws` can)."""
    apps: list[str] = Field(default_factory=list, max_length=100)
    """Repository names, one per app image, e.g. `[shop/web, shop/api]`."""
    environments: list[str] = Field(default_factory=list, max_length=20)
    """Every environment that deploys images from these repositories (`dev`, `prod`...).

    Not derived from the stack: one stack owns the repositories and the others pull from them,
    so the owner must list them all or their `deployed-<env>-` tags would not be kept."""
    releases_kept: int = Field(default=10, ge=1, le=1000)
    """How many of the newest `v<major>.<minor>.<patch>` images are kept for rollback."""
    pull_request_days: int = Field(default=14, ge=1, le=365)
    """Days a `pr-<number>-...` image is kept after it was pushed."""
    kept_tag_prefixes: list[str] = Field(default_factory=list, max_length=20)
    """Tag prefixes that are never expired, e.g. `[base-, stable]`."""
    build_image_days: int = Field(default=7, ge=1, le=365)
    """Days any other image (CI builds such as `sha-<commit>`, untagged images) survives.

    The window between CI pushing a build and tagging what it deploys, like werf's
    keep-images-built-within-the-last-hours; ECR counts in whole days."""

    @field_validator("apps")
    @classmethod
    def _check_apps(cls, v: list[str]) -> list[str]:
        bad = [a for a in v if not ECR_REPOSITORY_RE.match(a)]
        if bad:
            raise ValueError(
                f"not ECR repository names (lower case, digits, '.', '_', '-', '/'): {shown(bad)}"
            )
        return unique(v)

    @field_validator("environments")
    @classmethod
    def _check_environments(cls, v: list[str]) -> list[str]:
        bad = [e for e in v if not ENV_NAME_RE.match(e)]
        if bad:
            raise ValueError(f"not environment names (as in platform:environment): {shown(bad)}")
        return unique(v)

    @field_validator("kept_tag_prefixes")
    @classmethod
    def _check_prefixes(cls, v: list[str]) -> list[str]:
        bad = [p for p in v if not TAG_PREFIX_RE.match(p)]
        if bad:
            raise ValueError(
                f"not image tag prefixes (letters, digits, '.', '_', '-'): {shown(bad)}"
            )
        clashing = [p for p in v if _overlaps_reserved(p)]
        if clashing:
            raise ValueError(
                f"{shown(clashing)} would also match the {DEPLOYED_PREFIX}*, "
                f"{PULL_REQUEST_PREFIX}* or {RELEASE_PATTERN} tags, "
                "whose retention has its own rule"
            )
        return unique(v)

    @model_validator(mode="after")
    def _environments_needed(self) -> RegistryConfig:
        if self.apps and not self.environments:
            raise ValueError(
                "environments is empty: list every environment that deploys these apps "
                "(e.g. [dev, prod]) so the images they run are kept"
            )
        return self

    @property
    def active(self) -> bool:
        """Whether the stack creates repositories: enabled, with at least one app."""
        return self.enabled and bool(self.apps)
