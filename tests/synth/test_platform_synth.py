"""The platform layer as the program declares it for each stack, and for a stack with its own
Route53 zone (DNS names and DNS-01 instead of sslip.io)."""

from __future__ import annotations

import json

import pytest
import yaml

from synth.core import (
    helm_releases,
    kubernetes_objects,
    load_stack_config,
    policy_findings,
    synthesize,
)

ZONE_ID = "Z0123456789ABCDEFGHIJ"


def _issuers(result) -> dict[str, dict]:
    return {
        obj["metadata"]["name"]: obj
        for _, obj in kubernetes_objects(result)
        if obj.get("kind") == "ClusterIssuer"
    }


def test_issuers_per_stack(synth_results):
    assert sorted(_issuers(synth_results["dev"])) == ["letsencrypt-staging"]
    prod = _issuers(synth_results["prod"])
    assert sorted(prod) == ["letsencrypt-production", "letsencrypt-staging"]
    assert prod["letsencrypt-production"]["spec"]["acme"]["server"] == (
        "https://acme-v02.api.letsencrypt.org/directory"
    )
    assert prod["letsencrypt-staging"]["metadata"]["annotations"] == {
        "policy.gitops-platform/ignore": "acme-server-per-stack"
    }
    assert sorted(_issuers(synth_results["local"])) == ["platform-ca", "platform-ca-selfsigned"]


def test_platform_urls_use_sslip_without_a_domain(synth_results):
    outputs = synth_results["dev"].outputs
    ip = outputs["ingressIp"]
    assert outputs["urls"] == {
        service: f"https://{service}.{ip}.sslip.io" for service in ("argocd", "rancher")
    }
    assert "rancher" not in synth_results["local"].outputs["urls"]


@pytest.fixture(scope="module")
def zoned(tmp_path_factory):
    values = load_stack_config("prod")[0]
    values["platform:dns"] = {"domain": "prod.example.com", "hostedZoneId": ZONE_ID}
    path = tmp_path_factory.mktemp("zoned") / "Pulumi.prod.yaml"
    path.write_text(yaml.safe_dump({"config": values}))
    return synthesize("prod", path)


def test_a_hosted_zone_gives_dns_names_and_records(zoned):
    assert zoned.outputs["urls"]["argocd"] == "https://argocd.prod.example.com"
    records = {r.inputs["name"] for r in zoned.of_type("aws:route53/record:Record")}
    assert records == {f"{n}.prod.example.com" for n in ("rancher", "argocd", "vault", "*")}
    for record in zoned.of_type("aws:route53/record:Record"):
        assert record.inputs["zoneId"] == ZONE_ID
        assert record.provider.endswith("pulumi:providers:aws::aws"), "the stack's AWS provider"


def test_a_hosted_zone_solves_dns01_with_zone_scoped_rights(zoned):
    for issuer in _issuers(zoned).values():
        dns01, http01 = issuer["spec"]["acme"]["solvers"]
        assert dns01["selector"] == {"dnsZones": ["prod.example.com"]}
        assert dns01["dns01"]["route53"] == {"region": "us-east-1", "hostedZoneID": ZONE_ID}
        assert http01 == {"http01": {"ingress": {"ingressClassName": "traefik"}}}
    policies = [
        r for r in zoned.of_type("aws:iam/rolePolicy:RolePolicy") if r.name.endswith("route53")
    ]
    (route53,) = policies
    statements = json.loads(route53.inputs["policy"])["Statement"]
    zone_statement = next(s for s in statements if "Condition" in s)
    assert zone_statement["Resource"] == f"arn:aws:route53:::hostedzone/{ZONE_ID}"
    assert zone_statement["Condition"]["ForAllValues:StringEquals"][
        "route53:ChangeResourceRecordSetsRecordTypes"
    ] == ["TXT"]
    server_role = next(r for r in zoned.of_type("aws:iam/role:Role") if "server" in r.name)
    assert route53.inputs["role"] == server_role.id
    values = dict((e["name"], v) for e, v in helm_releases(zoned))["cert-manager"]
    assert values["nodeSelector"] == {"node-role.kubernetes.io/control-plane": "true"}
    assert policy_findings(zoned) == []
