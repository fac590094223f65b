"""One environment of the platform: the cluster, then the platform services on it."""

import pulumi
import pulumi_aws as aws

from components import decommission
from components.cluster_access import ClusterAccess
from components.config import PlatformConfig, from_pulumi
from components.existing_cluster import ExistingCluster, ExistingClusterArgs
from components.k3s import traefik
from components.k3s.cluster import K3sCluster, K3sClusterArgs
from components.log_archive import LogArchive
from components.network import Network, NetworkArgs
from components.platform import Platform, PlatformArgs, gitops_token
from components.registry.component import Registry, RegistryArgs

config: PlatformConfig = from_pulumi()
name = f"{pulumi.get_project()}-{pulumi.get_stack()}"


def aws_cluster(cfg: PlatformConfig, opts: pulumi.ResourceOptions) -> ClusterAccess:
    assert cfg.cluster is not None and cfg.aws_region is not None
    zones = aws.get_availability_zones(
        state="available", opts=pulumi.InvokeOptions(provider=opts.providers["aws"])
    )
    logs = LogArchive(name, cfg.aws_region, opts=opts)
    network = Network(
        name,
        NetworkArgs(config=cfg.network, availability_zones=zones.names, log_archive=logs),
        opts=opts,
    )
    node_policies = []
    if cfg.registry.active:
        registry = Registry(
            f"{name}-registry", RegistryArgs(config=cfg.registry, namespace=name), opts=opts
        )
        node_policies.append(registry.pull_policy_arn)
        pulumi.export("registryUrls", registry.repository_urls)
    cluster = K3sCluster(
        name,
        K3sClusterArgs(
            config=cfg.cluster,
            network=network,
            region=cfg.aws_region,
            log_archive=logs,
            production=cfg.production,
            extra_server_manifests={traefik.MANIFEST_NAME: traefik.render_manifest(cfg.production)},
            extra_node_policy_arns=node_policies,
            ecr_pulls=cfg.registry.active,
        ),
        opts=opts,
    )
    pulumi.export("apiUrl", cluster.api_url)
    pulumi.export("snapshotBucket", cluster.bucket.bucket)
    pulumi.export("logBucket", logs.bucket.bucket)
    return cluster.access


if config.target == "aws":
    provider = aws.Provider(
        "aws",
        region=config.aws_region,
        default_tags={
            "tags": {
                "platform:environment": config.environment,
                "platform:stack": name,
                "managed-by": "pulumi",
            }
        },
    )
    aws_opts = pulumi.ResourceOptions(
        providers={"aws": provider},
        transformations=[decommission.release] if config.decommission else None,
    )
    access = aws_cluster(config, aws_opts)
else:
    assert config.local is not None
    aws_opts = None
    access = ExistingCluster(name, ExistingClusterArgs(config=config.local)).access

platform = Platform(
    name, access, PlatformArgs(config=config, gitops_token=gitops_token()), opts=aws_opts
)

pulumi.export("kubeconfig", access.kubeconfig)
pulumi.export("ingressIp", access.ingress_ip)
pulumi.export("urls", platform.urls)
pulumi.export("argocdAdminPassword", platform.argocd_admin_password)
pulumi.export("vaultRootToken", platform.vault_root_token)
pulumi.export("vaultKeys", platform.vault_keys)
if platform.rancher_bootstrap_password is not None:
    pulumi.export("rancherBootstrapPassword", platform.rancher_bootstrap_password)
