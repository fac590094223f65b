"""The stack's configuration: one typed, validated object built from `stacks/Pulumi.<stack>.yaml`.

Every key lives in the `platform:` namespace (plus `aws:region`). Invalid input raises `ConfigError`
before any resource is registered, with one line per problem naming the key as it is written in the
stack file (`platform:cluster.agents.min`) and what is allowed.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator

from components import versions
from components.registry.config import RegistryConfig
from components.sections import (
    AWS_REGION_RE,
    DNS_NAME_RE,
    EMAIL_RE,
    ENV_NAME_RE,
    INSTANCE_TYPE_RE,
    K3S_NETWORKS,
    K8S_NAME_RE,
    Section,
)
from policy.settings import PolicyConfigError, PolicySettings

NAMESPACE = "platform"
SECRET_KEYS = frozenset({"gitopsToken"})
"""Keys set with `pulumi config set --secret`: read where they are used, never validated here
beyond their type, so their values never reach an error message."""


@dataclass(frozen=True)
class ConfigIssue:
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


class ConfigError(ValueError):
    """The stack configuration is invalid; `issues` lists every problem found."""

    def __init__(self, issues: list[ConfigIssue]):
        self.issues = issues
        super().__init__("invalid stack configuration:\n" + "\n".join(f"  {i}" for i in issues))


def _cidr(value: str) -> str:
    try:
        net = ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a CIDR block such as 10.0.0.0/16 ({exc})") from None
    return str(net)


def instance_arch(instance_type: str) -> str | None:
    """`m7g.large` -> arm64 (Graviton families carry a `g` attribute), `t3.large` -> x86_64."""
    match = INSTANCE_TYPE_RE.match(instance_type)
    if not match:
        return None
    return "arm64" if "g" in match["attrs"] else "x86_64"


class ExistingVpc(Section):
    """Bring-your-own VPC: the platform creates no network resources."""

    vpc_id: str = Field(pattern=r"^vpc-[0-9a-f]{8,17}$")
    vpc_cidr: str
    """CIDR of the existing VPC (nodes accept cluster traffic from it)."""
    public_subnet_ids: list[str] = Field(min_length=1)
    private_subnet_ids: list[str] = []

    @field_validator("vpc_cidr")
    @classmethod
    def _check_cidr(cls, v: str) -> str:
        return _cidr(v)

    @field_validator("public_subnet_ids", "private_subnet_ids")
    @classmethod
    def _check_subnets(cls, v: list[str]) -> list[str]:
        bad = [s for s in v if not re.match(r"^subnet-[0-9a-f]{8,17}$", s)]
        if bad:
            raise ValueError(f"not subnet IDs (subnet-0123abcd...): {bad}")
        return v


class NetworkConfig(Section):
    """`platform:network` — the VPC the cluster runs in."""

    vpc_cidr: str = "10.20.0.0/16"
    availability_zones: int = Field(default=1, ge=1, le=3)
    """How many AZs to span (servers are spread over them)."""
    public_subnet_cidrs: list[str] = ["10.20.0.0/20"]
    private_subnet_cidrs: list[str] = []
    """Private subnets for the nodes; requires NAT gateways for egress."""
    nat_gateways: Literal["none", "single", "perAz"] = "none"
    node_subnets: Literal["public", "private"] = "public"
    existing: ExistingVpc | None = None

    @field_validator("vpc_cidr")
    @classmethod
    def _check_vpc(cls, v: str) -> str:
        return _cidr(v)

    @field_validator("public_subnet_cidrs", "private_subnet_cidrs")
    @classmethod
    def _check_subnets(cls, v: list[str]) -> list[str]:
        return [_cidr(c) for c in v]


class AgentsConfig(Section):
    """`platform:cluster.agents` — the agent Auto Scaling group."""

    min: int = Field(default=0, ge=0, le=100)
    max: int = Field(default=0, ge=0, le=100)
    desired: int = Field(default=0, ge=0, le=100)
    instance_type: str = "t3.large"
    spot_percentage: int = Field(default=0, ge=0, le=100)
    """Share of agents above the on-demand base that run on Spot capacity."""


class EtcdSnapshotConfig(Section):
    schedule: str = "0 */6 * * *"
    retention: int = Field(default=20, ge=1, le=500)
    retain_days: int = Field(default=30, ge=1, le=3650)
    """Days the bucket keeps replaced snapshot object versions."""

    @field_validator("schedule")
    @classmethod
    def _check_cron(cls, v: str) -> str:
        if len(v.split()) != 5 or not re.fullmatch(r"[0-9*/,\- ]+", v):
            raise ValueError(f"{v!r} is not a 5-field cron expression such as '0 */6 * * *'")
        return v


class ClusterConfig(Section):
    """`platform:cluster` — the K3s cluster on EC2."""

    servers: int = 1
    server_instance_type: str = "t3.large"
    arch: Literal["x86_64", "arm64"] = "x86_64"
    k3s_version: str = Field(default=versions.K3S_VERSION, alias="k3sVersion")
    agents: AgentsConfig = AgentsConfig()
    root_volume_gb: int = Field(default=40, ge=20, le=2000)
    api_allowed_cidrs: list[str] = Field(min_length=1)
    """CIDRs allowed to reach the Kubernetes API on 6443 (your office / VPN / CI egress)."""
    endpoint: Literal["eip", "nlb"] | None = None
    """`eip` (one server, no load balancer cost) or `nlb`; default: eip for 1 server, nlb for HA."""
    etcd_snapshots: EtcdSnapshotConfig = EtcdSnapshotConfig()

    @field_validator("servers")
    @classmethod
    def _check_servers(cls, v: int) -> int:
        if v not in (1, 3, 5):
            raise ValueError(
                f"must be 1, 3 or 5 (got {v}): embedded etcd needs an odd number of servers"
            )
        return v

    @field_validator("api_allowed_cidrs")
    @classmethod
    def _check_cidrs(cls, v: list[str]) -> list[str]:
        return [_cidr(c) for c in v]

    @field_validator("k3s_version")
    @classmethod
    def _check_k3s(cls, v: str) -> str:
        minor = versions.k3s_minor(v)
        if minor is None:
            raise ValueError(f"{v!r} is not a K3s release such as {versions.K3S_VERSION}")
        low, high = versions.RANCHER.kube_min, versions.RANCHER.kube_max
        if not (
            versions.minor_tuple(low) <= versions.minor_tuple(minor) <= versions.minor_tuple(high)
        ):
            raise ValueError(
                f"K3s {v} is Kubernetes {minor}; the pinned Rancher {versions.RANCHER.version} "
                f"supports {low} to {high}"
            )
        return v

    @property
    def endpoint_kind(self) -> str:
        return self.endpoint or ("eip" if self.servers == 1 else "nlb")


class LocalConfig(Section):
    """`platform:local` — an existing cluster (k3d, kind) reached through a kubeconfig."""

    kubeconfig: str = Field(min_length=1)
    """Path to the kubeconfig file (`~` is expanded)."""
    context: str | None = None
    ingress_ip: str = "127.0.0.1"
    """Address the cluster's ingress answers on (k3d maps 80/443 to the host)."""

    @field_validator("ingress_ip")
    @classmethod
    def _check_ip(cls, v: str) -> str:
        try:
            return str(ipaddress.ip_address(v))
        except ValueError:
            raise ValueError(f"{v!r} is not an IP address") from None


class DnsConfig(Section):
    """`platform:dns` — hostnames. Without a domain: `<name>.<ip>.sslip.io` on the ingress IP."""

    domain: str | None = None
    hosted_zone_id: str | None = Field(default=None, pattern=r"^Z[0-9A-Z]{4,32}$")

    @field_validator("domain")
    @classmethod
    def _check_domain(cls, v: str | None) -> str | None:
        if v is not None and not DNS_NAME_RE.match(v):
            raise ValueError(f"{v!r} is not a DNS name such as dev.example.com (lower case)")
        return v


class TlsConfig(Section):
    """`platform:tls` — certificates for the platform's hostnames."""

    lets_encrypt: bool = True
    acme_email: str | None = None
    acme_server: Literal["staging", "production"] | None = None
    """Default: production on production stacks, staging elsewhere."""

    @field_validator("acme_email")
    @classmethod
    def _check_email(cls, v: str | None) -> str | None:
        if v is not None and not EMAIL_RE.match(v):
            raise ValueError(f"{v!r} is not an e-mail address")
        return v


class GitOpsConfig(Section):
    """`platform:gitops` — where Argo CD finds the apps."""

    repo_url: str
    revision: str = "main"
    path: str = "argocd-apps"
    extras: list[str] = []
    """Folders of `<path>/extras/` this environment runs (e.g. nodelocaldns); none by default."""

    @field_validator("extras")
    @classmethod
    def _check_extras(cls, v: list[str]) -> list[str]:
        bad = [e for e in v if not K8S_NAME_RE.match(e)]
        if bad:
            raise ValueError(f"{bad} are not folder names under extras/ (a-z, 0-9 and '-')")
        if len(set(v)) != len(v):
            raise ValueError(f"{v} lists an extra twice")
        return v

    @field_validator("repo_url")
    @classmethod
    def _check_url(cls, v: str) -> str:
        if not re.match(r"^(https://|ssh://|git://|git@)[^\s]+$", v):
            raise ValueError(f"{v!r} is not a Git URL (https://, ssh://, git:// or git@host:...)")
        return v

    @field_validator("path")
    @classmethod
    def _check_path(cls, v: str) -> str:
        if v.startswith("/") or ".." in v.split("/") or not v.strip("/"):
            raise ValueError(f"{v!r} must be a relative path inside the repository")
        return v.strip("/")


class ChartsConfig(Section):
    """`platform:charts` — where the Helm charts come from."""

    directory: str | None = Field(default=None, min_length=1)
    """A folder holding each pinned chart as `<chart>-<version>.tgz` (an air-gapped mirror, or
    the cache `make charts` fills); unset: each chart's upstream repository."""


class ServicesConfig(Section):
    """`platform:services`: Rancher on/off, the secrets server, the app namespaces Vault knows."""

    rancher: bool | None = None
    """Default: on for AWS stacks, off on an existing (local) cluster."""
    secrets_server: Literal["vault", "openbao"] = "vault"
    """The chart behind the same Vault API: HashiCorp Vault (BUSL) or OpenBao (MPL)."""
    app_namespaces: list[str] = Field(default_factory=list)
    """Namespaces that get a Vault policy and role `apps-<ns>` for their own secrets."""

    @field_validator("app_namespaces")
    @classmethod
    def _check_namespaces(cls, v: list[str]) -> list[str]:
        bad = [ns for ns in v if not K8S_NAME_RE.match(ns)]
        if bad:
            raise ValueError(f"not Kubernetes namespace names: {bad}")
        return v

    def rancher_enabled(self, target: str) -> bool:
        return self.rancher if self.rancher is not None else target == "aws"


class PlatformConfig(Section):
    """The whole stack configuration (keys `platform:<field>` in the stack file)."""

    environment: str
    """Environment name; selects the argocd-apps overlay (dev, prod, local...)."""
    production: bool = False
    target: Literal["aws", "existing"] = "aws"
    aws_region: str | None = Field(default=None, alias="awsRegion")
    network: NetworkConfig = NetworkConfig()
    cluster: ClusterConfig | None = None
    local: LocalConfig | None = None
    dns: DnsConfig = DnsConfig()
    tls: TlsConfig = TlsConfig()
    gitops: GitOpsConfig
    registry: RegistryConfig = RegistryConfig()
    services: ServicesConfig = ServicesConfig()
    charts: ChartsConfig = ChartsConfig()
    monthly_budget_usd: float | None = Field(default=None, gt=0)
    """The cost estimate (make cost) must stay at or below this; checked by the policy pack."""
    policy: dict[str, Any] = Field(default_factory=dict)
    """Guardrail enforcement and thresholds per rule (policy/README.md, "Configuration")."""

    @field_validator("environment")
    @classmethod
    def _check_env(cls, v: str) -> str:
        if not ENV_NAME_RE.match(v):
            raise ValueError(f"{v!r} must be lower case letters, digits and '-', at most 16")
        return v

    @property
    def acme_server(self) -> str:
        return self.tls.acme_server or ("production" if self.production else "staging")


EXAMPLES = {
    "environment": "dev",
    "gitops": "{repoUrl: https://github.com/<you>/<fork>.git, revision: main, path: argocd-apps}",
    "repoUrl": "https://github.com/<you>/<fork>.git",
    "apiAllowedCidrs": "[203.0.113.0/24] (your office, VPN or CI egress)",
    "kubeconfig": "~/.kube/config",
    "vpcId": "vpc-0123456789abcdef0",
    "vpcCidr": "10.20.0.0/16",
    "publicSubnetIds": "[subnet-0123456789abcdef0]",
}


def _key(loc: tuple[Any, ...]) -> str:
    """Pydantic error location -> the key as written in the stack file."""
    if not loc:
        return f"{NAMESPACE}:"
    head, rest = loc[0], loc[1:]
    key = "aws:region" if head == "awsRegion" else f"{NAMESPACE}:{head}"
    for part in rest:
        key += f"[{part}]" if isinstance(part, int) else f".{part}"
    return key


def _overlaps(cidrs: list[str]) -> list[tuple[str, str]]:
    nets = [ipaddress.ip_network(c) for c in cidrs]
    return [(str(a), str(b)) for i, a in enumerate(nets) for b in nets[i + 1 :] if a.overlaps(b)]


def _chart_directory_issues(cfg: PlatformConfig) -> list[ConfigIssue]:
    """Every chart the stack installs must be in `platform:charts.directory`."""
    key = f"{NAMESPACE}:charts.directory"
    assert cfg.charts.directory is not None
    folder = Path(cfg.charts.directory).expanduser()
    if not folder.is_dir():
        return [ConfigIssue(key, f"{cfg.charts.directory!r} is not a directory")]
    pins = [versions.CERT_MANAGER, versions.EXTERNAL_SECRETS, versions.ARGO_CD]
    pins.append(versions.OPENBAO if cfg.services.secrets_server == "openbao" else versions.VAULT)
    if cfg.services.rancher_enabled(cfg.target):
        pins.append(versions.RANCHER)
    missing = [
        f"{p.chart}-{p.version}.tgz"
        for p in pins
        if not (folder / f"{p.chart}-{p.version}.tgz").is_file()
    ]
    if missing:
        return [
            ConfigIssue(
                key,
                f"{cfg.charts.directory} has no {', '.join(missing)} "
                "(`helm pull <repo>/<chart> --version <version>` writes that name)",
            )
        ]
    return []


def _semantic_issues(cfg: PlatformConfig) -> list[ConfigIssue]:
    """Checks that span several keys; run once every key has the right shape."""
    issues: list[ConfigIssue] = []

    def add(key: str, msg: str) -> None:
        issues.append(ConfigIssue(f"{NAMESPACE}:{key}", msg))

    try:
        PolicySettings.from_policy_config(cfg.policy, where=f"{NAMESPACE}:policy")
    except PolicyConfigError as exc:
        for problem in exc.issues:
            key, _, message = problem.partition(": ")
            issues.append(ConfigIssue(key, message))

    if cfg.charts.directory is not None:
        issues += _chart_directory_issues(cfg)

    if cfg.tls.lets_encrypt and not cfg.tls.acme_email:
        add(
            "tls.acmeEmail",
            "required when platform:tls.letsEncrypt is true (Let's Encrypt contact)",
        )
    if cfg.dns.hosted_zone_id and not cfg.dns.domain:
        add("dns.hostedZoneId", "needs platform:dns.domain (the zone's domain name)")

    if cfg.target == "existing":
        if cfg.local is None:
            add(
                "local.kubeconfig",
                "required when platform:target is existing (path to a kubeconfig)",
            )
        if cfg.cluster is not None:
            add(
                "cluster",
                "not allowed when platform:target is existing (the cluster already exists)",
            )
        return issues

    if cfg.local is not None:
        add("local", "only allowed when platform:target is existing")
    if not cfg.aws_region:
        issues.append(ConfigIssue("aws:region", "required when platform:target is aws"))
    elif not AWS_REGION_RE.match(cfg.aws_region):
        issues.append(ConfigIssue("aws:region", f"{cfg.aws_region!r} is not an AWS region"))
    if cfg.cluster is None:
        add("cluster", "required when platform:target is aws (at least apiAllowedCidrs)")
        return issues
    cl, net = cfg.cluster, cfg.network

    for key, itype in [
        ("serverInstanceType", cl.server_instance_type),
        ("agents.instanceType", cl.agents.instance_type),
    ]:
        arch = instance_arch(itype)
        if arch is None:
            add(f"cluster.{key}", f"{itype!r} is not an EC2 instance type such as t3.large")
        elif arch != cl.arch:
            family = (
                "Graviton (t4g, m7g, c7g...)" if cl.arch == "arm64" else "x86 (t3, m6i, c6a...)"
            )
            add(
                f"cluster.{key}",
                f"{itype} is {arch}; platform:cluster.arch {cl.arch} needs a {family} type",
            )

    ag = cl.agents
    if ag.min > ag.max:
        add("cluster.agents.min", f"{ag.min} is greater than platform:cluster.agents.max {ag.max}")
    elif not ag.min <= ag.desired <= ag.max:
        add(
            "cluster.agents.desired",
            f"{ag.desired} must be within [min, max] = [{ag.min}, {ag.max}]",
        )

    if cl.endpoint == "eip" and cl.servers > 1:
        add("cluster.endpoint", "eip serves one server; HA servers need nlb")
    elif cl.endpoint_kind == "eip" and net.node_subnets == "private":
        add(
            "cluster.endpoint",
            "an Elastic IP reaches a server in a public subnet only; private nodes need nlb",
        )
    if cfg.production:
        world = [c for c in cl.api_allowed_cidrs if ipaddress.ip_network(c).prefixlen == 0]
        if world:
            add(
                "cluster.apiAllowedCidrs",
                f"{world} opens the Kubernetes API to the internet; production stacks must list "
                "specific CIDRs",
            )

    if net.existing is not None:
        if net.node_subnets == "private" and not net.existing.private_subnet_ids:
            add(
                "network.existing.privateSubnetIds",
                "required when platform:network.nodeSubnets is private",
            )
        return issues

    vpc = ipaddress.ip_network(net.vpc_cidr)
    for label, k3s_net in K3S_NETWORKS.items():
        if vpc.overlaps(ipaddress.ip_network(k3s_net)):
            add("network.vpcCidr", f"{vpc} overlaps the K3s {label} CIDR {k3s_net}")
    if cl.servers > 1 and net.availability_zones < 3:
        add(
            "network.availabilityZones",
            f"{cl.servers} servers need 3 availability zones so losing one AZ keeps etcd quorum",
        )
    for key, cidrs in [
        ("publicSubnetCidrs", net.public_subnet_cidrs),
        ("privateSubnetCidrs", net.private_subnet_cidrs),
    ]:
        if cidrs and len(cidrs) != net.availability_zones:
            add(
                f"network.{key}",
                f"needs one CIDR per availability zone ({net.availability_zones}), "
                f"got {len(cidrs)}",
            )
        for i, c in enumerate(cidrs):
            if not ipaddress.ip_network(c).subnet_of(vpc):  # type: ignore[arg-type]
                add(f"network.{key}[{i}]", f"{c} is not inside platform:network.vpcCidr {vpc}")
    if not net.public_subnet_cidrs:
        add(
            "network.publicSubnetCidrs",
            "at least one public subnet is needed for the ingress endpoint",
        )
    for a, b in _overlaps(net.public_subnet_cidrs + net.private_subnet_cidrs):
        add(
            "network.publicSubnetCidrs"
            if b in net.public_subnet_cidrs
            else "network.privateSubnetCidrs",
            f"subnet {b} overlaps {a}",
        )
    if net.node_subnets == "private":
        if not net.private_subnet_cidrs:
            add(
                "network.privateSubnetCidrs",
                "required when platform:network.nodeSubnets is private",
            )
        if net.nat_gateways == "none":
            add(
                "network.natGateways",
                "private nodes need a NAT gateway to download K3s and images (single or perAz)",
            )
    elif net.nat_gateways != "none" and not net.private_subnet_cidrs:
        add("network.natGateways", "NAT gateways serve private subnets; none are configured")
    return issues


def parse(raw: Mapping[str, Any]) -> PlatformConfig:
    """Build the config from stack-file keys (`{"platform:cluster": {...}, "aws:region": ...}`)."""
    data: dict[str, Any] = {}
    issues: list[ConfigIssue] = []
    fields = {f.alias or name for name, f in PlatformConfig.model_fields.items()}
    for full_key, value in raw.items():
        ns, _, key = full_key.partition(":")
        if full_key == "aws:region":
            data["awsRegion"] = value
        elif ns == NAMESPACE:
            if key in SECRET_KEYS:
                # Decrypted by the engine: a string; read from the stack file: {secure: <cipher>}.
                stored = isinstance(value, Mapping) and set(value) == {"secure"}
                if not stored and (not isinstance(value, str) or not value):
                    issues.append(
                        ConfigIssue(
                            full_key,
                            "must be a non-empty string set with `pulumi config set --secret`",
                        )
                    )
            elif key not in fields or key == "awsRegion":
                known = (fields - {"awsRegion"}) | SECRET_KEYS
                allowed = ", ".join(sorted(f"{NAMESPACE}:{f}" for f in known))
                issues.append(ConfigIssue(full_key, f"unknown key; allowed: {allowed}"))
            else:
                data[key] = value
    try:
        cfg = PlatformConfig.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            elif err["type"] == "missing":
                example = EXAMPLES.get(str(err["loc"][-1]))
                msg = (
                    f"required, e.g. {example}"
                    if example
                    else "required (see stacks/Pulumi.dev.yaml)"
                )
            elif err["type"].endswith("_type") or err["type"] == "literal_error":
                msg = f"{msg} (got {err['input']!r})"
            issues.append(ConfigIssue(_key(err["loc"]), msg))
        raise ConfigError(issues) from None
    issues += _semantic_issues(cfg)
    if issues:
        raise ConfigError(issues)
    return cfg


def decode(values: Mapping[str, Any]) -> dict[str, Any]:
    """The platform's keys with JSON text decoded: the engine hands every value over as text, and
    `pulumi new` / `pulumi config set` store objects as JSON strings in the stack file."""
    decoded: dict[str, Any] = {}
    for key, value in values.items():
        if key.removeprefix(f"{NAMESPACE}:") in SECRET_KEYS:
            decoded[key] = value
        elif key.startswith(f"{NAMESPACE}:") or key == "aws:region":
            try:
                decoded[key] = json.loads(value) if isinstance(value, str) else value
            except json.JSONDecodeError:
                decoded[key] = value
    return decoded


def from_pulumi() -> PlatformConfig:
    """Read the stack's configuration from the Pulumi runtime and validate it."""
    import pulumi.runtime.config as runtime_config

    return parse(decode({**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}))
