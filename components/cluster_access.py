"""The contract between the cluster layer and the platform layer.

Both cluster kinds (the AWS K3s cluster and an existing local cluster) hand the platform components
one `ClusterAccess`; platform components never read stack config or AWS state themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

CONTROL_PLANE_SELECTOR = {"node-role.kubernetes.io/control-plane": "true"}
"""Pods that use the server role through IMDS (Vault's seal, Route53, snapshots) run there."""
SERVER_TAINT = "CriticalAddonsOnly=true:NoExecute"
"""On clusters with agents, servers take only what tolerates this: app pods never share a node
with the server role's credentials (the CA keys in the bootstrap secret, the unseal key)."""
SERVER_TOLERATIONS = [{"key": "CriticalAddonsOnly", "operator": "Exists"}]


@dataclass(frozen=True)
class AwsFacts:
    """AWS resources of the cluster that platform services use."""

    region: str
    kms_key_arn: pulumi.Output[str]
    """KMS key for Vault auto-unseal (awskms seal); the server role may use it."""
    snapshot_bucket: pulumi.Output[str]
    """Bucket for etcd snapshots (prefix `etcd/`) and Vault Raft snapshots (prefix `vault/`)."""
    server_role_name: pulumi.Output[str]
    agent_role_name: pulumi.Output[str]


@dataclass(frozen=True)
class ClusterAccess:
    """How to reach a ready cluster."""

    name: str
    provider: k8s.Provider
    """Kubernetes provider that depends on the readiness gate; pass it to every k8s resource."""
    api_url: pulumi.Output[str]
    """`https://<endpoint>:6443`."""
    ca_pem: pulumi.Output[str]
    """Bundle that verifies the API server's certificate."""
    client_cert_pem: pulumi.Output[str]
    """Admin client certificate (O=system:masters)."""
    client_key_pem: pulumi.Output[str]
    """Admin client key (a Pulumi secret)."""
    kubeconfig: pulumi.Output[str]
    """Admin kubeconfig (a Pulumi secret)."""
    ingress_ip: pulumi.Output[str]
    """Static public IP of the ingress (Traefik on 80/443); used for sslip.io hostnames."""
    ingress_ips: pulumi.Output[list[str]]
    """Every address the ingress answers on (one per AZ behind an NLB): what DNS records hold,
    so a name keeps resolving when one zone is down."""
    ready: pulumi.Resource
    """The readiness gate; anything that talks to the cluster depends on it."""
    aws: AwsFacts | None = None
    """None on a cluster that is not on AWS (the local stack)."""
