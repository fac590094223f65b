"""`components.vault.bootstrap` against a real OpenBao server (Raft storage, shamir seal).

The module's server starts uninitialised; the first bootstrap run on it is the fresh-server run.
Auto-unseal (recovery keys) runs end to end in test_vault_provider.py on a static-seal server.
"""

from __future__ import annotations

import base64
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import replace

import hvac
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hvac import exceptions as hvac_errors

from components.vault.bootstrap import (
    SECRET_OUTPUTS,
    BootstrapError,
    BootstrapResult,
    BootstrapSpec,
    KvMount,
    SpecError,
    TokenRejected,
    WaitTimeout,
    bootstrap,
    configuration_steps,
    duration_seconds,
    init_parameters,
    platform_spec,
    role_body,
    wait_until,
)
from tests.vault.conftest import Pki

APP_NAMESPACES = ("team-a", "team-b")


@pytest.fixture(scope="module")
def spec(tokenreview) -> BootstrapSpec:
    return platform_spec(
        APP_NAMESPACES,
        seal="shamir",
        kubernetes_host=tokenreview.url,
        kubernetes_ca_cert=tokenreview.ca_pem,
    )


@pytest.fixture(scope="module")
def first_run(bao, spec) -> tuple[BootstrapResult, list[str]]:
    """The full bootstrap of the module's fresh server, timed and with its progress messages."""
    messages: list[str] = []
    start = time.perf_counter()
    result = bootstrap(bao.client(), spec, progress=messages.append)
    print(f"\nfull bootstrap of a fresh OpenBao (raft, shamir): {time.perf_counter() - start:.2f}s")
    return result, messages


def _secret_values(result: BootstrapResult) -> list[str]:
    return [result.root_token, *result.keys]


def _unconfigure(client: hvac.Client, spec: BootstrapSpec) -> None:
    """Back to "initialised and unsealed, nothing configured" (disabling auth drops its roles)."""
    for mount in spec.kv_mounts:
        client.sys.disable_secrets_engine(mount.path)
    assert spec.kubernetes is not None
    client.sys.disable_auth_method(spec.kubernetes.mount_path)
    for name in spec.policies:
        client.sys.delete_policy(name)


def test_fresh_server_is_initialised_unsealed_and_configured(
    bao, spec, first_run, assert_configured
):
    result, messages = first_run
    step_names = [step.name for step in configuration_steps(spec)]
    assert result.changed == ("init", "unseal", *step_names)
    assert result.key_kind == "unseal"
    assert len(result.keys) == spec.key_shares and len(set(result.keys)) == spec.key_shares
    status = bao.client().sys.read_seal_status()
    assert status["initialized"] and not status["sealed"]
    assert (status["n"], status["t"]) == (spec.key_shares, spec.key_threshold)
    assert_configured(bao.client(result.root_token), spec)
    assert set(result.policies) == set(spec.policies)
    assert set(result.roles) == {role.name for role in spec.roles}
    for value in _secret_values(result):
        assert value not in repr(result) and value not in str(result)
        assert not any(value in message for message in messages)
    assert result.secrets() == {"root_token": result.root_token, "keys": list(result.keys)}


def test_second_run_changes_nothing(bao, spec, first_run, assert_configured):
    first, _ = first_run
    again = bootstrap(bao.client(), spec, previous=first)
    assert again.changed == ()
    assert again.secrets() == first.secrets()
    assert_configured(bao.client(first.root_token), spec)


def test_run_interrupted_after_any_step_converges(bao, spec, first_run, assert_configured):
    first, _ = first_run
    root = bao.client(first.root_token)
    steps = configuration_steps(spec)
    for done in range(len(steps) + 1):
        _unconfigure(root, spec)
        for step in steps[:done]:
            assert step.apply(root), f"{step.name} found nothing to do on an unconfigured server"
        result = bootstrap(bao.client(), spec, previous=first)
        assert result.changed == tuple(step.name for step in steps[done:]), f"after {done} steps"
        assert_configured(root, spec)


def _foreign_public_key() -> str:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


# Every field of a role that the spec owns, each with a value the spec never uses.
_FOREIGN_ROLE = {
    "bound_service_account_names": ["intruder"],
    "bound_service_account_namespaces": ["elsewhere"],
    "bound_service_account_namespace_selector": '{"matchLabels":{"x":"y"}}',
    "audience": "somebody-else",
    "alias_name_source": "serviceaccount_name",
    "token_policies": ["default"],
    "token_ttl": 7200,
    "token_max_ttl": 86400,
    "token_explicit_max_ttl": 90000,
    "token_period": 3600,
    "token_no_default_policy": True,
    "token_num_uses": 3,
    "token_bound_cidrs": ["10.0.0.0/8"],
    "token_type": "service",
}
"""All but `token_strictly_bind_ip`, which Vault refuses together with `token_bound_cidrs`."""


def test_drift_in_every_owned_field_is_repaired_and_reported(
    bao, spec, first_run, assert_configured
):
    first, _ = first_run
    root = bao.client(first.root_token)
    root.sys.disable_secrets_engine("secret")
    root.sys.enable_secrets_engine(
        "kv", path="secret", description="foreign", options={"version": "1"}
    )
    root.adapter.post(
        "/v1/auth/kubernetes/config",
        json={
            "kubernetes_host": "https://elsewhere.example:6443",
            "kubernetes_ca_cert": Pki().ca_pem,
            "pem_keys": [_foreign_public_key()],
            "issuer": "https://issuer.example",
            "disable_iss_validation": False,
            "disable_local_ca_jwt": False,
            "token_reviewer_jwt": "foreign.reviewer.jwt",
        },
    )
    root.sys.create_or_update_policy("apps-team-a", 'path "secret/*" { capabilities = ["read"] }')
    root.adapter.post(
        "/v1/auth/kubernetes/role/apps-team-a",
        json={
            "token_period": "768h",
            "token_no_default_policy": True,
            "token_explicit_max_ttl": 60,
        },
    )
    root.adapter.post("/v1/auth/kubernetes/role/raft-snapshot", json=_FOREIGN_ROLE)
    root.adapter.post(
        "/v1/auth/kubernetes/role/external-secrets", json={"token_strictly_bind_ip": True}
    )
    assert {*_FOREIGN_ROLE, "token_strictly_bind_ip"} == set(role_body(spec.roles[0]))

    messages: list[str] = []
    repaired = bootstrap(bao.client(), spec, previous=first, progress=messages.append)

    assert repaired.changed == (
        "kv:secret",
        "auth:kubernetes/config",
        "policy:apps-team-a",
        "role:external-secrets",
        "role:raft-snapshot",
        "role:apps-team-a",
    )
    config_fields = (
        "kubernetes_host, pem_keys, issuer, disable_iss_validation, disable_local_ca_jwt, "
        "kubernetes_ca_cert, token_reviewer_jwt"
    )
    assert {
        "kv:secret: repaired version, description",
        f"auth:kubernetes/config: repaired {config_fields}",
        "policy:apps-team-a: repaired rules",
        "role:external-secrets: repaired token_strictly_bind_ip",
        f"role:raft-snapshot: repaired {', '.join(_FOREIGN_ROLE)}",
        "role:apps-team-a: repaired token_explicit_max_ttl, token_period, token_no_default_policy",
    } <= set(messages)
    assert bootstrap(bao.client(), spec, previous=repaired).changed == ()
    assert_configured(root, spec)
    # The KV v1 -> v2 upgrade finishes in the background; later tests write to the mount.
    wait_until(
        "the upgraded KV mount to accept writes",
        lambda: (bool(root.secrets.kv.v2.create_or_update_secret("probe", {"x": "1"})), "ok"),
        timeout=10,
        progress=print,
    )


def test_a_foreign_mount_in_the_way_is_reported(bao, spec, first_run):
    first, _ = first_run
    root = bao.client(first.root_token)
    root.sys.enable_secrets_engine("transit", path="taken")
    clash = replace(spec, kv_mounts=(*spec.kv_mounts, KvMount("taken")))
    try:
        with pytest.raises(BootstrapError, match="taken/ is mounted as 'transit', not as KV"):
            bootstrap(bao.client(), clash, previous=first)
    finally:
        root.sys.disable_secrets_engine("taken")


def test_removing_an_app_namespace_revokes_its_role_and_policy(bao, spec, first_run, tokenreview):
    first, _ = first_run
    root = bao.client(first.root_token)
    smaller = platform_spec(
        ["team-a"],
        seal="shamir",
        kubernetes_host=tokenreview.url,
        kubernetes_ca_cert=tokenreview.ca_pem,
    )
    shrunk = bootstrap(bao.client(), smaller, previous=first)
    assert shrunk.changed == ("role:apps-team-b:delete", "policy:apps-team-b:delete")
    with pytest.raises(hvac_errors.InvalidPath):
        root.sys.read_policy("apps-team-b")
    with pytest.raises(hvac_errors.InvalidPath):
        root.auth.kubernetes.read_role("apps-team-b")

    grown = bootstrap(bao.client(), spec, previous=shrunk)
    assert grown.changed == ("policy:apps-team-b", "role:apps-team-b")


def test_sealed_server_is_unsealed_with_the_previous_keys(bao, spec, first_run, assert_configured):
    first, _ = first_run
    bao.restart()
    assert bao.client().sys.read_seal_status()["sealed"]
    # Someone's abandoned attempt: a stray key share must not be mixed with the real ones.
    stray = bao.client().sys.submit_unseal_key(base64.b64encode(os.urandom(33)).decode())
    assert stray["progress"] == 1
    result = bootstrap(bao.client(), spec, previous=first)
    assert result.changed == ("unseal",)
    assert not bao.client().sys.read_seal_status()["sealed"]
    assert_configured(bao.client(first.root_token), spec)


def _revoked_root_token(client: hvac.Client) -> str:
    token = client.auth.token.create(policies=["root"], ttl="10m")["auth"]["client_token"]
    client.auth.token.revoke(token)
    return token


@pytest.mark.parametrize(
    "make_token",
    [
        pytest.param(lambda client: "s.WrongTokenWrongTokenWrong1", id="wrong"),
        pytest.param(_revoked_root_token, id="revoked"),
    ],
)
def test_bad_token_gives_a_clear_error_without_the_secret(
    bao, spec, first_run, make_token: Callable[[hvac.Client], str]
):
    first, _ = first_run
    bad_token = make_token(bao.client(first.root_token))
    previous = replace(first, root_token=bad_token)
    with pytest.raises(TokenRejected) as info:
        bootstrap(bao.client(), spec, previous=previous)
    message = str(info.value)
    assert "rejected the root token of the previous bootstrap result" in message
    assert "wrong" in message and "revoked" in message
    everything = "".join(traceback.format_exception(info.value)) + repr(info.value)
    for value in [bad_token, *_secret_values(first)]:
        assert value not in everything


def test_initialised_server_without_credentials_is_refused(bao, spec, first_run):
    with pytest.raises(BootstrapError, match="already initialised and neither"):
        bootstrap(bao.client(), spec)


def test_policies_grant_and_deny(bao, spec, first_run, tokenreview):
    first, _ = first_run
    root = bao.client(first.root_token)
    kv = root.secrets.kv.v2
    for path in ("apps/team-a/db", "apps/team-b/db", "platform/admin"):
        kv.create_or_update_secret(path, {"password": f"pw-{path}"}, mount_point="secret")

    def login(role: str, namespace: str, service_account: str, known: bool = True) -> hvac.Client:
        client = bao.client()
        client.auth.kubernetes.login(role, tokenreview.jwt(namespace, service_account, known=known))
        return client

    def read(client: hvac.Client, path: str) -> str:
        secret = client.secrets.kv.v2.read_secret_version(
            path, mount_point="secret", raise_on_deleted_version=True
        )
        return secret["data"]["data"]["password"]

    def write(client: hvac.Client, path: str) -> None:
        client.secrets.kv.v2.create_or_update_secret(path, {"password": "x"}, mount_point="secret")

    # External Secrets logs in as the reader account of each ExternalSecret's namespace: it reads
    # that namespace's secrets and nothing of any other namespace.
    eso_a = login("external-secrets", "team-a", "external-secrets-reader")
    assert read(eso_a, "apps/team-a/db") == "pw-apps/team-a/db"
    listed = eso_a.secrets.kv.v2.list_secrets("apps/team-a", mount_point="secret")["data"]["keys"]
    assert listed == ["db"]
    eso_b = login("external-secrets", "team-b", "external-secrets-reader")
    assert read(eso_b, "apps/team-b/db") == "pw-apps/team-b/db"
    for denied in (
        lambda: read(eso_a, "apps/team-b/db"),
        lambda: read(eso_b, "apps/team-a/db"),
        lambda: write(eso_a, "apps/team-a/db"),
        lambda: read(eso_a, "platform/admin"),
        lambda: eso_a.secrets.kv.v2.list_secrets("apps", mount_point="secret"),
    ):
        with pytest.raises(hvac_errors.Forbidden):
            denied()

    team_a = login("apps-team-a", "team-a", "web")
    write(team_a, "apps/team-a/web")
    assert read(team_a, "apps/team-a/web") == "x"
    assert read(team_a, "apps/team-a/db") == "pw-apps/team-a/db"
    for denied in (
        lambda: read(team_a, "apps/team-b/db"),
        lambda: write(team_a, "apps/team-b/db"),
        lambda: read(team_a, "platform/admin"),
        lambda: team_a.secrets.kv.v2.list_secrets("apps", mount_point="secret"),
    ):
        with pytest.raises(hvac_errors.Forbidden):
            denied()

    for role, namespace, service_account, known in [
        ("external-secrets", "team-a", "default", True),
        ("external-secrets", "external-secrets", "external-secrets", True),
        ("apps-team-a", "team-b", "web", True),
        ("external-secrets", "team-a", "external-secrets-reader", False),
    ]:
        with pytest.raises(hvac_errors.VaultError):
            login(role, namespace, service_account, known)


def test_wait_reports_progress_and_names_what_timed_out():
    messages: list[str] = []
    states = iter(range(1000))
    with pytest.raises(WaitTimeout) as info:
        wait_until(
            "the thing",
            lambda: (False, f"state {next(states)}"),
            timeout=0.25,
            progress=messages.append,
            interval=0.02,
            report_every=0.1,
        )
    assert len(messages) >= 2 and all(m.startswith("still waiting for the thing") for m in messages)
    assert str(info.value).startswith("timed out after 0.25s waiting for the thing (last: state ")


def test_result_round_trips_through_outputs_and_hides_secrets(first_run):
    first, _ = first_run
    outputs = first.to_outputs()
    assert BootstrapResult.from_outputs(outputs) == first
    assert set(SECRET_OUTPUTS) <= set(outputs)
    public = {k: v for k, v in outputs.items() if k not in SECRET_OUTPUTS}
    for value in _secret_values(first):
        assert value not in repr(public) and value not in repr(first)


def test_init_parameters_follow_the_seal_mode():
    auto = platform_spec(seal="auto", key_shares=5, key_threshold=3)
    shamir = platform_spec(seal="shamir", key_shares=3, key_threshold=2)
    assert init_parameters(auto) == {"recovery_shares": 5, "recovery_threshold": 3}
    assert init_parameters(shamir) == {"secret_shares": 3, "secret_threshold": 2}


def test_spec_round_trips_through_plain_data(spec):
    assert BootstrapSpec.from_dict(spec.to_dict()) == spec


_BAD_ROLE = {
    "name": "r",
    "bound_service_account_names": ["sa"],
    "bound_service_account_namespaces": ["ns"],
    "policies": ["missing"],
    "ttl": "soon",
}


@pytest.mark.parametrize(
    ("change", "problems"),
    [
        ({"key_shares": 3, "key_threshold": 4}, ["key_threshold must be between 2 and key_shares"]),
        ({"key_shares": 1, "key_threshold": 2}, ["key_threshold must be 1"]),
        ({"seal": "kms"}, ["seal must be 'auto' or 'shamir'"]),
        ({"policies": {"root": "x"}}, ["policy name 'root' is not allowed"]),
        ({"kubernetes": None}, ["roles need the Kubernetes auth method"]),
        ({"roles": [_BAD_ROLE]}, ["policies ['missing'] are not defined", "ttl 'soon' is not"]),
        ({"kv_mounts": [{"path": "/secret/"}]}, ["KV mount path '/secret/'"]),
        ({"roles": [{"name": "r"}]}, ["malformed spec"]),
    ],
)
def test_invalid_specs_are_refused_naming_every_problem(spec, change, problems):
    with pytest.raises(SpecError) as info:
        BootstrapSpec.from_dict(spec.to_dict() | change)
    for problem in problems:
        assert any(problem in found for found in info.value.problems), info.value.problems


def test_platform_spec_refuses_bad_namespace_names():
    with pytest.raises(SpecError, match="'Team_A' is not a Kubernetes namespace name"):
        platform_spec(["Team_A"])


@pytest.mark.parametrize(
    ("text", "seconds"), [("1h", 3600), ("1h30m", 5400), ("90s", 90), ("3600", 3600)]
)
def test_duration_seconds(text, seconds):
    assert duration_seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "1d", "h", "1.5h"])
def test_duration_seconds_refuses_other_text(text):
    with pytest.raises(ValueError, match="is not a duration"):
        duration_seconds(text)
