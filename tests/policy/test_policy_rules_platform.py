"""Platform rules: ACME server per stack, pinned Helm charts, Vault auto-unseal on AWS."""

from __future__ import annotations

from typing import Any

import pytest

from policy import PolicySettings, evaluate
from policy.model import UNKNOWN
from policy.rules.platform import CHART_V4, LETS_ENCRYPT_PRODUCTION, RELEASE
from tests.policy.policy_objects import fired, resource

STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"
AWS_KMS_HCL = """
ui = true
storage "raft" { path = "/vault/data" }
seal "awskms" {
  region     = "eu-west-1"
  kms_key_id = "alias/vault-unseal"
}
"""


def issuer(server: str | None, kind: str = "ClusterIssuer") -> dict[str, Any]:
    spec = (
        {"selfSigned": {}}
        if server is None
        else {
            "acme": {
                "server": server,
                "email": "ops@example.com",
                "privateKeySecretRef": {"name": "letsencrypt"},
                "solvers": [{"http01": {"ingress": {"ingressClassName": "traefik"}}}],
            }
        }
    )
    return {
        "apiVersion": "cert-manager.io/v1",
        "kind": kind,
        "metadata": {"name": "letsencrypt"},
        "spec": spec,
    }


@pytest.mark.parametrize(
    ("production", "server", "text"),
    [
        (True, STAGING, "on a production stack: browsers do not trust"),
        (False, LETS_ENCRYPT_PRODUCTION, "on a non-production stack: test stacks burn"),
        (False, LETS_ENCRYPT_PRODUCTION + "/", "on a non-production stack"),
    ],
    ids=["prod-staging", "dev-production", "dev-production-trailing-slash"],
)
def test_wrong_acme_server_for_the_stack_fails(production: bool, server: str, text: str) -> None:
    settings = PolicySettings(production=production)
    findings = evaluate(manifests=[issuer(server)], settings=settings)
    assert fired(findings) == ["acme-server-per-stack"]
    assert text in findings[0].message


@pytest.mark.parametrize(
    ("production", "obj"),
    [
        (True, issuer(LETS_ENCRYPT_PRODUCTION)),
        (False, issuer(STAGING)),
        (True, issuer(None)),
        (False, issuer(STAGING, kind="Issuer")),
    ],
    ids=["prod-production", "dev-staging", "self-signed", "namespaced-issuer"],
)
def test_right_acme_server_passes(production: bool, obj: dict[str, Any]) -> None:
    assert evaluate(manifests=[obj], settings=PolicySettings(production=production)) == []


def test_issuer_managed_by_pulumi_is_checked() -> None:
    cluster_issuer = resource(
        "kubernetes:cert-manager.io/v1:ClusterIssuer",
        "letsencrypt",
        metadata={"name": "letsencrypt"},
        spec={"acme": {"server": STAGING}},
    )
    findings = evaluate([cluster_issuer], settings=PolicySettings(production=True))
    assert fired(findings) == ["acme-server-per-stack"]
    assert findings[0].urn == cluster_issuer["urn"]


# --- helm-chart-pinned ---------------------------------------------------------------------------


def release(chart: str, version: Any = "1.21.1", **props: Any) -> dict[str, Any]:
    extra = {} if version is None else {"version": version}
    return resource(
        RELEASE,
        chart,
        chart=chart,
        repositoryOpts={"repo": "https://charts.example.com"},
        **extra,
        **props,
    )


def application(chart: str | None, revision: str) -> dict[str, Any]:
    source: dict[str, Any] = {"repoURL": "https://charts.example.com", "targetRevision": revision}
    if chart is None:
        source["path"] = "argocd-apps/apps/web"
    else:
        source["chart"] = chart
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "web", "namespace": "argocd"},
        "spec": {
            "project": "default",
            "sources": [source],
            "destination": {"server": "https://kubernetes.default.svc"},
        },
    }


@pytest.mark.parametrize(
    ("version", "text"),
    [
        (None, "no version"),
        ("", "no version"),
        ("^1.21.0", "version '^1.21.0', a range"),
        ("1.21", "version '1.21', a range"),
        ("1.x", "version '1.x', a range"),
        (">=1.0.0 <2.0.0", "version '>=1.0.0 <2.0.0', a range"),
    ],
)
def test_unpinned_release_fails(version: Any, text: str) -> None:
    findings = evaluate([release("cert-manager", version)])
    assert fired(findings) == ["helm-chart-pinned"]
    assert f"Helm chart cert-manager has {text}" in findings[0].message


@pytest.mark.parametrize(
    "res",
    [
        release("cert-manager", "v1.21.1"),
        release("rancher", "2.13.3"),
        release("openbao", "0.29.2-rc.1"),
        release("./charts/platform", None),
        resource(CHART_V4, "argo", chart="argo-cd", version="10.1.1"),
        release("cert-manager", UNKNOWN),
    ],
    ids=["v-prefix", "plain", "prerelease", "local-chart", "chart-v4", "unknown"],
)
def test_pinned_or_local_release_passes(res: dict[str, Any]) -> None:
    assert evaluate([res], rules=["helm-chart-pinned"]) == []


def test_argo_cd_sources() -> None:
    assert fired(evaluate(manifests=[application("podinfo", "*")])) == ["helm-chart-pinned"]
    assert evaluate(manifests=[application("podinfo", "6.9.2")]) == []
    assert evaluate(manifests=[application(None, "HEAD")]) == []


def test_application_set_template_and_kustomize_charts() -> None:
    appset = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "ApplicationSet",
        "metadata": {"name": "addons"},
        "spec": {
            "template": {
                "spec": {
                    "source": {
                        "chart": "{{.values.chart}}",
                        "targetRevision": "{{.values.version}}",
                    }
                }
            }
        },
    }
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "helmCharts": [
            {"name": "podinfo", "repo": "https://charts.example.com"},
            {"name": "redis", "version": "21.2.3"},
        ],
    }
    findings = evaluate(manifests=[appset, kustomization])
    assert fired(findings) == ["helm-chart-pinned"]
    assert "Helm chart podinfo has no version" in findings[0].message


# --- vault-auto-unseal ---------------------------------------------------------------------------


def vault(values: Any, chart: str = "vault") -> dict[str, Any]:
    return release(chart, "0.34.1", values=values)


@pytest.mark.parametrize(
    ("values", "text"),
    [
        (
            {
                "server": {
                    "ha": {
                        "enabled": True,
                        "raft": {"enabled": True, "config": 'storage "raft" {}'},
                    }
                }
            },
            'vault values configure no seal "awskms"',
        ),
        (
            {"server": {"standalone": {"config": '# seal "awskms" {}\nstorage "file" {}'}}},
            "configure no seal",
        ),
        ({"server": {"extraEnvironmentVars": {"VAULT_SEAL_TYPE": "shamir"}}}, "configure no seal"),
        ({"server": {"dev": {"enabled": True}}}, "vault runs in dev mode"),
        (None, "configure no seal"),
    ],
    ids=["raft-without-seal", "commented-seal", "shamir", "dev-mode", "no-values"],
)
def test_vault_without_auto_unseal_fails_on_aws(values: Any, text: str) -> None:
    findings = evaluate([vault(values)])
    assert fired(findings) == ["vault-auto-unseal"]
    assert text in findings[0].message


@pytest.mark.parametrize(
    "res",
    [
        vault(
            {"server": {"ha": {"enabled": True, "raft": {"enabled": True, "config": AWS_KMS_HCL}}}}
        ),
        vault(
            {"server": {"standalone": {"config": {"seal": {"awskms": {"region": "eu-west-1"}}}}}}
        ),
        vault({"server": {"extraEnvironmentVars": {"VAULT_SEAL_TYPE": "awskms"}}}),
        vault({"server": {"extraEnvironmentVars": {"BAO_SEAL_TYPE": "awskms"}}}, chart="openbao"),
        vault({"server": {"ha": {"enabled": True, "raft": {"enabled": True, "config": UNKNOWN}}}}),
        release("vault", "0.34.1", valueYamlFiles=[{"path": "values/vault.yaml"}]),
        release("cert-manager", values={}),
    ],
    ids=[
        "raft-hcl",
        "config-object",
        "vault-env",
        "openbao-env",
        "unknown",
        "values-from-files",
        "other-chart",
    ],
)
def test_vault_with_auto_unseal_passes(res: dict[str, Any]) -> None:
    assert evaluate([res], rules=["vault-auto-unseal"]) == []


def test_a_seal_in_a_block_the_chart_does_not_render_does_not_count() -> None:
    # HA is off, so the chart renders standalone.config and ignores ha.raft.config.
    unrendered = vault({"server": {"ha": {"enabled": False, "raft": {"config": AWS_KMS_HCL}}}})
    assert fired(evaluate([unrendered], rules=["vault-auto-unseal"])) == ["vault-auto-unseal"]


def test_vault_seal_only_required_on_aws_stacks() -> None:
    assert evaluate([vault(None)], settings=PolicySettings(aws=False)) == []


def test_vault_deployed_by_argo_cd_application() -> None:
    app = application("openbao", "0.29.2")
    app["spec"]["sources"][0]["helm"] = {"values": "server:\n  dev:\n    enabled: true\n"}
    findings = evaluate(manifests=[app], rules=["vault-auto-unseal"])
    assert "openbao runs in dev mode" in findings[0].message
    app["spec"]["sources"][0]["helm"] = {
        "valuesObject": {
            "server": {"ha": {"enabled": True, "raft": {"enabled": True, "config": AWS_KMS_HCL}}}
        }
    }
    assert evaluate(manifests=[app], rules=["vault-auto-unseal"]) == []
