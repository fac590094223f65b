"""Port 80 redirects to HTTPS, except the ACME HTTP-01 path cert-manager's solver serves there."""

from __future__ import annotations

import pytest

from components.k3s.traefik import (
    ACME_CHALLENGE_PREFIX,
    NAMESPACE,
    REDIRECT_NAME,
    REDIRECT_PRIORITY,
    https_redirect,
)
from tests.argocd_apps.support import created_kinds
from tests.conftest import STACKS
from tests.crd import crd_errors


def test_objects_match_traefiks_crds():
    for obj in https_redirect():
        assert crd_errors(obj) == [], obj["kind"]


def test_every_plain_http_request_but_acme_tokens_is_redirected():
    middleware, route = https_redirect()
    assert middleware["spec"] == {"redirectScheme": {"scheme": "https", "permanent": True}}
    (rule,) = route["spec"]["routes"]
    assert route["spec"]["entryPoints"] == ["web"]
    assert rule["match"] == "PathPrefix(`/`) && !PathPrefix(`/.well-known/acme-challenge/`)"
    assert ACME_CHALLENGE_PREFIX == "/.well-known/acme-challenge/"
    assert rule["middlewares"] == [{"name": REDIRECT_NAME}]
    assert middleware["metadata"] == {"name": REDIRECT_NAME, "namespace": NAMESPACE}


def test_the_redirect_outranks_any_ingress_route():
    # Traefik ranks a router without an explicit priority by the length of its rule: for an
    # Ingress, Host(`<name>`) && PathPrefix(`<path>`), with a DNS name of at most 253 characters.
    longest = len(f"Host(`{'x' * 253}`) && PathPrefix(`/{'p' * 1000}`)")
    assert longest < REDIRECT_PRIORITY


@pytest.mark.parametrize("stack", STACKS)
def test_every_stack_creates_the_redirect(synth_results, stack):
    kinds = created_kinds(synth_results[stack], "kubernetes:traefik.io/", REDIRECT_NAME)
    assert kinds == {"Middleware", "IngressRoute"}
