"""The HelmChartConfig for K3s's Traefik: schema-valid, highly available in production, draining
cleanly.

Schemas come from the shared folder next to the repository (helm-controller's CRD, the Traefik
chart's values.schema.json); those tests skip when it is absent. The rest hold on their own.
"""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from components import versions
from components.k3s.traefik import (
    ENTRY_POINTS,
    MANIFEST_NAME,
    POD_LABELS,
    ShutdownTiming,
    render_manifest,
    traefik_helm_chart_config,
)
from tests.conftest import require_data
from tests.crd import crd_validator as strict_crd_validator

CONFIGS = {
    "production": traefik_helm_chart_config(production=True),
    "production-3": traefik_helm_chart_config(production=True, replicas=3),
    "development": traefik_helm_chart_config(production=False),
}


def _values(config: dict[str, Any]) -> dict[str, Any]:
    return yaml.safe_load(config["spec"]["valuesContent"])


@pytest.fixture(scope="module")
def crd_validator() -> jsonschema.Validator:
    validator = strict_crd_validator("helm.cattle.io/v1", "HelmChartConfig")
    assert validator is not None, "helm-controller serves HelmChartConfig v1"
    return validator


@pytest.fixture(scope="module")
def values_validator() -> jsonschema.Validator:
    schema = json.loads(require_data("chart-schemas", "traefik", "values.schema.json").read_text())
    return jsonschema.validators.validator_for(schema)(schema)


def _errors(validator: jsonschema.Validator, document: Any) -> list[str]:
    return [f"{e.json_path}: {e.message}" for e in validator.iter_errors(document)]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_helm_chart_config_matches_the_crd(crd_validator: jsonschema.Validator, name: str) -> None:
    config = CONFIGS[name]
    assert (config["apiVersion"], config["kind"]) == ("helm.cattle.io/v1", "HelmChartConfig")
    assert config["metadata"] == {"name": "traefik", "namespace": "kube-system"}
    assert _errors(crd_validator, config) == []


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"valuesContent": {"deployment": {"replicas": 2}}}, "$.spec.valuesContent"),
        ({"values_content": "deployment: {}"}, "$.spec"),
        ({"failurePolicy": "ignore"}, "$.spec.failurePolicy"),
    ],
)
def test_crd_check_catches_a_wrong_spec(
    crd_validator: jsonschema.Validator, change: dict, path: str
) -> None:
    config = traefik_helm_chart_config(production=True)
    config["spec"].update(change)
    assert any(e.startswith(f"{path}:") for e in _errors(crd_validator, config))


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_values_match_the_traefik_chart_schema(
    values_validator: jsonschema.Validator, name: str
) -> None:
    assert _errors(values_validator, _values(CONFIGS[name])) == []


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("deployment", "replicas"), "2"),
        (("podDisruptionBudget", "maxUnavailable"), -1),
        # The chart's port schema is closed; that is why reusePort is passed as a Traefik flag.
        (("ports", "web", "reusePort"), True),
    ],
)
def test_values_check_catches_a_wrong_value(
    values_validator: jsonschema.Validator, path: tuple[str, ...], value: Any
) -> None:
    values = _values(traefik_helm_chart_config(production=True))
    target = values
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    assert _errors(values_validator, values) != []


def test_keys_renamed_between_chart_40_and_41_are_not_used() -> None:
    # K3s v1.34 ships chart 40.x, the shared schema is 41.x: a key from either logging syntax
    # fails the other chart's closed root schema.
    for name, config in CONFIGS.items():
        assert not {"logs", "log", "accessLog"} & set(_values(config)), name


def test_production_spreads_replicas_one_per_node() -> None:
    for name in ("production", "production-3"):
        values = _values(CONFIGS[name])
        assert values["deployment"]["replicas"] >= 2, name
        anti_affinity = values["affinity"]["podAntiAffinity"]
        (term,) = anti_affinity["requiredDuringSchedulingIgnoredDuringExecution"]
        assert term["topologyKey"] == "kubernetes.io/hostname", name
        assert term["labelSelector"]["matchLabels"] == POD_LABELS, name
        assert values["podDisruptionBudget"] == {"enabled": True, "maxUnavailable": 1}, name
        # A surge pod could not be scheduled next to the others; pods are replaced in place.
        assert values["updateStrategy"]["rollingUpdate"]["maxSurge"] == 0, name
    assert _values(CONFIGS["production-3"])["deployment"]["replicas"] == 3


def test_development_runs_one_replica_without_spreading() -> None:
    values = _values(CONFIGS["development"])
    assert values["deployment"]["replicas"] == 1
    assert not {"affinity", "podDisruptionBudget", "updateStrategy"} & set(values)


def _seconds(duration: str | int) -> int:
    match = re.fullmatch(r"(\d+)s?", str(duration))
    assert match, f"{duration!r} is not a duration in seconds"
    return int(match[1])


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_shutdown_fits_in_the_grace_period(name: str) -> None:
    values = _values(CONFIGS[name])
    grace_period = values["deployment"]["terminationGracePeriodSeconds"]
    pre_stop = values["deployment"]["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert 0 < pre_stop < grace_period
    for entry_point in ENTRY_POINTS:
        life_cycle = values["ports"][entry_point]["transport"]["lifeCycle"]
        accept = _seconds(life_cycle["requestAcceptGraceTimeout"])
        finish = _seconds(life_cycle["graceTimeOut"])
        assert accept > 0 and finish > 0, entry_point
        # The grace period runs from deletion: preStop first, then Traefik's own drain.
        assert pre_stop + accept + finish < grace_period, entry_point


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_reuse_port_access_logs_and_metrics(name: str) -> None:
    values = _values(CONFIGS[name])
    args = values["additionalArguments"]
    for entry_point in ENTRY_POINTS:
        assert f"--entryPoints.{entry_point}.reusePort=true" in args
    assert "--accesslog=true" in args
    prometheus = values["metrics"]["prometheus"]
    assert prometheus["entryPoint"] == "metrics" and prometheus["addEntryPointsLabels"] is True


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_k3s_service_and_ports_are_left_alone(name: str) -> None:
    values = _values(CONFIGS[name])
    assert "service" not in values and "hostNetwork" not in values
    for entry_point, port in values["ports"].items():
        assert set(port) == {"transport"}, entry_point


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_pod_settings_are_valid_kubernetes(name: str) -> None:
    # The chart copies these verbatim into the pod spec, and its schema types them only as
    # "object"; Kubernetes' own strict schema catches a misspelt field.
    values = _values(CONFIGS[name])
    pod_spec: dict[str, Any] = {
        "terminationGracePeriodSeconds": values["deployment"]["terminationGracePeriodSeconds"],
        "containers": [
            {"name": "traefik", "image": "traefik", "lifecycle": values["deployment"]["lifecycle"]}
        ],
    }
    if "affinity" in values:
        pod_spec["affinity"] = values["affinity"]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "traefik"}, "spec": pod_spec}
    kubernetes_validate.validate(pod, versions.kubernetes_minor(), strict=True)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"production": True, "replicas": 1}, "production needs at least 2"),
        ({"production": False, "replicas": 0}, "at least 1"),
    ],
)
def test_invalid_arguments_are_refused(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        traefik_helm_chart_config(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"pre_stop_sleep": 20, "grace_timeout": 40}, "must stay below termination_grace_period"),
        ({"termination_grace_period": 45}, "must stay below termination_grace_period"),
        ({"request_accept_grace": -1}, "request_accept_grace must not be negative"),
    ],
)
def test_inconsistent_timing_is_refused(kwargs: dict[str, int], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        ShutdownTiming(**kwargs)


def test_manifest_file_holds_the_helm_chart_config() -> None:
    assert MANIFEST_NAME == "traefik-config.yaml"
    text = render_manifest(production=True)
    assert yaml.safe_load(text) == traefik_helm_chart_config(production=True)
    assert "valuesContent: |" in text
