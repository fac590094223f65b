"""The VPC the cluster runs in: public subnets per AZ, private subnets + NAT only when asked (NAT
gateways, or one NAT instance), or an existing VPC brought by the user. A VPC created here logs its
flows and has a closed default security group; an existing VPC stays as its owner configured it."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import yaml

from components.config import NetworkConfig
from components.log_archive import LogArchive

NAT_INSTANCE_TYPE = "t4g.nano"
"""Forwarding a cluster's image pulls and AWS API calls needs no more than the smallest Graviton."""
NAT_AMI_NAME = "al2023-ami-2023.*-kernel-6.12-arm64"
NAT_ROLE_TAG = {"platform:role": "nat"}


def nat_user_data(vpc_cidr: str) -> str:
    """cloud-config that makes an Amazon Linux 2023 instance the VPC's NAT: IPv4 forwarding, and
    an nftables ruleset that masquerades what the VPC sends out and forwards nothing else (no
    traffic from the internet into the VPC except replies)."""
    ruleset = (
        "table ip platform_nat {\n"
        "  chain forward {\n"
        "    type filter hook forward priority filter; policy drop;\n"
        "    ct state established,related accept\n"
        f"    ip saddr {vpc_cidr} ip daddr != {vpc_cidr} accept\n"
        "  }\n"
        "  chain postrouting {\n"
        "    type nat hook postrouting priority srcnat; policy accept;\n"
        f"    ip saddr {vpc_cidr} ip daddr != {vpc_cidr} masquerade\n"
        "  }\n"
        "}\n"
    )
    config = {
        "packages": ["nftables"],
        # Written before the package installs: the package keeps an existing config file.
        "write_files": [
            {
                "path": "/etc/sysctl.d/90-platform-nat.conf",
                "content": "net.ipv4.ip_forward = 1\n",
                "permissions": "0644",
            },
            {"path": "/etc/sysconfig/nftables.conf", "content": ruleset, "permissions": "0600"},
        ],
        "runcmd": [["sysctl", "--system"], ["systemctl", "enable", "--now", "nftables"]],
    }
    return "#cloud-config\n" + yaml.safe_dump(config, sort_keys=False, width=1000)


@dataclass
class NetworkArgs:
    config: NetworkConfig
    """`platform:network` of the stack."""
    availability_zones: list[str]
    """AZ names to spread over (at least `config.availability_zones` of them)."""
    log_archive: LogArchive
    """Where the VPC's flow logs go."""


class Network(pulumi.ComponentResource):
    """VPC, subnets, routes. Nodes go into `node_subnet_ids`, the NLB into `public_subnet_ids`."""

    vpc_id: pulumi.Output[str]
    vpc_cidr: pulumi.Output[str]
    public_subnet_ids: list[pulumi.Output[str]]
    node_subnet_ids: list[pulumi.Output[str]]
    node_subnet_cidrs: list[pulumi.Output[str]]
    """CIDR of each node subnet, in `node_subnet_ids` order (servers get fixed addresses there)."""
    azs: list[str]

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:aws:Network", name, None, opts)
        cfg = args.config
        if len(args.availability_zones) < cfg.availability_zones:
            raise ValueError(
                f"platform:network.availabilityZones is {cfg.availability_zones} but the region "
                f"offers only {len(args.availability_zones)}: {args.availability_zones}"
            )
        self.azs = args.availability_zones[: cfg.availability_zones]
        if cfg.existing is not None:
            self._adopt(name, cfg)
        else:
            self._create(name, cfg, args.log_archive)
        self.register_outputs(
            {
                "vpcId": self.vpc_id,
                "publicSubnetIds": self.public_subnet_ids,
                "nodeSubnetIds": self.node_subnet_ids,
            }
        )

    def _adopt(self, name: str, cfg: NetworkConfig) -> None:
        existing = cfg.existing
        assert existing is not None
        self.vpc_id = pulumi.Output.from_input(existing.vpc_id)
        self.vpc_cidr = pulumi.Output.from_input(existing.vpc_cidr)
        self.public_subnet_ids = [pulumi.Output.from_input(s) for s in existing.public_subnet_ids]
        node_ids = (
            existing.private_subnet_ids
            if cfg.node_subnets == "private"
            else existing.public_subnet_ids
        )
        self.node_subnet_ids = [pulumi.Output.from_input(s) for s in node_ids]
        self.node_subnet_cidrs = [
            aws.ec2.get_subnet_output(id=s, opts=pulumi.InvokeOutputOptions(parent=self)).cidr_block
            for s in node_ids
        ]

    def _create(self, name: str, cfg: NetworkConfig, logs: LogArchive) -> None:
        child = pulumi.ResourceOptions(parent=self)
        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=cfg.vpc_cidr,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags={"Name": f"{name}-vpc"},
            opts=child,
        )
        # Adopting the default group with no rules strips AWS's allow-all-within-the-group: a
        # resource launched without an explicit group then reaches nothing and nothing reaches it.
        aws.ec2.DefaultSecurityGroup(
            f"{name}-default-sg",
            vpc_id=vpc.id,
            ingress=[],
            egress=[],
            tags={"Name": f"{name}-default-unused"},
            opts=child,
        )
        logs.record_flows(name, vpc.id, self)
        self.vpc_id = vpc.id
        self.vpc_cidr = vpc.cidr_block
        igw = aws.ec2.InternetGateway(
            f"{name}-igw", vpc_id=vpc.id, tags={"Name": f"{name}-igw"}, opts=child
        )
        public_rt = aws.ec2.RouteTable(
            f"{name}-public-rt",
            vpc_id=vpc.id,
            routes=[{"cidr_block": "0.0.0.0/0", "gateway_id": igw.id}],
            tags={"Name": f"{name}-public"},
            opts=child,
        )
        # Only nodes in public subnets need an automatic address (they have no NAT gateway); the
        # NAT gateway and the load balancer bring their own Elastic IPs.
        public = self._subnets(
            name,
            "public",
            vpc,
            cfg.public_subnet_cidrs,
            public_ips=cfg.node_subnets == "public",
        )
        for i, subnet in enumerate(public):
            aws.ec2.RouteTableAssociation(
                f"{name}-public-{i}", subnet_id=subnet.id, route_table_id=public_rt.id, opts=child
            )
        self.public_subnet_ids = [s.id for s in public]

        private = self._subnets(name, "private", vpc, cfg.private_subnet_cidrs, public_ips=False)
        egress = (
            self._nat_instance(name, cfg.vpc_cidr, public[0], igw)
            if cfg.nat_gateways == "instance"
            else self._nat_gateways(name, cfg, public, igw)
        )
        for i, subnet in enumerate(private):
            routes = [egress[i % len(egress)]] if egress else []
            rt = aws.ec2.RouteTable(
                f"{name}-private-rt-{i}",
                vpc_id=vpc.id,
                routes=routes,
                tags={"Name": f"{name}-private-{self.azs[i]}"},
                opts=child,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-private-{i}", subnet_id=subnet.id, route_table_id=rt.id, opts=child
            )
        nodes = private if cfg.node_subnets == "private" else public
        node_cidrs = (
            cfg.private_subnet_cidrs if cfg.node_subnets == "private" else cfg.public_subnet_cidrs
        )
        self.node_subnet_ids = [s.id for s in nodes]
        self.node_subnet_cidrs = [pulumi.Output.from_input(c) for c in node_cidrs]

    def _subnets(
        self, name: str, kind: str, vpc: aws.ec2.Vpc, cidrs: list[str], public_ips: bool
    ) -> list[aws.ec2.Subnet]:
        return [
            aws.ec2.Subnet(
                f"{name}-{kind}-{i}",
                vpc_id=vpc.id,
                cidr_block=cidr,
                availability_zone=self.azs[i],
                map_public_ip_on_launch=public_ips,
                tags={"Name": f"{name}-{kind}-{self.azs[i]}", "platform:subnet": kind},
                opts=pulumi.ResourceOptions(parent=self),
            )
            for i, cidr in enumerate(cidrs)
        ]

    def _nat_gateways(
        self,
        name: str,
        cfg: NetworkConfig,
        public: list[aws.ec2.Subnet],
        igw: aws.ec2.InternetGateway,
    ) -> list[dict]:
        count = {"none": 0, "single": 1, "perAz": len(public)}[cfg.nat_gateways]
        ids = []
        for i in range(count):
            eip = aws.ec2.Eip(
                f"{name}-nat-eip-{i}",
                domain="vpc",
                tags={"Name": f"{name}-nat-{self.azs[i]}"},
                opts=pulumi.ResourceOptions(parent=self, depends_on=[igw]),
            )
            nat = aws.ec2.NatGateway(
                f"{name}-nat-{i}",
                subnet_id=public[i].id,
                allocation_id=eip.id,
                tags={"Name": f"{name}-nat-{self.azs[i]}"},
                opts=pulumi.ResourceOptions(parent=self),
            )
            ids.append({"cidr_block": "0.0.0.0/0", "nat_gateway_id": nat.id})
        return ids

    def _nat_instance(
        self, name: str, vpc_cidr: str, subnet: aws.ec2.Subnet, igw: aws.ec2.InternetGateway
    ) -> list[dict]:
        """One NAT instance in the first public subnet, the default route of every private one.
        No SSH key, no port 22, no instance role (nothing on it calls AWS); IMDSv2 only and an
        encrypted disk. A replacement is a new instance: the routes follow its interface."""
        child = pulumi.ResourceOptions(parent=self)
        sg = aws.ec2.SecurityGroup(
            f"{name}-nat-sg",
            vpc_id=self.vpc_id,
            description=f"{name} NAT instance",
            tags={"Name": f"{name}-nat"},
            opts=child,
        )
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-nat-from-vpc",
            security_group_id=sg.id,
            ip_protocol="-1",
            cidr_ipv4=vpc_cidr,
            description="what the VPC sends to the internet",
            opts=child,
        )
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-nat-egress",
            security_group_id=sg.id,
            ip_protocol="-1",
            cidr_ipv4="0.0.0.0/0",
            description="to the internet",
            opts=child,
        )
        ami = aws.ec2.get_ami_output(
            most_recent=True,
            owners=["amazon"],
            filters=[
                {"name": "name", "values": [NAT_AMI_NAME]},
                {"name": "architecture", "values": ["arm64"]},
            ],
            opts=pulumi.InvokeOutputOptions(parent=self),
        )
        nat = aws.ec2.Instance(
            f"{name}-nat-instance",
            ami=ami.id,
            instance_type=NAT_INSTANCE_TYPE,
            subnet_id=subnet.id,
            associate_public_ip_address=True,
            # It forwards packets addressed to other hosts, which EC2 drops unless told not to.
            source_dest_check=False,
            vpc_security_group_ids=[sg.id],
            user_data=nat_user_data(vpc_cidr),
            metadata_options={
                "http_endpoint": "enabled",
                "http_tokens": "required",
                "http_put_response_hop_limit": 1,
                "instance_metadata_tags": "disabled",
            },
            root_block_device={
                "volume_type": "gp3",
                "volume_size": 8,
                "encrypted": True,
                "delete_on_termination": True,
            },
            tags={"Name": f"{name}-nat", **NAT_ROLE_TAG},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[igw], ignore_changes=["ami"]),
        )
        return [
            {"cidr_block": "0.0.0.0/0", "network_interface_id": nat.primary_network_interface_id}
        ]


def fixed_address(subnet_cidr: str, index: int) -> str:
    """A stable private address for server `index` of a subnet (hosts .10, .11, ...).

    AWS reserves the first four addresses; starting at 10 leaves room and keeps the servers'
    addresses the same when an instance is replaced, so agents can always find them.
    """
    net = ipaddress.ip_network(subnet_cidr)
    return str(net.network_address + 10 + index)
