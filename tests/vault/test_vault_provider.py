"""`VaultBootstrapProvider` methods called directly against a real OpenBao server.

The server uses OpenBao's static auto-unseal seal, so this is also the end-to-end run of auto mode
(recovery keys), and its listener requires a client certificate like the Kubernetes API server: the
provider gets the server's own URL instead of the service proxy URL, with CA and client certificate.
"""

from __future__ import annotations

import base64
import os
import stat
import tempfile
from dataclasses import replace
from pathlib import Path

import dill
import hvac
import pulumi
import pytest
from pulumi.dynamic.dynamic import serialize_provider
from pulumi.output import Unknown
from pulumi.runtime import rpc

from components.vault.bootstrap import UnexpectedAnswer, WaitTimeout, bootstrap, platform_spec
from components.vault.provider import (
    VaultBootstrapProvider,
    pem_files,
    proxy_url,
    secret_output_options,
)
from tests.vault.conftest import HttpsServer, JsonHandler


@pytest.fixture(scope="module")
def server(start_bao):
    return start_bao(seal="static", tls=True)


def _spec(tokenreview, namespaces):
    return platform_spec(
        namespaces,
        seal="auto",
        kubernetes_host=tokenreview.url,
        kubernetes_ca_cert=tokenreview.ca_pem,
    )


def provider_inputs(server, spec, kube_api, **override):
    """Inputs for `server`; its init Secret goes to namespace `bao-<port>` of `kube_api`."""
    return {
        "base_url": server.url,
        "ca_pem": server.tls.ca_pem,
        "client_cert_pem": server.tls.client_cert_pem,
        "client_key_pem": server.tls.client_key_pem,
        "init_secret": {
            "api_url": kube_api.url,
            "namespace": f"bao-{server.port}",
            "statefulset": "openbao",
        },
        "spec": spec.to_dict(),
        "wait_timeout": 30,
    } | override


def test_lifecycle_create_diff_update(server, tokenreview, pki, kube_api, assert_configured):
    provider = VaultBootstrapProvider()
    spec = _spec(tokenreview, ["team-a"])
    # Invalid HCL makes the server refuse the last policy: the first run stops after init.
    broken = replace(spec, policies={**spec.policies, "zz-broken": 'path "secret/x" {'})
    checked = provider.check({}, provider_inputs(server, broken, kube_api))
    assert checked.failures == []

    created = provider.create(checked.inputs)
    outs = created.outs
    secret = (f"bao-{server.port}", "vault-bootstrap-init")
    assert secret in kube_api.secrets, "the init answer is kept until state holds it"
    assert outs["converged"] is False
    assert "policy:zz-broken failed" in outs["error"]
    assert outs["key_kind"] == "recovery" and len(outs["keys"]) == spec.key_shares
    assert outs["root_token"] and outs["root_token"] not in outs["error"]
    assert outs["changed"][0] == "init" and "unseal" not in outs["changed"]
    status = server.client().sys.read_seal_status()
    assert status["type"] == "static" and status["recovery_seal"] and not status["sealed"]

    same = provider.diff(created.id, outs, checked.inputs)
    assert same.changes and same.replaces == []

    fixed = provider_inputs(server, spec, kube_api)
    updated = provider.update(created.id, outs, fixed).outs
    assert updated["converged"] is True and updated["error"] == ""
    assert secret not in kube_api.secrets, "state held the answer: its copy is gone"
    assert updated["changed"] == [f"role:{role.name}" for role in spec.roles]
    assert (updated["root_token"], updated["keys"]) == (outs["root_token"], outs["keys"])
    assert_configured(server.client(updated["root_token"]), spec)

    assert not provider.diff(created.id, updated, fixed).changes
    new_cert, new_key = pki.issue("system:admin", server=False)
    reminted = fixed | {"client_cert_pem": new_cert, "client_key_pem": new_key}
    assert not provider.diff(created.id, updated, reminted).changes

    grown = provider_inputs(server, _spec(tokenreview, ["team-a", "team-b"]), kube_api)
    diff = provider.diff(created.id, updated, grown)
    assert diff.changes and diff.replaces == [] and not diff.delete_before_replace
    again = provider.update(created.id, updated, grown).outs
    assert again["changed"] == ["policy:apps-team-b", "role:apps-team-b"]
    assert again["root_token"] == outs["root_token"]


def test_unreachable_vault_times_out_naming_what_it_waited_for(
    server, kube_api, monkeypatch, tmp_path
):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    inputs = provider_inputs(
        server,
        platform_spec(),
        kube_api,
        client_cert_pem=None,
        client_key_pem=None,
        wait_timeout=0.3,
    )
    with pytest.raises(WaitTimeout) as info:
        VaultBootstrapProvider().create(inputs)
    message = str(info.value)
    assert f"waiting for the Vault API at {server.url} to answer" in message
    assert "timed out after 0.3s" in message and "SSL" in message
    assert list(tmp_path.iterdir()) == []


def test_check_names_each_bad_input():
    inputs = {
        "base_url": "ftp://vault",
        "client_cert_pem": "-----BEGIN CERTIFICATE-----",
        "init_secret": {"api_url": "k3s:6443", "namespace": "Vault", "statefulset": "vault"},
        "spec": {"seal": "auto", "key_shares": 3, "key_threshold": 9},
        "wait_timeout": 0,
    }
    failures = VaultBootstrapProvider().check({}, inputs).failures
    assert sorted(f.property for f in failures) == [
        "base_url",
        "client_cert_pem",
        "init_secret",
        "init_secret",
        "spec",
        "wait_timeout",
    ]
    missing = VaultBootstrapProvider().check({}, {"base_url": "https://k3s", "spec": {}})
    assert [(f.property, f.reason) for f in missing.failures] == [
        ("init_secret", "required: {api_url, namespace, statefulset}")
    ]


@pytest.mark.parametrize("unknown", [rpc.UNKNOWN, Unknown()], ids=["sentinel", "object"])
def test_check_accepts_unknown_url_during_preview(unknown):
    """The dynamic-provider host passes unknown inputs as `Unknown` objects; mocks as a string."""
    inputs = {"base_url": unknown, "init_secret": unknown, "spec": platform_spec().to_dict()}
    assert VaultBootstrapProvider().check({}, inputs).failures == []
    nested = {"api_url": unknown, "namespace": "vault", "statefulset": "vault"}
    assert VaultBootstrapProvider().check({}, inputs | {"init_secret": nested}).failures == []


def test_proxy_url():
    assert (
        proxy_url("https://k3s.example.com:6443", "vault", "vault")
        == "https://k3s.example.com:6443/api/v1/namespaces/vault/services/https:vault:8200/proxy"
    )
    assert proxy_url("https://rancher.example.com/k8s/clusters/c-1/", "bao", "openbao") == (
        "https://rancher.example.com/k8s/clusters/c-1/api/v1/namespaces/bao/services/"
        "https:openbao:8200/proxy"
    )
    assert proxy_url("https://k3s:6443", "vault", "vault-0", kind="pods") == (
        "https://k3s:6443/api/v1/namespaces/vault/pods/https:vault-0:8200/proxy"
    )
    proxied = hvac.Client(url=proxy_url("https://k3s:6443", "vault", "vault"), token="")
    assert proxied.adapter.urljoin(proxied.url, "/v1/sys/health").endswith(
        "/services/https:vault:8200/proxy/v1/sys/health"
    )


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (("k3s:6443", "vault", "vault"), "api_url"),
        (("https://k3s:6443?x=1", "vault", "vault"), "api_url"),
        (("https://k3s:6443", "Vault", "vault"), "namespace"),
        (("https://k3s:6443", "vault", "vault/../x"), "service"),
        (("https://k3s:6443", "vault", "vault", 0), "port"),
        (("https://k3s:6443", "vault", "vault-0", 8200, "https", "nodes"), "kind"),
        (("https://k3s:6443", "vault", "Vault-0", 8200, "https", "pods"), "pod"),
    ],
)
def test_proxy_url_refuses_bad_parts(args, problem):
    with pytest.raises(ValueError, match=problem):
        proxy_url(*args)


def test_pem_files_are_private_and_always_removed(pki):
    cert, key = pki.issue("system:admin", server=False)
    with (
        pytest.raises(RuntimeError, match="boom"),
        pem_files(pki.ca_pem, cert, key) as (verify, client_cert),
    ):
        paths = [verify, *client_cert]
        assert stat.S_IMODE(os.stat(os.path.dirname(verify)).st_mode) == 0o700
        for path, text in zip(paths, [pki.ca_pem, cert, key], strict=True):
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
            assert Path(path).read_text() == text
        raise RuntimeError("boom")
    assert not any(os.path.exists(path) for path in [*paths, os.path.dirname(verify)])
    with pem_files(None, None, None) as (verify, client_cert):
        assert (verify, client_cert) == (True, None)


def test_provider_survives_dill_serialisation():
    serialized = serialize_provider(VaultBootstrapProvider())
    restored = dill.loads(base64.b64decode(serialized))
    assert type(restored).__module__ == "components.vault.provider"
    init_secret = {"api_url": "https://k3s", "namespace": "vault", "statefulset": "vault"}
    inputs = {"base_url": "https://k3s", "init_secret": init_secret, "spec": {}}
    assert restored.check({}, inputs).failures == []


def test_root_token_and_keys_are_secret_outputs():
    opts = secret_output_options(pulumi.ResourceOptions(protect=True))
    assert opts.additional_secret_outputs == ["root_token", "keys"]
    assert opts.protect


def test_a_shamir_vault_is_updated_only_while_sealed(start_bao, kube_api):
    """A Shamir server seals itself when it restarts and only an update unseals it; a running
    one shows no change, so a second `up` is quiet (`--expect-no-changes`)."""
    server = start_bao(seal="shamir", tls=True)
    provider = VaultBootstrapProvider()
    spec = platform_spec(seal="shamir", kubernetes_host="https://kubernetes.default.svc")
    inputs = provider_inputs(server, spec, kube_api)
    olds = {"spec": spec.to_dict(), "converged": True}
    assert provider.diff("id", olds, inputs).changes

    client = server.client()
    answer = client.sys.initialize(secret_shares=1, secret_threshold=1)
    client.sys.submit_unseal_key(answer["keys"][0])
    assert not provider.diff("id", olds, inputs).changes
    unreachable = inputs | {"base_url": "https://127.0.0.1:9"}
    assert not provider.diff("id", olds, unreachable).changes
    assert not provider.diff("id", olds, inputs | {"base_url": rpc.UNKNOWN}).changes

    auto = platform_spec(seal="auto", kubernetes_host="https://kubernetes.default.svc").to_dict()
    assert not provider.diff("id", {"spec": auto, "converged": True}, {"spec": auto}).changes


@pytest.mark.parametrize(
    ("body", "content_type", "shown"),
    [
        (b"<html><body>It works!</body></html>", "text/html", "HTTP 200 (text/html): '<html>"),
        (b'{"kind": "Status", "apiVersion": "v1"}', "application/json", "['apiVersion', 'kind']"),
    ],
    ids=["html", "other-json"],
)
def test_an_endpoint_that_is_not_vault_is_named_with_its_answer(
    pki, tmp_path, body, content_type, shown
):
    class Handler(JsonHandler):
        def do_GET(self) -> None:
            self._answer(200, body, content_type)

        do_PUT = do_POST = do_GET

    endpoint = HttpsServer(Handler, pki, tmp_path)
    (tmp_path / "ca.pem").write_text(pki.ca_pem)
    try:
        client = hvac.Client(url=endpoint.url, token="", verify=str(tmp_path / "ca.pem"))
        with pytest.raises(UnexpectedAnswer) as info:
            bootstrap(client, platform_spec())
    finally:
        endpoint.close()
    assert endpoint.url in str(info.value) and shown in str(info.value)
