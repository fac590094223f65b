"""The K3s cluster on EC2: servers with fixed addresses, agents in an Auto Scaling group, a stable
API endpoint, the snapshot bucket, the KMS key, and the kubernetes Provider the platform uses."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pulumi_random as random

from components.buckets import policy_document, private_bucket
from components.cluster_access import AwsFacts, ClusterAccess
from components.config import ClusterConfig
from components.k3s.members import EtcdMember
from components.k3s.pki import ClusterPki, ClusterPkiArgs, secure_token
from components.k3s.readiness import ApiCredentials, ApiReadiness, build_kubeconfig
from components.k3s.userdata import (
    EtcdSnapshots,
    NodeBoot,
    agent_k3s_config,
    ecr_credential_provider,
    k3s_binary,
    k3s_installer,
    render_user_data,
    server_k3s_config,
    with_ecr_pulls,
)
from components.log_archive import LogArchive
from components.network import Network, fixed_address
from policy.cost.catalogue import instance_types

API_PORT = 6443
INGRESS_PORTS = (80, 443)
AMI_NAME = {
    "x86_64": "al2023-ami-2023.*-kernel-6.12-x86_64",
    "arm64": "al2023-ami-2023.*-kernel-6.12-arm64",
}
# The container network adds a hop, so with hop limit 1 the metadata service's answers expire
# before they reach a pod: only host processes (kubelet, its ECR credential provider, K3s's etcd
# snapshots, the boot script, the SSM agent) get the node role. Servers keep 2: Vault's awskms
# seal, cert-manager's Route53 solver and the Vault snapshot job are pods that need the server
# role, and K3s has no per-pod AWS identity to give them instead (docs/security.md).
SERVER_HOP_LIMIT = 2
AGENT_HOP_LIMIT = 1
CLUSTER_TAG = "platform:cluster"
"""On every node and the agent group: scopes what a node may do to its own cluster's nodes."""
AGENT_BOOT_GRACE_SECONDS = 600
"""How long a new agent may take to boot and join before health checks count against it."""


def metadata_options(hop_limit: int) -> dict:
    """IMDSv2 only: a request needs a session token, which SSRF through a GET cannot obtain."""
    return {
        "http_endpoint": "enabled",
        "http_tokens": "required",
        "http_put_response_hop_limit": hop_limit,
        "instance_metadata_tags": "disabled",
    }


SPOT_REQUEST_VALID_UNTIL = "2036-01-01T00:00:00Z"
"""EC2 closes a persistent Spot request 7 days after it is made unless told otherwise, and a
closed request no longer starts the server it stopped: this keeps it open for the server's life."""


def spot_server_market() -> dict:
    """A persistent Spot request that stops the server on interruption and starts it again when
    capacity returns, so its root volume (etcd, Vault's data) and private address survive."""
    return {
        "market_type": "spot",
        "spot_options": {
            "spot_instance_type": "persistent",
            "instance_interruption_behavior": "stop",
            "valid_until": SPOT_REQUEST_VALID_UNTIL,
        },
    }


def credit_specification(instance_type: str, spot: bool) -> dict | None:
    """Standard CPU credits for T types on Spot, as AWS's Spot pricing page advises: in the
    default unlimited mode their use above the baseline is billed on top of the Spot price."""
    spec = instance_types().get(instance_type)
    return {"cpu_credits": "standard"} if spot and spec is not None and spec.burstable else None


EC2_ASSUME_ROLE = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "ec2.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
)
SSM_CORE = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
SNAPSHOT_PREFIXES = ("etcd", "vault")
VAULT_SEAL_ACTIONS = ["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey"]
"""What Vault's awskms seal calls (Vault's seal documentation)."""


def _via(service: str, region: str) -> dict:
    return {"StringEquals": {"kms:ViaService": f"{service}.{region}.amazonaws.com"}}


def key_policy(account: str, region: str, server_role_arn: str, agent_role_arn: str) -> str:
    """The KMS key's policy. The account keeps full control, so IAM can always manage the key
    (without it a broken policy makes the key unusable for good); the node roles get exactly their
    uses: servers seal Vault and write snapshots through S3, both roles read their bootstrap
    secret through Secrets Manager."""
    return policy_document(
        [
            {
                "Sid": "AccountAdministersKey",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
                "Action": "kms:*",
                "Resource": "*",
            },
            {
                "Sid": "ServersSealVault",
                "Effect": "Allow",
                "Principal": {"AWS": server_role_arn},
                "Action": VAULT_SEAL_ACTIONS,
                "Resource": "*",
            },
            {
                "Sid": "ServersWriteSnapshots",
                "Effect": "Allow",
                "Principal": {"AWS": server_role_arn},
                "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
                "Resource": "*",
                "Condition": _via("s3", region),
            },
            {
                "Sid": "NodesReadBootstrapSecrets",
                "Effect": "Allow",
                "Principal": {"AWS": [server_role_arn, agent_role_arn]},
                "Action": "kms:Decrypt",
                "Resource": "*",
                "Condition": _via("secretsmanager", region),
            },
        ]
    )


@dataclass
class K3sClusterArgs:
    config: ClusterConfig
    """`platform:cluster` of the stack."""
    network: Network
    region: str
    log_archive: LogArchive
    """Where the snapshot bucket's access logs go."""
    production: bool = False
    """Production stacks protect the load balancer against deletion."""
    extra_server_manifests: dict[str, str] = field(default_factory=dict)
    """File name -> YAML for K3s's auto-deploy manifests directory on the servers."""
    extra_node_policy_arns: list[pulumi.Input[str]] = field(default_factory=list)
    """IAM policies attached to both node roles (e.g. pull rights on the app registry)."""
    ecr_pulls: bool = False
    """Install the kubelet's ECR credential provider so nodes can pull from the app registry."""


def short_name(name: str) -> str:
    """A 12-character name for AWS resources with short name limits (load balancers)."""
    return f"k3s-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


class K3sCluster(pulumi.ComponentResource):
    """A K3s cluster: 1 server (dev) or 3/5 servers with embedded etcd across AZs, plus agents."""

    access: ClusterAccess
    """What the platform layer needs: provider, credentials, ingress IP, AWS facts."""
    api_url: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]
    ingress_ip: pulumi.Output[str]
    provider: k8s.Provider

    def __init__(self, name: str, args: K3sClusterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:k3s:Cluster", name, None, opts)
        self._name = name
        self._cfg = cfg = args.config
        self._net = net = args.network
        self._region = args.region
        self._ecr_pulls = args.ecr_pulls
        self._production = args.production
        if cfg.servers > 1 and len(net.node_subnet_ids) < 3:
            raise ValueError(
                f"{cfg.servers} servers need node subnets in 3 availability zones; "
                f"got {len(net.node_subnet_ids)} (platform:network)"
            )
        child = pulumi.ResourceOptions(parent=self)
        stateful = pulumi.ResourceOptions(parent=self, protect=True)
        self._secret_versions: dict[str, pulumi.Resource] = {}
        self._role_policies: dict[str, pulumi.Resource] = {}
        self._front_door: list[pulumi.Resource] = []
        """What must exist before the API answers through the endpoint (the gate waits for it)."""

        self.pki = ClusterPki(
            f"{name}-pki",
            ClusterPkiArgs(
                cluster_name=name,
                client_ca_generations=tuple(cfg.ca.client),
                server_ca_generation=cfg.ca.server,
            ),
            opts=child,
        )
        server_password = random.RandomPassword(
            f"{name}-token", length=48, special=False, opts=child
        )
        agent_password = random.RandomPassword(
            f"{name}-agent-token", length=48, special=False, opts=child
        )

        server_profile, self._server_role = self._node_role("server", args.extra_node_policy_arns)
        agent_profile, self._agent_role = self._node_role("agent", args.extra_node_policy_arns)
        account = aws.get_caller_identity_output(
            opts=pulumi.InvokeOutputOptions(parent=self)
        ).account_id
        self.kms_key = aws.kms.Key(
            f"{name}-kms",
            description=f"{name}: Vault auto-unseal, snapshots, bootstrap secrets",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            policy=pulumi.Output.all(account, self._server_role.arn, self._agent_role.arn).apply(
                lambda a: key_policy(a[0], args.region, a[1], a[2])
            ),
            opts=stateful,
        )
        aws.kms.Alias(
            f"{name}-kms-alias",
            name=f"alias/{name}-vault-unseal",
            target_key_id=self.kms_key.key_id,
            opts=child,
        )
        self.bucket = self._snapshot_bucket()
        args.log_archive.record_access(f"{name}-snapshots", self.bucket, self)

        root = self.pki.root_cert_pem
        # One secret per purpose: every server joins with the tokens, only the instance that
        # founds the cluster (server 0) may read the CA keys (`_ca_read`).
        server_secret_value = pulumi.Output.secret(
            pulumi.Output.all(root, server_password.result, agent_password.result).apply(
                lambda a: json.dumps(
                    {"token": secure_token(a[0], "server", a[1]), "agentToken": a[2]},
                    sort_keys=True,
                )
            )
        )
        ca_secret_value = pulumi.Output.secret(
            self.pki.server_files.apply(lambda f: json.dumps({"caFiles": f}, sort_keys=True))
        )
        agent_secret_value = pulumi.Output.secret(
            pulumi.Output.all(root, agent_password.result).apply(
                lambda a: json.dumps({"token": secure_token(a[0], "node", a[1])})
            )
        )
        server_secret = self._secret("server", server_secret_value, stateful, child)
        agent_secret = self._secret("agent", agent_secret_value, stateful, child)
        ca_secret = self._secret("ca", ca_secret_value, stateful, child)

        self._role_policy("server", self._server_statements(server_secret.arn))
        self._role_policy("agent", self._agent_statements(agent_secret.arn))

        ami = aws.ec2.get_ami_output(
            most_recent=True,
            owners=["amazon"],
            filters=[
                {"name": "name", "values": [AMI_NAME[cfg.arch]]},
                {"name": "architecture", "values": [cfg.arch]},
            ],
            opts=pulumi.InvokeOutputOptions(parent=self),
        )
        self.nodes_sg = aws.ec2.SecurityGroup(
            f"{name}-nodes-sg",
            vpc_id=net.vpc_id,
            description=f"{name} K3s nodes",
            tags={"Name": f"{name}-nodes"},
            opts=child,
        )
        self._rule(
            "nodes-self",
            self.nodes_sg,
            "-1",
            0,
            0,
            source_sg=self.nodes_sg.id,
            description="node to node: flannel VXLAN, kubelet, etcd, API",
        )
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-nodes-egress",
            security_group_id=self.nodes_sg.id,
            ip_protocol="-1",
            cidr_ipv4="0.0.0.0/0",
            description="updates, images, AWS APIs",
            opts=child,
        )

        self.server_ips = self._server_addresses()
        endpoint = self._nlb() if cfg.endpoint_kind == "nlb" else self._eip()
        api_host, tls_sans, self.ingress_ips, target_groups = endpoint
        # sslip.io names spell one address: the first zone's.
        self.ingress_ip = self.ingress_ips.apply(lambda ips: ips[0])

        # A new generation per cluster Pulumi creates (not per replaced server): after a destroy
        # that keeps the bucket, the next cluster starts empty instead of restoring the old one.
        generation = random.RandomId(f"{name}-generation", byte_length=4, opts=child)
        snapshots = pulumi.Output.all(self.bucket.bucket, generation.hex).apply(
            lambda a: EtcdSnapshots(
                a[0],
                args.region,
                cfg.etcd_snapshots.schedule,
                cfg.etcd_snapshots.retention,
                name=f"etcd-snapshot-{a[1]}",
            )
        )
        server_config = pulumi.Output.all(tls_sans, self.server_ips, snapshots).apply(
            lambda a: self._node_config(
                server_k3s_config(
                    sorted(set(a[0]) | set(a[1])), a[2], dedicated=cfg.agents.min >= 1
                )
            )
        )
        self.api_url = pulumi.Output.concat("https://", api_host, f":{API_PORT}")
        credentials = {
            "api_url": self.api_url,
            "ca_pem": self.pki.server_ca_bundle,
            "client_cert_pem": self.pki.admin_cert_pem,
            "client_key_pem": self.pki.admin_key_pem,
        }
        listeners = list(self._front_door)
        servers: list[aws.ec2.Instance] = []
        members: list[EtcdMember] = []
        for i in range(cfg.servers):
            kind = "server-init" if i == 0 else "server"
            user_data = self._user_data(
                kind,
                server_secret.arn,
                server_config,
                args.extra_server_manifests,
                snapshots,
                ca_secret.arn if i == 0 else None,
            )
            server = aws.ec2.Instance(
                f"{name}-server-{i}",
                ami=ami.id,
                instance_type=cfg.server_instance_type,
                subnet_id=net.node_subnet_ids[i % len(net.node_subnet_ids)],
                private_ip=self.server_ips.apply(lambda ips, i=i: ips[i]),
                vpc_security_group_ids=[self.nodes_sg.id],
                iam_instance_profile=server_profile.name,
                user_data=user_data,
                metadata_options=metadata_options(SERVER_HOP_LIMIT),
                instance_market_options=spot_server_market() if cfg.server_spot else None,
                credit_specification=credit_specification(
                    cfg.server_instance_type, cfg.server_spot
                ),
                root_block_device=self._root_volume(),
                tags={
                    "Name": f"{name}-server-{i}",
                    "platform:node-kind": kind,
                    CLUSTER_TAG: name,
                },
                opts=pulumi.ResourceOptions(
                    parent=self,
                    # cloud-init runs once, and a new AMI would replace the instance: both are
                    # rolled one server per `pulumi up --replace` (docs/operations.md), and
                    # `_report_drift` names every server that runs an older one.
                    ignore_changes=["ami", "userData"],
                    # The fixed private address is free only once the old instance is gone.
                    delete_before_replace=True,
                    # One server at a time: the next is created, replaced or updated only after
                    # the previous one is back in etcd (components/k3s/members.py).
                    depends_on=[
                        server_secret,
                        self._secret_versions["server"],
                        self._secret_versions["ca"],
                        self._role_policies["server"],
                        *members[-1:],
                    ],
                ),
            )
            servers.append(server)
            if i == 0:
                self._ca_read(server, ca_secret)
            doors = self._attach(i, server, target_groups)
            self._report_drift(server, user_data, ami.id)
            if cfg.servers > 1:
                members.append(
                    EtcdMember(
                        f"{name}-server-{i}-member",
                        address=server.private_ip,
                        instance_id=server.id,
                        spec=server.instance_type,
                        credentials=credentials,
                        opts=pulumi.ResourceOptions(
                            parent=self, depends_on=[server, *listeners, *doors]
                        ),
                    )
                )
        self.servers = servers
        self.members = members
        self._agents(ami, agent_profile, agent_secret, servers, target_groups)

        self.ready = ApiReadiness(
            f"{name}-ready",
            api_url=self.api_url,
            ca_pem=self.pki.server_ca_bundle,
            client_cert_pem=self.pki.admin_cert_pem,
            client_key_pem=self.pki.admin_key_pem,
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[*servers, *members, *self._front_door]
            ),
        )
        self.kubeconfig = pulumi.Output.secret(
            pulumi.Output.all(
                self.api_url,
                self.pki.server_ca_bundle,
                self.pki.admin_cert_pem,
                self.pki.admin_key_pem,
            ).apply(lambda a: build_kubeconfig(name, ApiCredentials(*a)))
        )
        self.provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=self.kubeconfig,
            # A stable identifier keeps a CA or certificate rotation from replacing every object.
            cluster_identifier=name,
            enable_server_side_apply=True,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.ready]),
        )
        self.access = ClusterAccess(
            name=name,
            provider=self.provider,
            api_url=self.ready.api_url,
            ca_pem=self.ready.ca_pem,
            client_cert_pem=self.ready.client_cert_pem,
            client_key_pem=pulumi.Output.secret(self.ready.client_key_pem),
            kubeconfig=self.kubeconfig,
            ingress_ip=self.ingress_ip,
            ingress_ips=self.ingress_ips,
            ready=self.ready,
            aws=AwsFacts(
                region=args.region,
                kms_key_arn=self.kms_key.arn,
                snapshot_bucket=self.bucket.bucket,
                server_role_name=self._server_role.name,
                agent_role_name=self._agent_role.name,
            ),
        )
        self.register_outputs(
            {
                "apiUrl": self.api_url,
                "kubeconfig": self.kubeconfig,
                "ingressIp": self.ingress_ip,
                "kmsKeyArn": self.kms_key.arn,
                "snapshotBucket": self.bucket.bucket,
                "serverAddresses": self.server_ips,
            }
        )

    # -- stateful resources -------------------------------------------------------------------

    def _snapshot_bucket(self) -> aws.s3.Bucket:
        snap = self._cfg.etcd_snapshots
        return private_bucket(
            f"{self._name}-snapshots",
            self,
            # Bucket keys let S3 reuse a data key for a while instead of calling KMS per object.
            encryption={
                "apply_server_side_encryption_by_default": {
                    "sse_algorithm": "aws:kms",
                    "kms_master_key_id": self.kms_key.arn,
                },
                "bucket_key_enabled": True,
            },
            lifecycle_rule={
                "id": "expire-replaced-versions",
                "status": "Enabled",
                "filter": {},
                "noncurrent_version_expiration": {"noncurrent_days": snap.retain_days},
                "abort_incomplete_multipart_upload": {"days_after_initiation": 7},
            },
            policy_label="tls-only",
        )

    def _secret(
        self,
        kind: str,
        value: pulumi.Output[str],
        stateful: pulumi.ResourceOptions,
        child: pulumi.ResourceOptions,
    ) -> aws.secretsmanager.Secret:
        # The server token also decrypts etcd's bootstrap data: a restore on new hosts needs it,
        # so the secret is protected and deletion keeps the 30-day recovery window.
        secret = aws.secretsmanager.Secret(
            f"{self._name}-{kind}-bootstrap",
            name_prefix=f"{self._name}/{kind}-bootstrap-",
            description=f"{self._name}: K3s {kind} bootstrap material (read at first boot)",
            recovery_window_in_days=30,
            kms_key_id=self.kms_key.arn,
            opts=stateful,
        )
        self._secret_versions[kind] = aws.secretsmanager.SecretVersion(
            f"{self._name}-{kind}-bootstrap-value",
            secret_id=secret.id,
            secret_string=value,
            opts=child,
        )
        return secret

    # -- IAM ----------------------------------------------------------------------------------

    def _server_statements(self, secret_arn: pulumi.Output[str]) -> pulumi.Output[list[dict]]:
        return pulumi.Output.all(secret_arn, self.bucket.arn, self.kms_key.arn).apply(
            lambda a: [
                {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": a[0]},
                # Unconditioned: K3s checks the bucket with HeadBucket, which sends no s3:prefix.
                {
                    "Effect": "Allow",
                    "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
                    "Resource": a[1],
                },
                {
                    "Effect": "Allow",
                    "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                    "Resource": [f"{a[1]}/{p}/*" for p in SNAPSHOT_PREFIXES],
                },
                # Vault runs on the servers only, so only their role can use the unseal key.
                {"Effect": "Allow", "Action": VAULT_SEAL_ACTIONS, "Resource": a[2]},
                # Snapshots are written under the bucket's default SSE-KMS encryption.
                {
                    "Effect": "Allow",
                    "Action": "kms:GenerateDataKey",
                    "Resource": a[2],
                    "Condition": _via("s3", self._region),
                },
                self._boot_failure_tag(),
            ]
        )

    def _ca_read(self, founder: aws.ec2.Instance, ca_secret: aws.secretsmanager.Secret) -> None:
        """The CA keys are readable with the server role from the founding instance alone: the
        other servers join with the tokens and never need them. The statement follows a replaced
        founder (a new instance ARN); its boot retries the read until the change is in effect."""
        aws.iam.RolePolicy(
            f"{self._name}-server-ca-read",
            role=self._server_role.id,
            policy=pulumi.Output.all(ca_secret.arn, founder.arn).apply(
                lambda a: policy_document(
                    [
                        {
                            "Effect": "Allow",
                            "Action": "secretsmanager:GetSecretValue",
                            "Resource": a[0],
                            "Condition": {"ArnEquals": {"ec2:SourceInstanceARN": a[1]}},
                        }
                    ]
                )
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _agent_statements(self, secret_arn: pulumi.Output[str]) -> pulumi.Output[list[dict]]:
        return pulumi.Output.all(secret_arn, self.kms_key.arn).apply(
            lambda a: [
                {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": a[0]},
                # Decrypts the agent secret's data key, and no other ciphertext under the key.
                {
                    "Effect": "Allow",
                    "Action": "kms:Decrypt",
                    "Resource": a[1],
                    "Condition": {
                        "StringEquals": {
                            **_via("secretsmanager", self._region)["StringEquals"],
                            "kms:EncryptionContext:SecretARN": a[0],
                        }
                    },
                },
                self._boot_failure_tag(),
                # A failed boot hands the instance back to its group, which replaces it.
                {
                    "Effect": "Allow",
                    "Action": "autoscaling:SetInstanceHealth",
                    "Resource": "*",
                    "Condition": {
                        "StringEquals": {f"autoscaling:ResourceTag/{CLUSTER_TAG}": self._name}
                    },
                },
            ]
        )

    def _boot_failure_tag(self) -> dict:
        """A failed boot tags its instance platform:boot=failed (boot.sh): that one tag, on this
        cluster's nodes only."""
        return {
            "Effect": "Allow",
            "Action": "ec2:CreateTags",
            "Resource": "arn:aws:ec2:*:*:instance/*",
            "Condition": {
                "StringEquals": {
                    f"aws:ResourceTag/{CLUSTER_TAG}": self._name,
                    "aws:RequestTag/platform:boot": "failed",
                },
                "ForAllValues:StringEquals": {"aws:TagKeys": ["platform:boot"]},
            },
        }

    def _node_role(
        self, kind: str, extra_policy_arns: list[pulumi.Input[str]]
    ) -> tuple[aws.iam.InstanceProfile, aws.iam.Role]:
        name = f"{self._name}-{kind}"
        child = pulumi.ResourceOptions(parent=self)
        role = aws.iam.Role(
            f"{name}-role",
            assume_role_policy=EC2_ASSUME_ROLE,
            description=f"{self._name} K3s {kind} nodes",
            opts=child,
        )
        # Session Manager replaces SSH: no key pair and no port 22 anywhere.
        for i, arn in enumerate([SSM_CORE, *extra_policy_arns]):
            aws.iam.RolePolicyAttachment(
                f"{name}-policy-{i}", role=role.name, policy_arn=arn, opts=child
            )
        profile = aws.iam.InstanceProfile(f"{name}-profile", role=role.name, opts=child)
        return profile, role

    def _role_policy(self, kind: str, statements: pulumi.Output[list[dict]]) -> None:
        role = self._server_role if kind == "server" else self._agent_role
        self._role_policies[kind] = aws.iam.RolePolicy(
            f"{self._name}-{kind}-inline",
            role=role.id,
            policy=statements.apply(policy_document),
            opts=pulumi.ResourceOptions(parent=self),
        )

    # -- network endpoints ----------------------------------------------------------------------

    def _rule(
        self,
        label: str,
        sg: aws.ec2.SecurityGroup,
        protocol: str,
        from_port: int,
        to_port: int,
        *,
        cidr: str | None = None,
        source_sg: pulumi.Input[str] | None = None,
        description: str,
    ) -> None:
        aws.vpc.SecurityGroupIngressRule(
            f"{self._name}-{label}",
            security_group_id=sg.id,
            ip_protocol=protocol,
            from_port=None if protocol == "-1" else from_port,
            to_port=None if protocol == "-1" else to_port,
            cidr_ipv4=cidr,
            referenced_security_group_id=source_sg,
            description=description,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _server_addresses(self) -> pulumi.Output[list[str]]:
        cidrs = self._net.node_subnet_cidrs
        count = len(cidrs)
        return pulumi.Output.all(*cidrs).apply(
            lambda c: [fixed_address(c[i % count], i // count) for i in range(self._cfg.servers)]
        )

    def _eip(self):
        name = self._name
        eip = aws.ec2.Eip(
            f"{name}-api-eip",
            domain="vpc",
            tags={"Name": f"{name}-api"},
            opts=pulumi.ResourceOptions(parent=self),
        )
        self._api_eip = eip
        self._open_entry_points("", self.nodes_sg)
        addresses = eip.public_ip.apply(lambda ip: [ip])
        return eip.public_ip, addresses, addresses, {}

    def _open_entry_points(self, prefix: str, group: aws.ec2.SecurityGroup) -> None:
        """What the public endpoint admits: the API from the allowed CIDRs, web from anywhere."""
        for i, cidr in enumerate(self._cfg.api_allowed_cidrs):
            self._rule(
                f"{prefix}api-{i}",
                group,
                "tcp",
                API_PORT,
                API_PORT,
                cidr=cidr,
                description="Kubernetes API from an allowed CIDR",
            )
        for port in INGRESS_PORTS:
            self._rule(
                f"{prefix}ingress-{port}",
                group,
                "tcp",
                port,
                port,
                cidr="0.0.0.0/0",
                description="web traffic to Traefik",
            )

    def _nlb(self):
        name, net = self._name, self._net
        child = pulumi.ResourceOptions(parent=self)
        self._api_eip = None
        lb_sg = aws.ec2.SecurityGroup(
            f"{name}-lb-sg",
            vpc_id=net.vpc_id,
            description=f"{name} load balancer",
            tags={"Name": f"{name}-lb"},
            opts=child,
        )
        self._open_entry_points("lb-", lb_sg)
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-lb-egress",
            security_group_id=lb_sg.id,
            ip_protocol="tcp",
            from_port=0,
            to_port=65535,
            referenced_security_group_id=self.nodes_sg.id,
            description="to the nodes",
            opts=child,
        )
        for port in (API_PORT, *INGRESS_PORTS):
            self._rule(
                f"nodes-from-lb-{port}",
                self.nodes_sg,
                "tcp",
                port,
                port,
                source_sg=lb_sg.id,
                description="through the load balancer",
            )
        eips = [
            aws.ec2.Eip(
                f"{name}-lb-eip-{i}", domain="vpc", tags={"Name": f"{name}-lb-{i}"}, opts=child
            )
            for i in range(len(net.public_subnet_ids))
        ]
        short = short_name(name)
        lb = aws.lb.LoadBalancer(
            f"{name}-nlb",
            # A load balancer name holds 32 characters; the auto-name would not fit.
            name=short,
            load_balancer_type="network",
            internal=False,
            subnet_mappings=[
                {"subnet_id": s, "allocation_id": e.id}
                for s, e in zip(net.public_subnet_ids, eips, strict=True)
            ],
            security_groups=[lb_sg.id],
            enable_cross_zone_load_balancing=True,
            # Replacing it would change the API and ingress addresses every client knows.
            enable_deletion_protection=self._production,
            opts=child,
        )
        groups = {}
        for port in (API_PORT, *INGRESS_PORTS):
            groups[port] = aws.lb.TargetGroup(
                f"{name}-tg-{port}",
                # A prefix, not a name: a replaced group (new port or protocol) is created beside
                # the old one before the listener moves to it, and two groups cannot share a name.
                name_prefix=f"tg{port}",
                port=port,
                protocol="TCP",
                vpc_id=net.vpc_id,
                target_type="instance",
                # Off on 6443: with it on, a server that reaches the API through the NLB and is
                # routed to itself sees its own address as the source and the connection hangs.
                preserve_client_ip="false" if port == API_PORT else "true",
                deregistration_delay=30,
                tags={"Name": f"{name}-{port}"},
                health_check={
                    "protocol": "TCP",
                    "port": "traffic-port",
                    "interval": 10,
                    "healthy_threshold": 2,
                    "unhealthy_threshold": 2,
                },
                opts=child,
            )
            listener = aws.lb.Listener(
                f"{name}-listener-{port}",
                load_balancer_arn=lb.arn,
                port=port,
                protocol="TCP",
                default_actions=[{"type": "forward", "target_group_arn": groups[port].arn}],
                opts=child,
            )
            self._front_door.append(listener)
        addresses = pulumi.Output.all(*[e.public_ip for e in eips]).apply(list)
        sans = pulumi.Output.all(lb.dns_name, addresses).apply(lambda a: [a[0], *a[1]])
        return lb.dns_name, sans, addresses, groups

    # -- nodes ----------------------------------------------------------------------------------

    def _attach(self, i: int, server: aws.ec2.Instance, target_groups: dict) -> list:
        """Puts server `i` behind the endpoint; returns what its traffic needs."""
        child = pulumi.ResourceOptions(parent=self)
        doors: list[pulumi.Resource] = [
            aws.lb.TargetGroupAttachment(
                f"{self._name}-tg-{port}-server-{i}",
                target_group_arn=group.arn,
                target_id=server.id,
                port=port,
                opts=child,
            )
            for port, group in target_groups.items()
        ]
        if self._api_eip is not None and i == 0:
            doors.append(
                aws.ec2.EipAssociation(
                    f"{self._name}-api-eip-assoc",
                    allocation_id=self._api_eip.id,
                    instance_id=server.id,
                    opts=child,
                )
            )
        self._front_door.extend(doors)
        return doors

    def _report_drift(
        self, server: aws.ec2.Instance, user_data: pulumi.Output[str], ami_id: pulumi.Output[str]
    ) -> None:
        """A warning on every `up`/`preview` while a server runs user data or an AMI other than
        what the stack now renders (a K3s upgrade, Traefik or taint settings, a new AMI): the
        ignored change is named with the command that rolls it, never silently dropped."""

        def check(args: list) -> None:
            urn, recorded, desired, running_ami, latest_ami = args
            stale = []
            # The provider may record user data as its SHA-1, as Terraform's aws_instance does.
            if recorded not in (desired, hashlib.sha1(desired.encode()).hexdigest()):
                stale.append("user data (K3s version, K3s or Traefik settings)")
            if running_ami != latest_ami:
                stale.append(f"AMI ({running_ami}; newest {latest_ami})")
            if stale:
                pulumi.log.warn(
                    f"runs an older {' and '.join(stale)} than the stack renders; roll it, one "
                    f"server per run: pulumi up --replace '{urn}' (docs/operations.md, "
                    '"Upgrade K3s")',
                    resource=server,
                )

        pulumi.Output.all(server.urn, server.user_data, user_data, server.ami, ami_id).apply(check)

    def _root_volume(self) -> dict:
        return {
            "volume_type": "gp3",
            "volume_size": self._cfg.root_volume_gb,
            "encrypted": True,
            "delete_on_termination": True,
        }

    def _node_config(self, k3s_config: dict) -> dict:
        return with_ecr_pulls(k3s_config) if self._ecr_pulls else k3s_config

    def _user_data(
        self,
        kind: str,
        secret_arn: pulumi.Output[str],
        k3s_config: pulumi.Input[dict],
        manifests: dict[str, str] | None = None,
        snapshots: pulumi.Output[EtcdSnapshots] | None = None,
        ca_secret_arn: pulumi.Output[str] | None = None,
    ) -> pulumi.Output[str]:
        files = {
            f"/var/lib/rancher/k3s/server/manifests/{n}": m for n, m in (manifests or {}).items()
        }
        return pulumi.Output.all(
            secret_arn, self.server_ips, k3s_config, snapshots, ca_secret_arn
        ).apply(
            lambda a: render_user_data(
                NodeBoot(
                    kind=kind,
                    region=self._region,
                    secret_id=a[0],
                    k3s_version=self._cfg.k3s_version,
                    k3s_binary=k3s_binary(self._cfg.k3s_version, self._cfg.arch),
                    k3s_installer=k3s_installer(),
                    server_addresses=a[1],
                    k3s_config=a[2],
                    extra_files=files,
                    credential_provider=(
                        ecr_credential_provider(self._cfg.arch) if self._ecr_pulls else None
                    ),
                    snapshots=a[3],
                    ca_secret_id=a[4] or "",
                )
            )
        )

    def _agents(
        self,
        ami,
        profile: aws.iam.InstanceProfile,
        secret: aws.secretsmanager.Secret,
        servers: list[aws.ec2.Instance],
        target_groups: dict,
    ) -> None:
        name, cfg = self._name, self._cfg
        agents = cfg.agents
        if agents.max == 0:
            return
        child = pulumi.ResourceOptions(parent=self)
        user_data = self._user_data(
            "agent", secret.arn, self._node_config(agent_k3s_config())
        ).apply(lambda text: base64.b64encode(text.encode()).decode())
        template = aws.ec2.LaunchTemplate(
            f"{name}-agent-lt",
            image_id=ami.id,
            instance_type=agents.instance_type,
            iam_instance_profile={"name": profile.name},
            vpc_security_group_ids=[self.nodes_sg.id],
            user_data=user_data,
            metadata_options=metadata_options(AGENT_HOP_LIMIT),
            credit_specification=credit_specification(
                agents.instance_type, agents.spot_percentage > 0
            ),
            block_device_mappings=[
                {
                    "device_name": "/dev/xvda",
                    "ebs": {
                        "volume_type": "gp3",
                        "volume_size": cfg.root_volume_gb,
                        "encrypted": "true",
                        "delete_on_termination": "true",
                    },
                }
            ],
            tag_specifications=[
                {
                    "resource_type": "instance",
                    "tags": {
                        "Name": f"{name}-agent",
                        "platform:node-kind": "agent",
                        CLUSTER_TAG: name,
                    },
                },
                {"resource_type": "volume", "tags": {"Name": f"{name}-agent"}},
            ],
            tags={"platform:node-kind": "agent"},
            update_default_version=True,
            opts=child,
        )
        on_demand_share = 100 - agents.spot_percentage
        aws.autoscaling.Group(
            f"{name}-agents",
            min_size=agents.min,
            max_size=agents.max,
            desired_capacity=agents.desired,
            vpc_zone_identifiers=self._net.node_subnet_ids,
            target_group_arns=[target_groups[p].arn for p in INGRESS_PORTS]
            if target_groups
            else [],
            capacity_rebalance=agents.spot_percentage > 0,
            mixed_instances_policy={
                "instances_distribution": {
                    "on_demand_base_capacity": 0,
                    "on_demand_percentage_above_base_capacity": on_demand_share,
                    "spot_allocation_strategy": "price-capacity-optimized",
                },
                "launch_template": {
                    "launch_template_specification": {
                        "launch_template_id": template.id,
                        # An instance refresh does not start for `$Latest`: name the version a
                        # changed template has just created, so the group rolls to it.
                        "version": template.latest_version.apply(str),
                    },
                    "overrides": [{"instance_type": agents.instance_type}],
                },
            },
            instance_refresh={"strategy": "Rolling", "preferences": {"min_healthy_percentage": 66}},
            # Behind the NLB an agent whose ingress stops answering is replaced, not kept; the
            # grace period covers the boot (packages, K3s download, joining the servers).
            health_check_type="ELB" if target_groups else "EC2",
            health_check_grace_period=AGENT_BOOT_GRACE_SECONDS,
            tags=[
                {"key": "Name", "value": f"{name}-agent", "propagate_at_launch": True},
                {"key": CLUSTER_TAG, "value": name, "propagate_at_launch": True},
            ],
            opts=pulumi.ResourceOptions(parent=self, depends_on=servers),
        )
