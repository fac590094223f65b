"""Revoking the initial root token: the bootstrap hands over to a scoped, renewable token and
later runs keep converging with it, on a real OpenBao server."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hvac import exceptions as hvac_errors

from components.vault.bootstrap import (
    BOOTSTRAP_POLICY,
    BootstrapSpec,
    TokenRejected,
    bootstrap,
    platform_spec,
)


@pytest.fixture(scope="module")
def spec(tokenreview) -> BootstrapSpec:
    return platform_spec(
        ["team-a"],
        seal="shamir",
        kubernetes_host=tokenreview.url,
        kubernetes_ca_cert=tokenreview.ca_pem,
    )


@pytest.fixture(scope="module")
def handed_over(bao, spec):
    """(the first run's result with the root token, the hand-over run's result)."""
    first = bootstrap(bao.client(), spec)
    second = bootstrap(bao.client(), replace(spec, revoke_root=True), first)
    return first, second


def test_the_root_token_is_revoked_and_replaced(bao, handed_over):
    first, second = handed_over
    assert "revoke-root" in second.changed
    assert second.root_token != first.root_token
    with pytest.raises(hvac_errors.Forbidden):
        bao.client(first.root_token).auth.token.lookup_self()
    token = bao.client(second.root_token).auth.token.lookup_self()["data"]
    assert sorted(token["policies"]) == ["default", BOOTSTRAP_POLICY]
    assert token["orphan"] is True and token["period"] > 0
    assert second.keys == first.keys, "the unseal or recovery keys stay the way back to root"


def test_later_runs_converge_with_the_scoped_token(bao, spec, handed_over):
    _, second = handed_over
    wider = replace(
        platform_spec(
            ["team-a", "team-b"],
            seal="shamir",
            kubernetes_host=spec.kubernetes.kubernetes_host,
            kubernetes_ca_cert=spec.kubernetes.kubernetes_ca_cert,
        ),
        revoke_root=True,
    )
    third = bootstrap(bao.client(), wider, second)
    assert {"policy:apps-team-b", "role:apps-team-b"} <= set(third.changed)
    assert "revoke-root" not in third.changed
    assert third.root_token == second.root_token
    # Removing the namespace again deletes what it granted, with the same token.
    fourth = bootstrap(bao.client(), replace(spec, revoke_root=True), third)
    assert {"policy:apps-team-b:delete", "role:apps-team-b:delete"} <= set(fourth.changed)


def test_the_scoped_token_cannot_make_itself_root(bao, handed_over):
    client = bao.client(handed_over[1].root_token)
    for attempt in (
        lambda: client.sys.create_or_update_policy(BOOTSTRAP_POLICY, 'path "*" {}'),
        lambda: client.sys.create_or_update_policy("root", 'path "*" {}'),
        lambda: client.auth.token.create(policies=["root"]),
        lambda: client.secrets.kv.v2.read_secret_version(
            "apps/team-a/x", mount_point="secret", raise_on_deleted_version=True
        ),
        lambda: client.sys.enable_auth_method("userpass"),
    ):
        with pytest.raises(hvac_errors.Forbidden):
            attempt()


def test_a_revoked_token_in_state_is_named(bao, spec, handed_over):
    first, _ = handed_over
    with pytest.raises(TokenRejected, match="revoked"):
        bootstrap(bao.client(), spec, first)
