"""Hostnames of the platform's services and, with a Route53 zone, their DNS records.

With `platform:dns.domain` a service is `<name>.<domain>`; without one it is
`<name>.<ingress ip>.sslip.io`, which sslip.io resolves to the ingress IP with no records at all.
Apps get `<app>.<apps domain>` (components.argocd.gitops), so the apps domain is the domain itself
or `<ingress ip>.sslip.io`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.config import DNS_NAME_RE

SERVICES = ("rancher", "argocd", "vault")
RECORD_TTL = 300


def apps_domain(domain: str | None, ingress_ip: str) -> str:
    """The domain apps and services live under: `domain`, or `<ip>.sslip.io` without one."""
    if domain:
        return domain
    try:
        ip = ipaddress.ip_address(ingress_ip)
    except ValueError:
        raise ValueError(f"ingress IP {ingress_ip!r} is not an IP address") from None
    # sslip.io spells IPv6 addresses with '-' for ':' (a ':' is not allowed in a DNS label).
    label = str(ip) if ip.version == 4 else str(ip).replace(":", "-")
    return f"{label}.sslip.io"


def hostname(service: str, domain: str | None, ingress_ip: str) -> str:
    """`<service>.<domain>`, or `<service>.<ip>.sslip.io` without a domain."""
    name = f"{service}.{apps_domain(domain, ingress_ip)}"
    if not DNS_NAME_RE.match(name):
        raise ValueError(f"{name!r} is not a DNS name: {service!r} must be a lower-case label")
    return name


def hostnames(
    domain: str | None, ingress_ip: pulumi.Input[str], services: Sequence[str] = SERVICES
) -> dict[str, pulumi.Output[str]]:
    """`hostname` of each service once the ingress IP is known."""
    ip = pulumi.Output.from_input(ingress_ip)
    return {s: ip.apply(lambda value, s=s: hostname(s, domain, value)) for s in services}


@dataclass(frozen=True)
class DnsRecordsArgs:
    """Records in a Route53 zone the stack owns (`platform:dns`)."""

    domain: str
    """The zone's domain name."""
    hosted_zone_id: str
    ingress_ips: pulumi.Input[Sequence[str]]
    """Where every record points: each of the ingress's addresses (one per AZ behind an NLB)."""
    services: Sequence[str] = SERVICES
    """One A record each; a wildcard A record covers the apps."""

    def __post_init__(self) -> None:
        if not DNS_NAME_RE.match(self.domain):
            raise ValueError(f"domain {self.domain!r} is not a DNS name")
        if not self.hosted_zone_id:
            raise ValueError("hosted_zone_id is required for DNS records")
        bad = [s for s in self.services if not DNS_NAME_RE.match(f"{s}.{self.domain}")]
        if bad:
            raise ValueError(f"services {bad} are not DNS labels")


class DnsRecords(pulumi.ComponentResource):
    """A records for the services and `*.<domain>` for the apps, on every ingress address."""

    fqdns: list[str]

    def __init__(
        self, name: str, args: DnsRecordsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("platform:dns:DnsRecords", name, None, opts)
        labels = [*args.services, "*"]
        self.fqdns = [f"{label}.{args.domain}" for label in labels]
        for label, fqdn in zip(labels, self.fqdns, strict=True):
            aws.route53.Record(
                f"{name}-{'wildcard' if label == '*' else label}",
                zone_id=args.hosted_zone_id,
                name=fqdn,
                type="A",
                ttl=RECORD_TTL,
                records=args.ingress_ips,
                # A record someone created by hand for the same name is taken over, not duplicated.
                allow_overwrite=True,
                opts=pulumi.ResourceOptions(parent=self),
            )
        self.register_outputs({"fqdns": self.fqdns})
