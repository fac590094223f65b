"""The Platform component under Pulumi mocks: values per stack, issuers, ordering and secrets."""

from __future__ import annotations

import pytest
from pulumi.runtime import rpc

from components.platform.cert_manager import CertManagerArgs, issuer_manifests
from components.platform.dns import apps_domain, hostname
from components.platform.vault import VaultArgs
from tests.platform.conftest import (
    BCRYPT,
    CLIENT_KEY,
    GITOPS_TOKEN,
    KMS_ARN,
    PASSWORD,
    plaintext,
    unwrap,
)

RELEASE = "kubernetes:helm.sh/v3:Release"


def is_secret(value) -> bool:
    """Whether the value or any part of it is a secret: a preview would show it as one."""
    if rpc.is_rpc_secret(value):
        return True
    if isinstance(value, dict):
        return any(is_secret(v) for v in value.values())
    if isinstance(value, list):
        return any(is_secret(v) for v in value)
    return False


def values(rec, name):
    return unwrap(rec.one(f"platform-{name}-release").inputs["values"])


def test_production_values_are_highly_available(platforms):
    prod, dev = platforms["prod"], platforms["dev"]
    rancher = values(prod, "rancher")
    assert (rancher["replicas"], rancher["antiAffinity"]) == (3, "required")
    assert values(dev, "rancher")["replicas"] == 1
    budget = unwrap(prod.one("platform-rancher-pdb").inputs)
    assert budget["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "rancher"}}}
    assert "platform-rancher-pdb" not in dev.resources
    argocd = values(prod, "argocd")
    assert argocd["redis-ha"]["enabled"] and argocd["redis-ha"]["hardAntiAffinity"]
    assert argocd["global"]["affinity"] == {"podAntiAffinity": "hard"}
    for section in ("server", "repoServer", "applicationSet"):
        assert argocd[section]["replicas"] >= 2, section
        assert argocd[section]["pdb"] == {"enabled": True, "maxUnavailable": 1}, section
    assert "redis-ha" not in values(dev, "argocd")
    for release, sections in (
        ("cert-manager", (None, "webhook", "cainjector")),
        ("external-secrets", (None, "webhook", "certController")),
    ):
        for section in sections:
            part = values(prod, release)
            part = part if section is None else part[section]
            assert part["replicaCount"] >= 2, (release, section)
            assert part["podDisruptionBudget"] == {"enabled": True, "maxUnavailable": 1}
            term = part["affinity"]["podAntiAffinity"][
                "requiredDuringSchedulingIgnoredDuringExecution"
            ]
            assert term[0]["topologyKey"] == "kubernetes.io/hostname"
            small = values(dev, release)
            small = small if section is None else small[section]
            assert small["replicaCount"] == 1 and "affinity" not in small
    assert values(prod, "external-secrets")["leaderElect"] is True
    vault = values(prod, "vault")["server"]
    assert vault["ha"]["replicas"] == 3
    assert vault["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert values(dev, "vault")["server"]["ha"]["replicas"] == 1


def test_vault_on_aws_seals_with_kms_on_control_plane_nodes(platforms):
    server = values(platforms["dev"], "vault")["server"]
    config = server["ha"]["raft"]["config"]
    assert f'kms_key_id = "{KMS_ARN}"' in config and 'region = "eu-west-1"' in config
    assert server["nodeSelector"] == {"node-role.kubernetes.io/control-plane": "true"}
    local = values(platforms["local"], "vault")["server"]
    assert "awskms" not in local["ha"]["raft"]["config"] and "nodeSelector" not in local


def test_issuer_per_stack(platforms):
    def issuers(stack):
        return {
            unwrap(r.inputs)["metadata"]["name"]: unwrap(r.inputs)["spec"]
            for r in platforms[stack].by_type(":ClusterIssuer")
        }

    assert list(issuers("dev")) == ["letsencrypt-staging"]
    assert "acme-staging-v02" in issuers("dev")["letsencrypt-staging"]["acme"]["server"]
    solver = issuers("dev")["letsencrypt-staging"]["acme"]["solvers"][0]
    assert solver["http01"]["ingress"]["ingressClassName"] == "traefik"
    assert list(issuers("prod")) == ["letsencrypt-staging", "letsencrypt-production"]
    prod_annotation = values(platforms["prod"], "rancher")["ingress"]["extraAnnotations"]
    assert prod_annotation == {"cert-manager.io/cluster-issuer": "letsencrypt-production"}
    assert issuers("local")["platform-ca"] == {"ca": {"secretName": "platform-ca"}}
    annotation = values(platforms["dev"], "rancher")["ingress"]["extraAnnotations"]
    assert annotation == {"cert-manager.io/cluster-issuer": "letsencrypt-staging"}


def test_issuer_name_follows_the_acme_server():
    assert CertManagerArgs(True, "production", "a@b.io").issuer_name == "letsencrypt-production"
    assert CertManagerArgs(False).issuer_name == "platform-ca"
    # An ACME account needs no contact: without one the issuer carries no email at all.
    (issuer,) = issuer_manifests(CertManagerArgs(True, "staging", None))
    assert "email" not in issuer["spec"]["acme"]
    with pytest.raises(ValueError, match="flavor"):
        VaultArgs(flavor="consul")  # type: ignore[arg-type]


@pytest.mark.parametrize("stack", ["dev", "prod", "local"])
def test_every_kubernetes_resource_uses_the_provider_behind_the_gate(platforms, stack):
    rec = platforms[stack]
    k8s_resources = [
        r
        for r in rec.resources.values()
        if r.type.startswith("kubernetes:") and r.name != "cluster-k8s"
    ]
    assert len(k8s_resources) > 15
    for r in k8s_resources:
        opts = rec.options[r.name]
        assert opts.provider is not None and opts.provider._name == "cluster-k8s", r.name
        assert "gate" in rec.dependencies(r.name), r.name
    assert "gate" in rec.dependencies("platform-vault-bootstrap")


@pytest.mark.parametrize("stack", ["dev", "local"])
def test_dependency_order(platforms, stack):
    rec = platforms[stack]
    for issuer in rec.by_type(":ClusterIssuer"):
        assert "platform-cert-manager-release" in rec.dependencies(issuer.name)
    assert "platform-vault-release" in rec.dependencies("platform-vault-bootstrap")
    assert {"platform-vault-certificate-vault-server-tls"} <= rec.dependencies(
        "platform-vault-release"
    )
    store = rec.dependencies("platform-external-secrets-store")
    assert {"platform-vault-bootstrap", "platform-external-secrets-release"} <= store
    root = rec.dependencies("platform-argocd-applicationset-apps")
    assert {
        "platform-argocd-repo",
        "platform-argocd-cluster",
        "platform-argocd-release",
        "platform-argocd-appproject-apps",
    } <= root
    assert "platform-cert-manager-clusterissuer-" in " ".join(
        rec.dependencies("platform-argocd-release")
    )
    if stack == "dev":
        assert "platform-cert-manager-release" in rec.dependencies("platform-rancher-release")


def test_no_plaintext_secrets_in_inputs(platforms):
    secrets = {PASSWORD, BCRYPT, GITOPS_TOKEN, CLIENT_KEY}
    for stack, rec in platforms.items():
        for r in rec.resources.values():
            leaked = secrets & set(plaintext(r.inputs))
            assert not leaked, f"{stack}: {r.name} carries {leaked} in plaintext"
    repo = unwrap(platforms["dev"].one("platform-argocd-repo").inputs)
    assert repo["stringData"]["password"] == GITOPS_TOKEN
    assert repo["metadata"]["labels"] == {"argocd.argoproj.io/secret-type": "repository"}
    # The passwords live in Secrets the stack owns; the values only name them.
    assert values(platforms["dev"], "argocd")["configs"]["secret"] == {"createSecret": False}
    admin = unwrap(platforms["dev"].one("platform-argocd-admin-secret").inputs)
    assert admin["metadata"]["name"] == "argocd-secret"
    assert admin["stringData"] == {"admin.password": BCRYPT}
    assert "platform-argocd-admin-secret" in platforms["dev"].dependencies(
        "platform-argocd-release"
    )
    bootstrap = unwrap(platforms["dev"].one("platform-rancher-bootstrap-secret").inputs)
    assert bootstrap["stringData"] == {"bootstrapPassword": PASSWORD}
    (env,) = values(platforms["dev"], "rancher")["extraEnv"]
    assert env["valueFrom"]["secretKeyRef"]["name"] == bootstrap["metadata"]["name"]
    for stack, rec in platforms.items():
        for release in rec.by_type(RELEASE):
            assert not is_secret(release.inputs["values"]), f"{stack}: {release.name}"


def test_hostnames_sslip_and_domain(platforms):
    assert hostname("rancher", None, "203.0.113.10") == "rancher.203.0.113.10.sslip.io"
    assert hostname("argocd", "dev.example.com", "203.0.113.10") == "argocd.dev.example.com"
    assert apps_domain(None, "2001:db8::1") == "2001-db8--1.sslip.io"
    with pytest.raises(ValueError, match="not an IP"):
        apps_domain(None, "ingress.example.com")
    assert values(platforms["dev"], "rancher")["hostname"] == "rancher.203.0.113.10.sslip.io"
    assert values(platforms["prod"], "argocd")["global"]["domain"] == "argocd.prod.example.com"
    records = {
        unwrap(r.inputs)["name"]: unwrap(r.inputs)["records"]
        for r in platforms["prod"].by_type("route53/record:Record")
    }
    assert records == {
        f"{n}.prod.example.com": ["203.0.113.10"] for n in ("rancher", "argocd", "vault", "*")
    }
    assert not platforms["dev"].by_type("route53/record:Record")


def test_cluster_secret_carries_the_gitops_contract(platforms):
    secret = unwrap(platforms["local"].one("platform-argocd-cluster").inputs)["metadata"]
    assert secret["labels"]["argocd.argoproj.io/secret-type"] == "cluster"
    assert secret["annotations"]["platform_domain"] == "127.0.0.1.sslip.io"
    assert secret["annotations"]["platform_cluster_issuer"] == "platform-ca"
    assert secret["annotations"]["platform_secret_store"] == "vault"
    assert "platform-rancher-release" not in platforms["local"].resources


def test_root_objects_do_not_depend_on_the_domain(platforms):
    for r in platforms["local"].resources.values():
        if r.type.startswith("kubernetes:argoproj.io"):
            assert "sslip" not in " ".join(plaintext(r.inputs)), r.name


@pytest.mark.parametrize("stack", ["dev", "local"])
def test_every_release_installs_into_a_namespace_the_stack_owns(platforms, stack):
    """Helm's --create-namespace would leave the namespace behind on `pulumi destroy`."""
    rec = platforms[stack]
    namespaces = {
        unwrap(r.inputs)["metadata"]["name"]: r.name for r in rec.by_type("core/v1:Namespace")
    }
    for release in rec.by_type(RELEASE):
        inputs = unwrap(release.inputs)
        assert not inputs.get("createNamespace"), release.name
        assert namespaces[inputs["namespace"]] in rec.dependencies(release.name), release.name


def test_charts_come_from_the_configured_directory(tmp_path):
    from components import versions
    from components.config import parse
    from components.platform import Platform, PlatformArgs
    from tests.platform.conftest import STACKS, fake_access, synthesize

    for pin in versions.CHARTS.values():
        (tmp_path / f"{pin.chart}-{pin.version}.tgz").write_bytes(b"")
    cfg = parse({**STACKS["local"], "platform:charts": {"directory": str(tmp_path)}})

    def program() -> None:
        Platform("platform", fake_access(False, "127.0.0.1"), PlatformArgs(config=cfg))

    releases = synthesize(program).by_type(RELEASE)
    assert len(releases) == 4
    for release in releases:
        inputs = unwrap(release.inputs)
        assert inputs["chart"].startswith(f"{tmp_path}/") and inputs["chart"].endswith(".tgz")
        assert "repositoryOpts" not in inputs and "version" not in inputs
