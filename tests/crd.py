"""Strict validation of custom resources against the pinned upstream CRDs (tests/testdata.py).

Strict as the API server with field validation Strict (shared/crds/README.md): every object
schema that lists properties and does not preserve unknown fields gets additionalProperties:
false, along properties, items and map values only.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft4Validator

from components import versions
from synth.charts import closed_schema as closed
from tests.conftest import require_data

CRD_FOLDERS = {
    "argoproj.io": Path("argo-cd", versions.ARGO_CD.app_version),
    "cert-manager.io": Path("cert-manager", versions.CERT_MANAGER.app_version),
    "external-secrets.io": Path("external-secrets"),
    "helm.cattle.io": Path("helm-controller"),
    "traefik.io": Path("traefik"),
}
"""API group -> folder of the CRDs of the pinned release."""


def is_custom_resource(obj: dict[str, Any]) -> bool:
    """Whether a pinned upstream CRD defines the object's kind."""
    return obj["apiVersion"].split("/")[0] in CRD_FOLDERS


@functools.cache
def _crd_documents(path: Path) -> dict[str, Any]:
    # libyaml: the ApplicationSet CRD alone is 1.4 MB, five times slower to parse in pure Python.
    return yaml.load(path.read_text(), Loader=yaml.CSafeLoader)


@functools.cache
def crd_validator(api_version: str, kind: str) -> Draft4Validator | None:
    """Strict validator of a served version of the pinned CRD, None when no version serves it."""
    group, _, version = api_version.rpartition("/")
    if group not in CRD_FOLDERS:
        pytest.fail(f"no pinned CRD folder for API group {group}")
    folder = require_data("crds", *CRD_FOLDERS[group].parts)
    # Files are named after their kind; trying those first spares parsing the others.
    for path in sorted(folder.glob("*.yaml"), key=lambda p: (kind.lower() not in p.name, p.name)):
        crd = _crd_documents(path)
        if crd.get("kind") != "CustomResourceDefinition" or crd["spec"]["names"]["kind"] != kind:
            continue
        for served in (v for v in crd["spec"]["versions"] if v.get("served")):
            if crd["spec"]["group"] == group and served["name"] == version:
                return Draft4Validator(closed(served["schema"]["openAPIV3Schema"]))
    return None


def crd_errors(obj: dict[str, Any]) -> list[str]:
    """`path: message` for every way `obj` breaks its CRD's schema."""
    validator = crd_validator(obj["apiVersion"], obj["kind"])
    if validator is None:
        return [f"no served CRD version for {obj['apiVersion']} {obj['kind']}"]
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.path)))
    ]
