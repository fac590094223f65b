"""Monthly cost estimate of a stack, one line per billable resource, from the price table beside
this file (`prices.yaml`: regions, date, sources). Works on what the program declares (the synth's
registrations or the Pulumi engine's resources), so it needs no cloud credentials."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from policy.cost.catalogue import instance_types, regions, table
from policy.stack_file import printable

UNLIMITED_NOTE = "unlimited CPU credits: use above the T type's baseline is billed extra"


class UnknownPrice(LookupError):
    """The price table has no entry for a region or an instance type."""


@dataclass(frozen=True)
class Line:
    item: str
    quantity: float
    unit: str
    unit_price: float
    monthly: float
    note: str = ""


@dataclass(frozen=True)
class Estimate:
    region: str
    prices_date: str
    lines: list[Line]

    @property
    def total(self) -> float:
        return round(sum(line.monthly for line in self.lines), 2)

    def to_dict(self) -> dict[str, Any]:
        return {
            "region": self.region,
            "pricesDate": self.prices_date,
            "currency": "USD",
            "monthlyTotal": self.total,
            "lines": [asdict(line) for line in self.lines],
        }

    def table(self) -> str:
        rows = [f"{'item':<58} {'qty':>6} {'unit price':>11} {'monthly':>10}"]
        for line in self.lines:
            rows.append(
                f"{line.item:<58} {line.quantity:>6g} {line.unit_price:>11.4f} "
                f"{line.monthly:>10.2f}"
            )
            if line.note:
                rows.append(f"    {line.note}")
        rows.append(
            f"{'total (USD/month, ' + self.region + ', prices of ' + self.prices_date + ')':<77} "
            f"{self.total:>10.2f}"
        )
        return "\n".join(rows)


@dataclass(frozen=True)
class Resource:
    """What the estimate reads of a resource: its type, name, cloud ID (when known) and inputs."""

    type: str
    name: str
    inputs: Mapping[str, Any]
    id: str | None = None


def load_prices(region: str) -> tuple[dict[str, Any], str, int]:
    prices = table()
    if region not in prices["regions"]:
        raise UnknownPrice(
            f"policy/cost/prices.yaml has no prices for region {region}; it has {regions()}"
        )
    return prices["regions"][region], prices["date"], prices["hours_per_month"]


def estimate(resources: Iterable[Resource], region: str) -> Estimate:
    """The monthly estimate of everything billable among `resources`."""
    prices, date, hours = load_prices(region)
    resources = list(resources)
    lines: list[Line] = []

    def hourly(item: str, count: float, price: float, note: str = "") -> None:
        if count:
            lines.append(
                Line(item, count, "hour x 730", price, round(count * price * hours, 2), note)
            )

    def monthly(item: str, count: float, unit: str, price: float, note: str = "") -> None:
        if count:
            lines.append(Line(item, count, unit, price, round(count * price, 2), note))

    def instance_price(itype: str) -> float:
        try:
            return prices["instance_hourly"][itype]
        except KeyError:
            raise UnknownPrice(
                f"policy/cost/prices.yaml has no {region} price for instance type "
                f"{printable(itype)}"
            ) from None

    def of_type(typ: str) -> list[Resource]:
        return [r for r in resources if r.type == typ]

    specs = instance_types()

    def credit_note(itype: str, inputs: Mapping[str, Any]) -> str:
        """T types bill CPU above their baseline unless they run in `standard` credit mode."""
        standard = (inputs.get("creditSpecification") or {}).get("cpuCredits") == "standard"
        return UNLIMITED_NOTE if itype in specs and specs[itype].burstable and not standard else ""

    eip_instances = {
        r.inputs.get("instanceId") for r in of_type("aws:ec2/eipAssociation:EipAssociation")
    }
    public_subnets = {
        r.id for r in of_type("aws:ec2/subnet:Subnet") if r.inputs.get("mapPublicIpOnLaunch")
    }
    gb = 0.0

    share = prices["spot_share_of_on_demand"]
    spot_note = f"Spot assumed at {share:.0%} of on-demand; real Spot prices move"
    instances: dict[tuple[str, str, bool], list[Resource]] = {}
    for inst in of_type("aws:ec2/instance:Instance"):
        market = inst.inputs.get("instanceMarketOptions") or {}
        spot = market.get("marketType") == "spot"
        role = (inst.inputs.get("tags") or {}).get("platform:role")
        kind = "NAT instance" if role == "nat" else "servers"
        instances.setdefault((kind, inst.inputs["instanceType"], spot), []).append(inst)
        gb += inst.inputs.get("rootBlockDevice", {}).get("volumeSize", 8)
    for (kind, itype, spot), group in sorted(instances.items()):
        price = instance_price(itype)
        note = credit_note(itype, group[0].inputs)
        if spot:
            note = "; ".join(filter(None, [spot_note, note]))
            hourly(f"EC2 {itype} ({kind}, Spot)", len(group), round(price * share, 5), note)
        else:
            hourly(f"EC2 {itype} ({kind})", len(group), price, note)
        auto_ips = sum(
            1
            for i in group
            if (
                i.inputs.get("subnetId") in public_subnets
                or i.inputs.get("associatePublicIpAddress")
            )
            and i.id not in eip_instances
        )
        where = "the NAT instance" if kind == "NAT instance" else "servers in public subnets"
        hourly(f"public IPv4 of {where}", auto_ips, prices["public_ipv4_hourly"])

    templates = {r.id: r for r in of_type("aws:ec2/launchTemplate:LaunchTemplate")}
    for asg in of_type("aws:autoscaling/group:Group"):
        policy = asg.inputs["mixedInstancesPolicy"]
        spec = policy["launchTemplate"]["launchTemplateSpecification"]
        template = templates.get(spec["launchTemplateId"])
        itype = policy["launchTemplate"]["overrides"][0]["instanceType"]
        desired = asg.inputs.get("desiredCapacity", asg.inputs["minSize"])
        dist = policy["instancesDistribution"]
        base = min(desired, dist.get("onDemandBaseCapacity", 0))
        on_demand = base + math.ceil(
            (desired - base) * dist.get("onDemandPercentageAboveBaseCapacity", 100) / 100
        )
        spot = desired - on_demand
        price = instance_price(itype)
        credits = credit_note(itype, template.inputs if template is not None else {})
        hourly(
            f"EC2 {itype} (agents, on-demand)",
            on_demand,
            price,
            "; ".join(filter(None, [f"desired {desired} of max {asg.inputs['maxSize']}", credits])),
        )
        hourly(
            f"EC2 {itype} (agents, Spot)",
            spot,
            round(price * share, 5),
            "; ".join(filter(None, [spot_note, credits])),
        )
        if template is not None:
            gb += desired * sum(
                m["ebs"]["volumeSize"] for m in template.inputs.get("blockDeviceMappings", [])
            )
        if public_subnets & set(asg.inputs.get("vpcZoneIdentifiers", [])):
            hourly("public IPv4 of agents in public subnets", desired, prices["public_ipv4_hourly"])

    monthly("EBS gp3 root volumes", gb, "GB-month", prices["ebs_gp3_gb_month"])
    hourly(
        "Elastic IPs (public IPv4)", len(of_type("aws:ec2/eip:Eip")), prices["public_ipv4_hourly"]
    )
    hourly(
        "NAT gateways",
        len(of_type("aws:ec2/natGateway:NatGateway")),
        prices["nat_gateway_hourly"],
        "plus data processed per GB, not estimated",
    )
    nlbs = [
        r
        for r in of_type("aws:lb/loadBalancer:LoadBalancer")
        if r.inputs.get("loadBalancerType") == "network"
    ]
    hourly("network load balancers", len(nlbs), prices["nlb_hourly"])
    hourly(
        "NLB capacity units",
        len(nlbs) * prices["nlb_lcus_assumed"],
        prices["nlb_lcu_hourly"],
        f"{prices['nlb_lcus_assumed']} NLCU assumed per load balancer",
    )
    monthly("KMS keys", len(of_type("aws:kms/key:Key")), "key-month", prices["kms_key_month"])
    monthly(
        "Secrets Manager secrets",
        len(of_type("aws:secretsmanager/secret:Secret")),
        "secret-month",
        prices["secrets_manager_secret_month"],
    )
    log_buckets = {
        r.inputs.get("targetBucket") for r in of_type("aws:s3/bucketLogging:BucketLogging")
    }
    buckets = of_type("aws:s3/bucket:Bucket")
    archives = sum(1 for b in buckets if b.id in log_buckets)
    monthly(
        "S3 snapshot storage",
        (len(buckets) - archives) * prices["snapshot_gb_assumed"],
        "GB-month",
        prices["s3_standard_gb_month"],
        f"{prices['snapshot_gb_assumed']} GB of snapshots assumed",
    )
    flow_gb = prices["flow_log_gb_month_assumed"]
    monthly(
        "VPC flow logs delivered to S3",
        len(of_type("aws:ec2/flowLog:FlowLog")) * flow_gb,
        "GB",
        prices["flow_logs_s3_gb"],
        f"{flow_gb} GB of flow records a month assumed per VPC",
    )
    monthly(
        "S3 log storage",
        archives * prices["log_archive_gb_assumed"],
        "GB-month",
        prices["s3_standard_gb_month"],
        f"{prices['log_archive_gb_assumed']} GB kept assumed (90 days of logs)",
    )
    monthly(
        "Route53 hosted zones",
        len(of_type("aws:route53/zone:Zone")),
        "zone-month",
        prices["route53_zone_month"],
    )
    repos = len(of_type("aws:ecr/repository:Repository"))
    monthly(
        "ECR image storage",
        repos * prices["ecr_gb_per_repository_assumed"],
        "GB-month",
        prices["ecr_gb_month"],
        f"{prices['ecr_gb_per_repository_assumed']} GB per repository assumed",
    )
    return Estimate(region, date, lines)


def eks_comparison(est: Estimate, azs: int) -> Estimate:
    """The same node sizes as EKS workers: an EKS control plane and one NAT gateway per AZ instead
    of K3s servers' control-plane role, NLB and Elastic IP front door kept equal."""
    prices, date, hours = load_prices(est.region)
    lines = [line for line in est.lines if "NAT" not in line.item]
    lines.append(
        Line(
            "EKS control plane",
            1,
            "hour x 730",
            prices["eks_control_plane_hourly"],
            round(prices["eks_control_plane_hourly"] * hours, 2),
        )
    )
    lines.append(
        Line(
            "NAT gateways (one per AZ, EKS private nodes)",
            azs,
            "hour x 730",
            prices["nat_gateway_hourly"],
            round(azs * prices["nat_gateway_hourly"] * hours, 2),
        )
    )
    return Estimate(est.region, date, lines)
