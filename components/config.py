"""The stack's configuration: one typed, validated object built from `stacks/Pulumi.<stack>.yaml`.

Every key lives in the `platform:` namespace (plus `aws:region`). Invalid input raises `ConfigError`
before any resource is registered, with one line per problem naming the key as it is written in the
stack file (`platform:cluster.agents.min`) and what is allowed.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import unicodedata
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator

from components import versions
from policy.cost.catalogue import instance_types, priced_types, regions
from policy.registry.config import RegistryConfig
from policy.sections import (
    AWS_REGION_RE,
    DNS_NAME_RE,
    EMAIL_RE,
    ENV_NAME_RE,
    INSTANCE_TYPE_RE,
    K3S_NETWORKS,
    K8S_NAME_RE,
    Section,
    unique,
)
from policy.settings import PolicyConfigError, PolicySettings
from policy.stack_file import (
    ConfigError,
    ConfigIssue,
    JsonRefused,
    StackFile,
    is_secure,
    json_value,
    key_path,
    printable,
    shown,
)

NAMESPACE = "platform"
SECRET_KEYS = frozenset({"gitopsToken"})
"""Keys set with `pulumi config set --secret`: read where they are used, never validated here
beyond their type, so their values never reach an error message."""
_SECRET_NAMES = ", ".join(sorted(f"{NAMESPACE}:{key}" for key in SECRET_KEYS))


MAX_DOMAIN_CHARS = 253 - 64
"""Apps and services are `<name>.<domain>` with names of up to 63 characters, and a DNS name
holds at most 253."""


def _cidr(value: str) -> str:
    """An IPv4 CIDR block: the VPC, its subnets and the API's security-group rules are IPv4."""
    try:
        net = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(f"{shown(value)} is not a CIDR block such as 10.0.0.0/16") from None
    if net.version != 4:
        raise ValueError(f"{shown(value)} is IPv6; only IPv4 CIDR blocks are supported here")
    if ipaddress.ip_interface(value).ip != net.network_address:
        raise ValueError(f"{shown(value)} has host bits set; the block is {net}")
    return str(net)


RESERVED_DOMAINS = ("example.com", "example.net", "example.org")
RESERVED_TLDS = ("example", "invalid", "localhost", "test")


def reserved_domain(domain: str) -> bool:
    """Whether `domain` is, or is under, a name RFC 2606 and RFC 6761 reserve for examples and
    tests: no mail is delivered there and no public CA issues for it."""
    name = domain.lower().rstrip(".")
    return name.rpartition(".")[2] in RESERVED_TLDS or any(
        name == d or name.endswith(f".{d}") for d in RESERVED_DOMAINS
    )


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
    public_subnet_ids: list[str] = Field(min_length=1, max_length=16)
    private_subnet_ids: list[str] = Field(default_factory=list, max_length=16)

    @field_validator("vpc_cidr")
    @classmethod
    def _check_cidr(cls, v: str) -> str:
        return _cidr(v)

    @field_validator("public_subnet_ids", "private_subnet_ids")
    @classmethod
    def _check_subnets(cls, v: list[str]) -> list[str]:
        bad = [s for s in v if not re.match(r"^subnet-[0-9a-f]{8,17}$", s)]
        if bad:
            raise ValueError(f"not subnet IDs (subnet-0123abcd...): {shown(bad)}")
        return unique(v)


class NetworkConfig(Section):
    """`platform:network` — the VPC the cluster runs in."""

    vpc_cidr: str = "10.20.0.0/16"
    availability_zones: int = Field(default=1, ge=1, le=3)
    """How many AZs to span (servers are spread over them)."""
    public_subnet_cidrs: list[str] = Field(default=["10.20.0.0/20"], max_length=3)
    private_subnet_cidrs: list[str] = Field(default_factory=list, max_length=3)
    """Private subnets for the nodes; requires NAT gateways for egress."""
    nat_gateways: Literal["none", "single", "perAz", "instance"] = "none"
    """Egress of private subnets: one NAT gateway, one per AZ, or `instance`: one t4g.nano NAT
    instance (about $29 a month less than a gateway, but one instance with no managed failover)."""
    node_subnets: Literal["public", "private"] = "public"
    existing: ExistingVpc | None = None

    @field_validator("vpc_cidr")
    @classmethod
    def _check_vpc(cls, v: str) -> str:
        cidr = _cidr(v)
        if not 16 <= ipaddress.ip_network(cidr).prefixlen <= 28:
            raise ValueError(f"{cidr} is not /16 to /28, the sizes AWS allows for a VPC")
        return cidr

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


CRON_RANGES = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 6)]
_CRON_PART = re.compile(r"^(\*|(?P<low>\d{1,2})(-(?P<high>\d{1,2}))?)(/(?P<step>\d{1,2}))?$")


def _cron_field_ok(field: str, bounds: tuple[int, int]) -> bool:
    """One cron field (`*/6`, `1-5`, `0,30`) within its range: K3s refuses to start otherwise."""
    for part in field.split(","):
        match = _CRON_PART.match(part)
        if not match or match["step"] in ("0", "00"):
            return False
        numbers = [int(n) for n in (match["low"], match["high"]) if n is not None]
        if any(not bounds[0] <= n <= bounds[1] for n in numbers) or numbers != sorted(numbers):
            return False
    return True


class EtcdSnapshotConfig(Section):
    schedule: str = "0 */6 * * *"
    retention: int = Field(default=20, ge=1, le=500)
    retain_days: int = Field(default=30, ge=1, le=3650)
    """Days the bucket keeps replaced snapshot object versions."""

    @field_validator("schedule")
    @classmethod
    def _check_cron(cls, v: str) -> str:
        fields = v.split()
        if len(fields) != len(CRON_RANGES) or not all(
            _cron_field_ok(f, r) for f, r in zip(fields, CRON_RANGES, strict=True)
        ):
            raise ValueError(
                f"{shown(v)} is not a 5-field cron expression such as '0 */6 * * *' "
                "(minute 0-59, hour 0-23, day 1-31, month 1-12, weekday 0-6)"
            )
        return v


class CaConfig(Section):
    """`platform:cluster.ca` — the generations of the cluster's client and server CAs; a new
    generation is a new key (docs/operations.md, "Rotate credentials")."""

    client: list[int] = [1]
    """Client CA generations the API server trusts, oldest first: one, or two consecutive ones
    while a rotation overlaps (`[1, 2]`, then `[2]`). The newest signs the admin certificate."""
    server: int = Field(default=1, ge=1, le=999)

    @field_validator("client")
    @classmethod
    def _check_client(cls, v: list[int]) -> list[int]:
        consecutive = len(v) == 2 and v[1] == v[0] + 1
        if not (len(v) == 1 or consecutive) or not all(1 <= g <= 999 for g in v):
            raise ValueError(
                f"{shown(v)} is not one generation such as [2], or two consecutive ones while a "
                "rotation overlaps such as [1, 2] (oldest first, 1 to 999)"
            )
        return v


class ClusterConfig(Section):
    """`platform:cluster` — the K3s cluster on EC2."""

    servers: int = 1
    server_instance_type: str = "t3.large"
    server_spot: bool = False
    """Run the servers as persistent Spot requests that stop (not terminate) when EC2 interrupts
    them and start again when capacity returns: the root volume, the fixed private address and
    the Elastic IP survive. Non-production stacks only."""
    arch: Literal["x86_64", "arm64"] = "x86_64"
    k3s_version: str = Field(default=versions.K3S_VERSION, alias="k3sVersion")
    agents: AgentsConfig = AgentsConfig()
    root_volume_gb: int = Field(default=40, ge=20, le=2000)
    api_allowed_cidrs: list[str] = Field(min_length=1, max_length=50)
    """IPv4 CIDRs allowed to reach the Kubernetes API on 6443 (your office / VPN / CI egress);
    one security-group rule each, and a group holds 60 by default."""
    endpoint: Literal["eip", "nlb"] | None = None
    """`eip` (one server, no load balancer cost) or `nlb`; default: eip for 1 server, nlb for HA."""
    etcd_snapshots: EtcdSnapshotConfig = EtcdSnapshotConfig()
    ca: CaConfig = CaConfig()

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
        return unique([_cidr(c) for c in v])

    @field_validator("k3s_version")
    @classmethod
    def _check_k3s(cls, v: str) -> str:
        minor = versions.k3s_minor(v)
        if minor is None:
            raise ValueError(f"{shown(v)} is not a K3s release such as {versions.K3S_VERSION}")
        low, high = versions.RANCHER.kube_min, versions.RANCHER.kube_max
        if not (
            versions.minor_tuple(low) <= versions.minor_tuple(minor) <= versions.minor_tuple(high)
        ):
            raise ValueError(
                f"K3s {v} is Kubernetes {minor}; the pinned Rancher {versions.RANCHER.version} "
                f"supports {low} to {high}"
            )
        if v not in versions.K3S_BINARY_SHA256:
            raise ValueError(
                f"K3s {v} has no pinned binary checksums (nodes refuse unverified downloads); "
                f"pinned: {', '.join(sorted(versions.K3S_BINARY_SHA256))}, or add the release's "
                "sha256sum-amd64.txt and sha256sum-arm64.txt values to "
                "components/versions.py K3S_BINARY_SHA256"
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
    """IPv4 address the cluster's ingress answers on (k3d maps 80/443 to the host)."""

    @field_validator("ingress_ip")
    @classmethod
    def _check_ip(cls, v: str) -> str:
        try:
            return str(ipaddress.IPv4Address(v))
        except ValueError:
            raise ValueError(f"{shown(v)} is not an IPv4 address such as 127.0.0.1") from None


class DnsConfig(Section):
    """`platform:dns` — hostnames. Without a domain: `<name>.<ip>.sslip.io` on the ingress IP."""

    domain: str | None = None
    hosted_zone_id: str | None = Field(default=None, pattern=r"^Z[0-9A-Z]{4,32}$")

    @field_validator("domain")
    @classmethod
    def _check_domain(cls, v: str | None) -> str | None:
        if v is not None and not DNS_NAME_RE.match(v):
            raise ValueError(f"{shown(v)} is not a DNS name such as dev.example.com (lower case)")
        if v is not None and len(v) > MAX_DOMAIN_CHARS:
            raise ValueError(
                f"{len(v)} characters; at most {MAX_DOMAIN_CHARS} leave room for the "
                "`<name>.` of the hostnames under it (a DNS name holds 253)"
            )
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
            raise ValueError(f"{shown(v)} is not an e-mail address")
        if v is not None and reserved_domain(v.rpartition("@")[2]):
            # Let's Encrypt refuses to register an account with such a contact.
            raise ValueError(
                f"{shown(v)} is in a reserved domain (RFC 2606/6761: example.com/.net/.org, "
                ".example, .invalid, .localhost, .test) that Let's Encrypt refuses; use a "
                "mailbox of your own or leave acmeEmail out (the account needs no contact)"
            )
        return v


class GitOpsConfig(Section):
    """`platform:gitops` — where Argo CD finds the apps."""

    repo_url: str
    revision: str = "main"
    path: str = "argocd-apps"
    extras: list[str] = Field(default_factory=list, max_length=50)
    """Folders of `<path>/extras/` this environment runs (e.g. nodelocaldns); none by default."""

    @field_validator("extras")
    @classmethod
    def _check_extras(cls, v: list[str]) -> list[str]:
        bad = [e for e in v if not K8S_NAME_RE.match(e)]
        if bad:
            raise ValueError(f"{shown(bad)} are not folder names under extras/ (a-z, 0-9 and '-')")
        return unique(v)

    @field_validator("repo_url")
    @classmethod
    def _check_url(cls, v: str) -> str:
        if not re.match(r"^(https://|ssh://|git://|git@)[^\s]+$", v):
            raise ValueError(
                f"{shown(v)} is not a Git URL (https://, ssh://, git:// or git@host:...)"
            )
        return v

    @field_validator("path")
    @classmethod
    def _check_path(cls, v: str) -> str:
        if v.startswith("/") or ".." in v.split("/") or not v.strip("/"):
            raise ValueError(f"{shown(v)} must be a relative path inside the repository")
        return v.strip("/")


class ChartsConfig(Section):
    """`platform:charts` — where the Helm charts come from."""

    directory: str | None = Field(default=None, min_length=1)
    """A folder holding each pinned chart as `<chart>-<version>.tgz` (an air-gapped mirror, or
    the cache `make charts` fills); unset: each chart's upstream repository."""


class VaultIngressConfig(Section):
    """`platform:services.vaultIngress`: Vault's public Ingress, off unless this is set."""

    allowed_cidrs: list[str] | None = Field(default=None, min_length=1, max_length=50)
    """Client addresses Traefik lets through to Vault; default: platform:cluster.apiAllowedCidrs."""

    @field_validator("allowed_cidrs")
    @classmethod
    def _check_cidrs(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else unique([_cidr(c) for c in v])


class ServicesConfig(Section):
    """`platform:services`: Rancher on/off, the secrets server, the app namespaces Vault knows."""

    rancher: bool | None = None
    """Default: on for AWS stacks, off on an existing (local) cluster."""
    secrets_server: Literal["vault", "openbao"] = "vault"
    """The chart behind the same Vault API: HashiCorp Vault (BUSL) or OpenBao (MPL)."""
    app_namespaces: list[str] = Field(default_factory=list, max_length=100)
    """Namespaces that get a Vault policy and role `apps-<ns>` for their own secrets."""
    vault_ingress: VaultIngressConfig | None = None
    """Vault's UI and API on `vault.<domain>` for listed addresses; None: in-cluster only."""
    vault_revoke_root: bool = False
    """Revoke Vault's root token once bootstrapped; later runs use a scoped, renewed token."""

    @field_validator("app_namespaces")
    @classmethod
    def _check_namespaces(cls, v: list[str]) -> list[str]:
        bad = [ns for ns in v if not K8S_NAME_RE.match(ns)]
        if bad:
            raise ValueError(f"not Kubernetes namespace names: {shown(bad)}")
        return unique(v)

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
    decommission: bool = False
    """Lift every protection against deletion (components/decommission.py) so that the next
    `pulumi destroy` removes the stack completely, snapshots, logs and images included."""
    policy: dict[str, Any] = Field(default_factory=dict)
    """Guardrail enforcement and thresholds per rule (policy/README.md, "Configuration")."""

    @field_validator("environment")
    @classmethod
    def _check_env(cls, v: str) -> str:
        if not ENV_NAME_RE.match(v):
            raise ValueError(f"{shown(v)} must be lower case letters, digits and '-', at most 16")
        return v

    @property
    def acme_server(self) -> str:
        return self.tls.acme_server or ("production" if self.production else "staging")

    @property
    def vault_ingress_cidrs(self) -> list[str] | None:
        """Sources Vault's public Ingress admits; None: no public Ingress."""
        opt_in = self.services.vault_ingress
        if opt_in is None:
            return None
        if opt_in.allowed_cidrs is not None:
            return opt_in.allowed_cidrs
        return self.cluster.api_allowed_cidrs if self.cluster is not None else None


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
    return key_path("aws:region" if head == "awsRegion" else f"{NAMESPACE}:{head}", rest)


def _overlaps(cidrs: list[str]) -> list[tuple[str, str]]:
    nets = [ipaddress.ip_network(c) for c in cidrs]
    return [(str(a), str(b)) for i, a in enumerate(nets) for b in nets[i + 1 :] if a.overlaps(b)]


def _chart_directory_issues(cfg: PlatformConfig) -> list[ConfigIssue]:
    """Every chart the stack installs must be in `platform:charts.directory`."""
    key = f"{NAMESPACE}:charts.directory"
    assert cfg.charts.directory is not None
    folder = Path(cfg.charts.directory).expanduser()
    if not folder.is_dir():
        return [ConfigIssue(key, f"{shown(cfg.charts.directory)} is not a directory")]
    pins = [versions.CERT_MANAGER, versions.EXTERNAL_SECRETS, versions.ARGO_CD]
    pins.append(versions.OPENBAO if cfg.services.secrets_server == "openbao" else versions.VAULT)
    if cfg.services.rancher_enabled(cfg.target):
        pins.append(versions.RANCHER)
    missing = [p.archive for p in pins if not (folder / p.archive).is_file()]
    if missing:
        return [
            ConfigIssue(
                key,
                f"{shown(cfg.charts.directory)} has no {', '.join(missing)} "
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
        issues += exc.config_issues()

    if cfg.charts.directory is not None:
        issues += _chart_directory_issues(cfg)

    # Every sslip.io name shares one registered domain, whose weekly certificate quota at Let's
    # Encrypt is always used up.
    if cfg.tls.lets_encrypt and cfg.acme_server == "production" and not cfg.dns.domain:
        add(
            "dns.domain",
            "required when a stack uses Let's Encrypt production: sslip.io names share one "
            "exhausted certificate quota; set a domain of your own, or platform:tls.letsEncrypt: "
            "false",
        )
    if cfg.dns.hosted_zone_id and not cfg.dns.domain:
        add("dns.hostedZoneId", "needs platform:dns.domain (the zone's domain name)")

    vault_ingress = cfg.services.vault_ingress
    if vault_ingress is not None and cfg.vault_ingress_cidrs is None:
        add(
            "services.vaultIngress.allowedCidrs",
            "required on an existing cluster (there is no platform:cluster.apiAllowedCidrs to "
            "default to): the client CIDRs that may reach Vault, e.g. [203.0.113.0/24]",
        )
    elif vault_ingress is not None and any(
        ipaddress.ip_network(c).prefixlen == 0 for c in cfg.vault_ingress_cidrs or ()
    ):
        add(
            "services.vaultIngress.allowedCidrs",
            "0.0.0.0/0 opens Vault's login to the internet; list specific CIDRs, or leave "
            "vaultIngress out and reach Vault with kubectl port-forward",
        )

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
        issues.append(ConfigIssue("aws:region", f"{shown(cfg.aws_region)} is not an AWS region"))
    elif cfg.aws_region not in regions():
        issues.append(
            ConfigIssue(
                "aws:region",
                f"{printable(cfg.aws_region)} has no prices in policy/cost/prices.yaml, which the "
                f"cost estimate and the budget check need; priced regions: {', '.join(regions())} "
                "(add the region's prices there to use it)",
            )
        )
    if cfg.cluster is None:
        add("cluster", "required when platform:target is aws (at least apiAllowedCidrs)")
        return issues
    cl, net = cfg.cluster, cfg.network

    catalogue = instance_types()
    for key, itype in [
        ("serverInstanceType", cl.server_instance_type),
        ("agents.instanceType", cl.agents.instance_type),
    ]:
        arch = catalogue[itype].arch if itype in catalogue else instance_arch(itype)
        if arch is None:
            add(f"cluster.{key}", f"{shown(itype)} is not an EC2 instance type such as t3.large")
        elif arch != cl.arch:
            family = (
                "Graviton (t4g, m7g, c7g...)" if cl.arch == "arm64" else "x86 (t3, t3a, m6i...)"
            )
            add(
                f"cluster.{key}",
                f"{printable(itype)} is {arch}; platform:cluster.arch {cl.arch} needs a "
                f"{family} type",
            )
        elif cfg.aws_region in regions() and itype not in priced_types(cfg.aws_region, arch):
            # The estimate and the budget check price every node: an unpriced type has neither.
            add(
                f"cluster.{key}",
                f"{printable(itype)} has no {cfg.aws_region} price in policy/cost/prices.yaml; "
                f"allowed for platform:cluster.arch {arch}: "
                f"{', '.join(priced_types(cfg.aws_region, arch))}",
            )

    if cl.server_spot and cfg.production:
        add(
            "cluster.serverSpot",
            "EC2 may stop Spot servers at two minutes' notice (and several at once, losing etcd "
            "quorum); production stacks run on-demand servers: set false",
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
                "private nodes need a NAT to download K3s and images (single, perAz or instance)",
            )
    elif net.nat_gateways != "none" and not net.private_subnet_cidrs:
        add("network.natGateways", "NAT gateways serve private subnets; none are configured")
    return issues


def _suggestion(written: str, known: Collection[str]) -> str:
    close = difflib.get_close_matches(written.lower(), [k.lower() for k in known], n=1, cutoff=0.75)
    match = [k for k in known if close and k.lower() == close[0]]
    return f"; did you mean {match[0]}?" if match else ""


def _outside_issue(full_key: str) -> ConfigIssue | None:
    """A key of another namespace that is most likely a misspelt platform or AWS key."""
    ns, _, key = full_key.partition(":")
    lookalike = ns not in (NAMESPACE, "aws") and (
        ns.lower() in (NAMESPACE, "aws") or _suggestion(ns, [NAMESPACE])
    )
    if lookalike:
        fixed = f"{'aws' if ns.lower() == 'aws' else NAMESPACE}:{key}"
        return ConfigIssue(
            full_key, f"unknown namespace {printable(ns)}; did you mean {printable(fixed)}?"
        )
    if ns == "aws" and key != "region" and _suggestion(key, ["region"]):
        return ConfigIssue(full_key, "unknown AWS key; did you mean aws:region?")
    return None


def _control_characters(key: str, value: Any) -> Iterator[ConfigIssue]:
    """Strings holding control or format characters: no setting needs them, and they would reach
    manifests, user data and terminals as they are."""
    if isinstance(value, str):
        bad = sorted({c for c in value if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")})
        if bad:
            yield ConfigIssue(
                key, f"holds the control character {shown(bad[0])}; remove it (got {shown(value)})"
            )
    elif isinstance(value, Mapping):
        for name, item in value.items():
            yield from _control_characters(f"{key}.{name}", item)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _control_characters(f"{key}[{i}]", item)


def _validation_issues(exc: ValidationError, skipped: Collection[str]) -> Iterator[ConfigIssue]:
    """Pydantic's errors as keys written in the stack file; errors under `skipped` keys (secrets
    refused already) are left out."""
    for err in exc.errors():
        if err["loc"] and err["loc"][0] in skipped:
            continue
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            example = EXAMPLES.get(str(err["loc"][-1]))
            msg = (
                f"required, e.g. {example}" if example else "required (see stacks/Pulumi.dev.yaml)"
            )
        elif err["type"].endswith("_type") or err["type"] == "literal_error":
            msg = f"{msg} (got {shown(err['input'])})"
        yield ConfigIssue(_key(err["loc"]), msg)


def _fields(
    raw: Mapping[str, Any], secret_keys: Collection[str]
) -> tuple[dict[str, Any], list[ConfigIssue], set[str]]:
    """The platform's values by field name, the problems of the keys themselves, and the fields
    refused for being secrets."""
    data: dict[str, Any] = {}
    issues: list[ConfigIssue] = []
    refused: set[str] = set()
    fields = {f.alias or name for name, f in PlatformConfig.model_fields.items()} - {"awsRegion"}
    for full_key, value in raw.items():
        ns, colon, key = full_key.partition(":")
        field = "awsRegion" if full_key == "aws:region" else key
        if not colon:
            issues.append(
                ConfigIssue(
                    full_key,
                    "not a config key; keys are `<namespace>:<name>`, e.g. platform:environment",
                )
            )
        elif ns == NAMESPACE and key in SECRET_KEYS:
            # Decrypted by the engine: a string; read from the stack file: {secure: <cipher>}.
            stored = isinstance(value, Mapping) and set(value) == {"secure"}
            if not stored and (not isinstance(value, str) or not value):
                issues.append(
                    ConfigIssue(
                        full_key, "must be a non-empty string set with `pulumi config set --secret`"
                    )
                )
        elif field != "awsRegion" and ns != NAMESPACE:
            issues += filter(None, [_outside_issue(full_key)])
        elif full_key in secret_keys or is_secure(value):
            refused.add(field)
            issues.append(
                ConfigIssue(
                    full_key,
                    f"set as a secret, but only {_SECRET_NAMES} may be one: set it again "
                    "without --secret",
                )
            )
        elif field not in fields | {"awsRegion"}:
            known = fields | SECRET_KEYS
            allowed = sorted(f"{NAMESPACE}:{f}" for f in known)
            issues.append(
                ConfigIssue(
                    full_key,
                    f"unknown key{_suggestion(full_key, allowed)} (allowed: {', '.join(allowed)})",
                )
            )
        else:
            data[field] = value
            issues += _control_characters(full_key, value)
    return data, issues, refused


def parse(raw: Mapping[str, Any], secret_keys: Collection[str] = ()) -> PlatformConfig:
    """Build the config from stack-file keys (`{"platform:cluster": {...}, "aws:region": ...}`).

    `secret_keys` are the keys set with `--secret` (the engine passes their values decrypted):
    their values are never shown, and only SECRET_KEYS may be one."""
    data, issues, refused = _fields(raw, secret_keys)
    try:
        cfg = PlatformConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(issues + list(_validation_issues(exc, refused))) from None
    if refused:
        # Defaults stand in for the refused keys: checks across keys would judge those.
        raise ConfigError(issues)
    issues += _semantic_issues(cfg)
    if issues:
        raise ConfigError(issues)
    return cfg


def decode(values: Mapping[str, Any], secret_keys: Collection[str] = ()) -> dict[str, Any]:
    """The config with the platform's JSON text decoded: the engine hands every value over as
    text, and `pulumi new` / `pulumi config set` store objects as JSON strings in the stack file.

    Secrets and other namespaces stay as they are."""
    decoded: dict[str, Any] = {}
    issues: list[ConfigIssue] = []
    for key, value in values.items():
        decoded[key] = value
        ours = key.startswith(f"{NAMESPACE}:") or key == "aws:region"
        secret = key in secret_keys or key.removeprefix(f"{NAMESPACE}:") in SECRET_KEYS
        if ours and not secret and isinstance(value, str):
            try:
                decoded[key] = json_value(value)
            except JsonRefused as exc:
                issues.append(ConfigIssue(key, str(exc)))
            except ValueError:
                pass
    if issues:
        raise ConfigError(issues)
    return decoded


def from_stack_file(stack: StackFile) -> PlatformConfig:
    """Validate a stack file read by `policy.stack_file.load`; issues name its lines."""
    try:
        return parse(decode(stack.values, stack.secret_keys), stack.secret_keys)
    except ConfigError as exc:
        raise stack.located(exc) from None


def checked_values(stack: StackFile) -> dict[str, Any]:
    """The stack file's config decoded, once its keys pass the checks `parse` makes of keys
    (namespaces, secrets, control characters), for readers of a few keys such as the policy
    checker; their values are for the reader to validate."""
    try:
        values = decode(stack.values, stack.secret_keys)
        issues = _fields(values, stack.secret_keys)[1]
        if issues:
            raise ConfigError(issues)
    except ConfigError as exc:
        raise stack.located(exc) from None
    return values


def from_pulumi() -> PlatformConfig:
    """Read the stack's configuration from the Pulumi runtime and validate it.

    An invalid config stops the program with `pulumi.RunError`, which the engine prints as the
    message alone: one line per problem, no Python traceback."""
    import pulumi
    import pulumi.runtime.config as runtime_config

    values = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    secret_keys = set(runtime_config.get_config_secret_keys_env())
    secret_keys |= {key for key in values if runtime_config.is_config_secret(key)}
    try:
        return parse(decode(values, secret_keys), secret_keys)
    except ConfigError as exc:
        raise pulumi.RunError(str(exc)) from None
