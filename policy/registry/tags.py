"""The image tagging convention as code: which class a tag belongs to, and which references last.

A tag's class is decided by the same rules that make up the generated lifecycle policy
(`lifecycle.class_rules`), matched the way ECR matches them, so this module and the registry can
never disagree about what is kept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from policy.registry.config import RegistryConfig
from policy.registry.lifecycle import ClassRule, TagClass, class_rules, selection_matches

KEPT_CLASSES = frozenset({TagClass.DEPLOYED, TagClass.NAMED, TagClass.RELEASE})
"""Classes whose images outlive a deployment that references them: deployed tags are kept
while deployed, named tags forever, release tags while among the newest kept releases (and,
once deployed, by their deployed tag)."""
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
IMPLICIT_TAG = "latest"
"""What a container runtime pulls when a reference names no tag and no digest."""

__all__ = [
    "KEPT_CLASSES",
    "ImageReference",
    "TagClass",
    "classify",
    "is_kept_reference",
    "parse_image_reference",
]


@dataclass(frozen=True)
class ImageReference:
    """`[registry/]repository[:tag][@digest]` taken apart."""

    repository: str
    tag: str | None
    digest: str | None


def parse_image_reference(image_ref: str) -> ImageReference:
    """Split an image reference; the tag is after the last `:` of the last path segment, so a
    registry port (`host:5000/app`) is not mistaken for one."""
    name, _, digest = image_ref.partition("@")
    tag = None
    if ":" in name.rsplit("/", 1)[-1]:
        name, tag = name.rsplit(":", 1)
    return ImageReference(repository=name, tag=tag, digest=digest or None)


def _claiming_rule(tag: str, cfg: RegistryConfig) -> ClassRule:
    # The last rule selects every image, so some rule always claims the tag.
    return next(r for r in class_rules(cfg) if selection_matches(r.selection, (tag,)))


def classify(tag: str, cfg: RegistryConfig) -> TagClass:
    """The class of `tag`: the class of the highest-priority policy rule that selects it."""
    return _claiming_rule(tag, cfg).tag_class


def is_kept_reference(image_ref: str, cfg: RegistryConfig, environment: str | None = None) -> bool:
    """Whether a workload may reference `image_ref` without the registry expiring it under it.

    True for a digest pin (`...@sha256:<64 hex>`; CI tags every digest it deploys) and for a
    tag of a kept class. With `environment`, a deployed tag only counts for that environment:
    CI removes `deployed-dev-...` once dev moves on, whatever prod still references.
    Only the reference is judged, not which registry it points at."""
    ref = parse_image_reference(image_ref)
    if ref.digest is not None:
        return DIGEST_RE.match(ref.digest) is not None
    rule = _claiming_rule(ref.tag or IMPLICIT_TAG, cfg)
    if rule.tag_class is TagClass.DEPLOYED and environment is not None:
        return rule.environment == environment
    return rule.tag_class in KEPT_CLASSES
