"""Generated chart values and custom resources against the upstream schemas (tests/testdata.py)."""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonschema
import pytest

from tests.conftest import require_data
from tests.crd import CRD_FOLDERS, crd_errors
from tests.platform.conftest import unwrap


def custom_resources(rec) -> list[dict[str, Any]]:
    found = []
    for r in rec.resources.values():
        group_version = r.type.removeprefix("kubernetes:").rsplit(":", 1)[0]
        if "/" in group_version and group_version.split("/")[0] in CRD_FOLDERS:
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
        assert crd_errors(obj) == [], f"{obj['kind']} {obj['metadata']['name']}"


def test_strict_check_rejects_unknown_fields(platforms):
    issuer = copy.deepcopy(platforms["dev"].by_type(":ClusterIssuer")[0].inputs)
    issuer = unwrap(issuer)
    issuer["spec"]["acme"]["solvers"][0]["http01"]["ingress"]["ingressClass"] = "traefik"
    assert any("ingressClass" in error for error in crd_errors(issuer))


def chart_schema(chart: str) -> dict[str, Any]:
    return json.loads(require_data("chart-schemas", chart, "values.schema.json").read_text())


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
