"""Generated chart values and custom resources against the upstream schemas in ../shared."""

from __future__ import annotations

import copy
import functools
import json
from typing import Any

import jsonschema
import pytest
import yaml

from tests.conftest import require_shared
from tests.platform.conftest import unwrap

CRD_FILES = {
    ("cert-manager.io", "ClusterIssuer"): (
        "cert-manager",
        "v1.21.1",
        "cert-manager.io_clusterissuers.yaml",
    ),
    ("cert-manager.io", "Issuer"): ("cert-manager", "v1.21.1", "cert-manager.io_issuers.yaml"),
    ("cert-manager.io", "Certificate"): (
        "cert-manager",
        "v1.21.1",
        "cert-manager.io_certificates.yaml",
    ),
    ("external-secrets.io", "ClusterSecretStore"): (
        "external-secrets",
        None,
        "external-secrets.io_clustersecretstores.yaml",
    ),
    ("argoproj.io", "AppProject"): ("argo-cd", "v3.4.4", "appproject-crd.yaml"),
    ("argoproj.io", "ApplicationSet"): ("argo-cd", "v3.4.4", "applicationset-crd.yaml"),
}


def close(schema: Any) -> Any:
    """The strict form (crds/README.md): additionalProperties false on every object schema with
    properties, along properties/items/additionalProperties only."""
    if not isinstance(schema, dict):
        return schema
    schema = dict(schema)
    if "properties" in schema:
        schema["properties"] = {k: close(v) for k, v in schema["properties"].items()}
        if "additionalProperties" not in schema and not schema.get(
            "x-kubernetes-preserve-unknown-fields"
        ):
            schema["additionalProperties"] = False
    if isinstance(schema.get("items"), dict):
        schema["items"] = close(schema["items"])
    if isinstance(schema.get("additionalProperties"), dict):
        schema["additionalProperties"] = close(schema["additionalProperties"])
    return schema


@functools.cache
def crd_schema(group: str, kind: str, version: str) -> dict[str, Any]:
    folder, release, file = CRD_FILES[(group, kind)]
    path = require_shared("crds", folder, *([release] if release else []), file)
    crd = yaml.safe_load(path.read_text())
    assert (crd["spec"]["group"], crd["spec"]["names"]["kind"]) == (group, kind)
    served = {v["name"]: v for v in crd["spec"]["versions"] if v.get("served")}
    assert version in served, f"{group}/{version} {kind} is not served"
    return close(served[version]["schema"]["openAPIV3Schema"])


def custom_resources(rec) -> list[dict[str, Any]]:
    found = []
    for r in rec.resources.values():
        group_version = r.type.removeprefix("kubernetes:").rsplit(":", 1)[0]
        if "/" in group_version and group_version.split("/")[0] in {g for g, _ in CRD_FILES}:
            found.append(unwrap(r.inputs))
    return found


@pytest.mark.parametrize("stack", ["dev", "prod", "local"])
def test_custom_resources_match_their_crds_strictly(platforms, stack):
    objects = custom_resources(platforms[stack])
    kinds = {o["kind"] for o in objects}
    assert {
        "ClusterIssuer",
        "Certificate",
        "Issuer",
        "ClusterSecretStore",
        "AppProject",
        "ApplicationSet",
    } <= kinds
    for obj in objects:
        group, version = obj["apiVersion"].split("/")
        schema = crd_schema(group, obj["kind"], version)
        errors = sorted(jsonschema.Draft4Validator(schema).iter_errors(obj), key=str)
        assert not errors, f"{obj['kind']} {obj['metadata']['name']}: {[e.message for e in errors]}"


def test_strict_check_rejects_unknown_fields(platforms):
    issuer = copy.deepcopy(platforms["dev"].by_type(":ClusterIssuer")[0].inputs)
    issuer = unwrap(issuer)
    issuer["spec"]["acme"]["solvers"][0]["http01"]["ingress"]["ingressClass"] = "traefik"
    schema = crd_schema("cert-manager.io", "ClusterIssuer", "v1")
    assert not jsonschema.Draft4Validator(schema).is_valid(issuer)


def chart_schema(chart: str) -> dict[str, Any]:
    return json.loads(require_shared("chart-schemas", chart, "values.schema.json").read_text())


@pytest.mark.parametrize("stack", ["dev", "prod", "local"])
@pytest.mark.parametrize("flavor", ["vault", "openbao"])
def test_vault_values_match_the_chart_schema(stack, flavor):
    from components.platform.vault import VaultArgs, release_values

    args = VaultArgs(flavor=flavor, production=stack == "prod")
    seal = None if stack == "local" else ("eu-west-1", "arn:aws:kms:eu-west-1:1:key/k")
    values = release_values(args, seal)
    jsonschema.Draft7Validator(chart_schema(flavor)).validate(values)
    assert f"/{flavor}/data" in values["server"]["ha"]["raft"]["config"]


def test_vault_schema_catches_a_wrong_type():
    from components.platform.vault import VaultArgs, release_values

    values = release_values(VaultArgs(), None)
    values["server"]["ha"]["replicas"] = "three"
    assert not jsonschema.Draft7Validator(chart_schema("vault")).is_valid(values)


def test_cert_manager_values_match_the_chart_schema(platforms):
    schema = chart_schema("cert-manager")
    values = unwrap(platforms["dev"].one("platform-cert-manager-release").inputs["values"])
    jsonschema.Draft7Validator(schema).validate(values)
    assert not jsonschema.Draft7Validator(schema).is_valid({"crds": {"enable": True}})
