"""The building blocks of the stack config: the base of every section and the shared patterns."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from policy.stack_file import shown

_DNS_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
DNS_NAME_RE = re.compile(rf"^(?=.{{1,253}}$){_DNS_LABEL}(\.{_DNS_LABEL})+$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
INSTANCE_TYPE_RE = re.compile(
    r"^(?P<family>(?P<cls>[a-z]+)(?P<gen>\d+)(?P<attrs>[a-z-]*))\.(?P<size>[a-z0-9]+)$"
)
AWS_REGION_RE = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
ENV_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,15}$")
K8S_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
"""A Kubernetes namespace / DNS-1123 label."""
K3S_NETWORKS = {"pod": "10.42.0.0/16", "service": "10.43.0.0/16"}
"""K3s defaults; a VPC that overlaps them makes node and pod routes collide."""


def unique(values: list[str]) -> list[str]:
    """A list validator: every entry once (AWS refuses duplicate rules, and a repeated name is
    a typo)."""
    twice = sorted({v for v in values if values.count(v) > 1})
    if twice:
        raise ValueError(f"listed more than once: {shown(twice)}")
    return values


class Section(BaseModel):
    """A config section: unknown keys rejected, no type coercion, camelCase keys."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        frozen=True,
        alias_generator=to_camel,
        populate_by_name=True,
    )
