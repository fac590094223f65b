"""External Secrets Operator and the ClusterSecretStore that reads Vault's KV v2 for every app."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi

from components import versions
from components.cluster_access import ClusterAccess
from components.platform import sizing
from components.platform.base import (
    DNS_CONFIG,
    POD_SECURITY_CONTEXT,
    ChartSource,
    chart_release,
    controller_values,
    custom_resource,
    owned_namespace,
)
from components.vault.bootstrap import (
    AUDIENCE,
    EXTERNAL_SECRETS_NAMESPACE,
    EXTERNAL_SECRETS_ROLE,
    EXTERNAL_SECRETS_SERVICE_ACCOUNT,
    KV_MOUNT,
    SECRETS_READER_SERVICE_ACCOUNT,
)

STORE_NAME = "vault"
RELEASE = "external-secrets"
"""Also the sizing table's name of the release (components/platform/sizing.py)."""
KUBERNETES_AUTH_MOUNT = "kubernetes"


@dataclass(frozen=True)
class ExternalSecretsArgs:
    """Where Vault answers and how to trust it."""

    vault_address: str
    """In-cluster URL, `https://vault.vault.svc:8200`."""
    vault_namespace: str
    ca_secret: str
    """Secret in `vault_namespace` whose `ca.crt` verifies `vault_address`."""
    depends_on: Sequence[pulumi.Resource] = field(default_factory=tuple)
    """The Vault bootstrap: the store's role must exist before ESO logs in with it."""
    charts: ChartSource = ChartSource()
    """Where the release's chart comes from (`platform:charts`)."""
    production: bool = False
    """Two replicas of each controller, on different nodes; one otherwise."""

    def __post_init__(self) -> None:
        if not self.vault_address.startswith("https://"):
            raise ValueError(f"vault_address {self.vault_address!r} must be an https:// URL")


def cluster_secret_store(args: ExternalSecretsArgs) -> dict[str, Any]:
    """ClusterSecretStore for `secret/` (KV v2), logging in with the role `external-secrets`."""
    return {
        "apiVersion": "external-secrets.io/v1",
        "kind": "ClusterSecretStore",
        "metadata": {"name": STORE_NAME},
        "spec": {
            "provider": {
                "vault": {
                    "server": args.vault_address,
                    "path": KV_MOUNT,
                    "version": "v2",
                    "caProvider": {
                        "type": "Secret",
                        "name": args.ca_secret,
                        "namespace": args.vault_namespace,
                        "key": "ca.crt",
                    },
                    "auth": {
                        "kubernetes": {
                            "mountPath": KUBERNETES_AUTH_MOUNT,
                            "role": EXTERNAL_SECRETS_ROLE,
                            # No namespace: External Secrets uses the account of each
                            # ExternalSecret's own namespace (referent authentication), and
                            # Vault's policy confines that account to its namespace's secrets.
                            "serviceAccountRef": {
                                "name": SECRETS_READER_SERVICE_ACCOUNT,
                                "audiences": [AUDIENCE],
                            },
                        }
                    },
                }
            }
        },
    }


WORKLOADS = {
    "controller": (None, "external-secrets"),
    "webhook": ("webhook", "external-secrets-webhook"),
    "cert-controller": ("certController", "external-secrets-cert-controller"),
}
"""Workload -> (its section of the values, None for the top level; its pods' name label)."""


def release_values(production: bool) -> dict[str, Any]:
    size = sizing.size_of(production)
    values: dict[str, Any] = {
        "installCRDs": True,
        # Replicas of the controller and the cert controller take turns through a lease.
        "leaderElect": True,
        "dnsConfig": DNS_CONFIG,
    }
    for workload, (section, name) in WORKLOADS.items():
        labels = {
            "app.kubernetes.io/name": name,
            "app.kubernetes.io/instance": EXTERNAL_SECRETS_SERVICE_ACCOUNT,
        }
        part = controller_values(RELEASE, workload, size, labels, "deploymentAnnotations")
        # `enabled` alone renders no pod-level context.
        part["podSecurityContext"] = {"enabled": True} | POD_SECURITY_CONTEXT
        # Each serves /healthz on its health port; the chart leaves the liveness probes off.
        part["livenessProbe"] = {"enabled": True}
        if section is None:
            values |= part
        else:
            values[section] = part
    # The controller's readiness (/readyz) shares the liveness probe's health server.
    values["readinessProbe"] = {"enabled": True}
    return values


class ExternalSecrets(pulumi.ComponentResource):
    """The operator (release `external-secrets`, so its service account has the role's name)."""

    store_name: str

    def __init__(
        self,
        name: str,
        access: ClusterAccess,
        args: ExternalSecretsArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("platform:external_secrets:ExternalSecrets", name, None, opts)
        namespace = owned_namespace(f"{name}-namespace", self, access, EXTERNAL_SECRETS_NAMESPACE)
        self.release = chart_release(
            f"{name}-release",
            self,
            access,
            versions.EXTERNAL_SECRETS,
            namespace=namespace,
            charts=args.charts,
            release_name=EXTERNAL_SECRETS_SERVICE_ACCOUNT,
            values=release_values(args.production),
        )
        self.store = custom_resource(
            f"{name}-store",
            self,
            access,
            cluster_secret_store(args),
            self.release,
            *args.depends_on,
        )
        self.store_name = STORE_NAME
        self.register_outputs({"storeName": self.store_name})
