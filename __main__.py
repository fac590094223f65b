"""One environment of the platform: the cluster, then the platform services on it."""

import pulumi
import pulumi_aws as aws

from components.config import PlatformConfig, from_pulumi
from components.existing_cluster import ExistingCluster, ExistingClusterArgs
from components.k3s.cluster import K3sCluster, K3sClusterArgs
from components.network import Network, NetworkArgs
from components.cluster_access import ClusterAccess

config: PlatformConfig = from_pulumi()
name = f"{pulumi.get_project()}-{pulumi.get_stack()}"


def aws_cluster(cfg: PlatformConfig) -> ClusterAccess:
    assert cfg.cluster is not None and cfg.aws_region is not None
    provider = aws.Provider(
        "aws",
        region=cfg.aws_region,
        default_tags={"tags": {"platform:environment": cfg.environment, "platform:stack": name,
                               "managed-by": "pulumi"}},
    )
    opts = pulumi.ResourceOptions(providers={"aws": provider})
    zones = aws.get_availability_zones(state="available", opts=pulumi.InvokeOptions(provider=provider))
    network = Network(name, NetworkArgs(config=cfg.network, availability_zones=zones.names), opts=opts)
    cluster = K3sCluster(name, K3sClusterArgs(config=cfg.cluster, network=network, region=cfg.aws_region),
                         opts=opts)
    pulumi.export("apiUrl", cluster.api_url)
    pulumi.export("snapshotBucket", cluster.bucket.bucket)
    return cluster.access


if config.target == "aws":
    access = aws_cluster(config)
else:
    assert config.local is not None
    access = ExistingCluster(name, ExistingClusterArgs(config=config.local)).access

pulumi.export("kubeconfig", access.kubeconfig)
pulumi.export("ingressIp", access.ingress_ip)
