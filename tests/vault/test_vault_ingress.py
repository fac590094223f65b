"""Vault's public Ingress: off unless the stack opts in, and then only for the listed sources."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from components import config
from components.platform.vault import FLAVORS, allow_list_middleware, ingress_values
from policy.stack_file import load
from synth.core import synthesize
from tests.crd import crd_errors

REPO = Path(__file__).resolve().parents[2]
MIDDLEWARE = "kubernetes:traefik.io/v1alpha1:Middleware"


def _dev(**services) -> dict:
    values = load(REPO / "stacks" / "Pulumi.dev.yaml").values
    return {**values, "platform:services": services}


def test_off_unless_the_stack_opts_in():
    assert config.parse(_dev()).vault_ingress_cidrs is None


def test_the_opt_in_defaults_to_the_api_sources():
    cfg = config.parse(_dev(vaultIngress={}))
    assert cfg.vault_ingress_cidrs == cfg.cluster.api_allowed_cidrs
    listed = config.parse(_dev(vaultIngress={"allowedCidrs": ["192.0.2.7/32"]}))
    assert listed.vault_ingress_cidrs == ["192.0.2.7/32"]


@pytest.mark.parametrize(
    ("services", "message"),
    [
        ({"vaultIngress": {"allowedCidrs": ["0.0.0.0/0"]}}, "opens Vault's login to the internet"),
        ({"vaultIngress": {"allowedCidrs": []}}, "at least 1"),
        ({"vaultIngress": {"allowedCidrs": ["2001:db8::/32"]}}, "IPv6"),
    ],
)
def test_bad_sources_name_the_key(services, message):
    with pytest.raises(config.ConfigError) as err:
        config.parse(_dev(**services))
    (issue,) = [i for i in err.value.issues if i.key.startswith("platform:services.vaultIngress")]
    assert message in issue.message


def test_an_existing_cluster_must_list_the_sources():
    values = load(REPO / "stacks" / "Pulumi.local.yaml").values
    with pytest.raises(config.ConfigError) as err:
        config.parse({**values, "platform:services": {"vaultIngress": {}}})
    assert "platform:services.vaultIngress.allowedCidrs" in [i.key for i in err.value.issues]


@pytest.mark.parametrize("flavor", sorted(FLAVORS))
def test_the_ingress_names_a_valid_allow_list(flavor):
    middleware = allow_list_middleware(FLAVORS[flavor], flavor, ["198.51.100.0/24"])
    assert crd_errors(middleware) == []
    values = ingress_values(FLAVORS[flavor], flavor, "vault.example.net", "issuer")
    reference = values["ingress"]["annotations"]["traefik.ingress.kubernetes.io/router.middlewares"]
    # Traefik's Kubernetes CRD provider names a middleware <namespace>-<name>@kubernetescrd.
    meta = middleware["metadata"]
    assert reference == f"{meta['namespace']}-{meta['name']}@kubernetescrd"


def _allow_lists(result) -> list:
    return [m for m in result.of_type(MIDDLEWARE) if "ipAllowList" in m.inputs["spec"]]


def _vault_values(result) -> dict:
    (release,) = [
        r
        for r in result.of_type("kubernetes:helm.sh/v3:Release")
        if r.inputs.get("name") in FLAVORS
    ]
    return release.inputs["values"]


def test_synth_without_opt_in_has_no_public_vault(synth_results):
    for stack, result in synth_results.items():
        assert "vault" not in result.outputs.get("urls", {}), stack
        assert not _allow_lists(result), stack
        assert "ingress" not in _vault_values(result)["server"], stack


def test_synth_with_opt_in_guards_the_ingress(tmp_path):
    stack_file = tmp_path / "Pulumi.dev.yaml"
    document = yaml.safe_load((REPO / "stacks" / "Pulumi.dev.yaml").read_text())
    document["config"]["platform:services"] = {"vaultIngress": {}}
    stack_file.write_text(yaml.safe_dump(document))
    result = synthesize("dev", stack_file)
    (middleware,) = _allow_lists(result)
    cidrs = document["config"]["platform:cluster"]["apiAllowedCidrs"]
    assert middleware.inputs["spec"]["ipAllowList"]["sourceRange"] == cidrs
    ingress = _vault_values(result)["server"]["ingress"]
    assert ingress["annotations"]["traefik.ingress.kubernetes.io/router.middlewares"] == (
        "vault-vault-allow-list@kubernetescrd"
    )
    assert result.outputs["urls"]["vault"].startswith("https://vault.")
