"""Whether the platform fits the stack's nodes: `build/synth/<stack>/capacity.json`.

From the objects the releases render (and the workloads the program creates itself), the K3s
add-ons and a stated reserve per node, it sums the requested CPU and memory of each node group
(`servers`, `agents`) against the group's allocatable resources (the instance type's, from the
catalogue in policy/cost/prices.yaml, times its guaranteed nodes: the servers, and the agents' Auto
Scaling minimum).

Where pods land:
* with agents (`platform:cluster.agents.min` >= 1) the servers carry the taint
  `CriticalAddonsOnly=true:NoExecute`: a pod that tolerates it and selects the control plane
  (Vault, cert-manager with DNS-01) runs on the servers, every other platform pod on the agents;
* without agents every pod runs on the servers;
* the K3s add-ons tolerate the taint and may land in either group, so each group must hold them.

A pod's request is the sum of its containers' requests, or its largest init container's when
that is larger (what the scheduler reserves). Jobs and CronJobs run for minutes and are left
out. Findings (the synth exits 1): a group whose memory headroom is under MIN_MEMORY_HEADROOM or
whose CPU is overcommitted, a workload no group may run, and a workload whose required
anti-affinity needs more nodes than its group has.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from components.cluster_access import CONTROL_PLANE_SELECTOR
from components.config import PlatformConfig
from policy.cost.catalogue import instance_types
from policy.engine import Finding
from policy.quantity import parse_quantity
from policy.rules import Enforcement

RULE = "platform-capacity"
REMEDIATION = (
    "Choose larger instance types or more nodes in platform:cluster (or lower the requests in "
    "components/platform/sizing.py), then run the synth again."
)
MIN_MEMORY_HEADROOM = Decimal("0.20")
MIB = 1024 * 1024


@dataclass(frozen=True)
class Amount:
    """CPU in millicores, memory in MiB."""

    cpu: int = 0
    memory: int = 0

    def __add__(self, other: Amount) -> Amount:
        return Amount(self.cpu + other.cpu, self.memory + other.memory)

    def __mul__(self, count: int) -> Amount:
        return Amount(self.cpu * count, self.memory * count)

    def quantities(self) -> dict[str, str]:
        memory = f"{self.memory // 1024}Gi" if self.memory % 1024 == 0 else f"{self.memory}Mi"
        return {"cpu": f"{self.cpu}m", "memory": memory}


SERVER_RESERVE = Amount(500, 1536)
"""Per server: the OS, containerd, the kubelet and the K3s server with embedded etcd (K3s asks
2 GiB for a server; the rest of that is the add-ons below)."""
AGENT_RESERVE = Amount(100, 512)
"""Per agent: the OS, containerd and the K3s agent."""
EVICTION_RESERVE = Amount(0, 100)
"""The kubelet's default hard eviction threshold, memory.available < 100Mi."""
K3S_ADDONS: dict[str, tuple[int, Amount]] = {
    "coredns": (1, Amount(100, 70)),
    "metrics-server": (1, Amount(100, 70)),
}
"""name -> (replicas, requests per pod) as K3s's packaged manifests declare them. The other
add-ons (local-path-provisioner, Traefik and its svclb pods on every node) request nothing."""


def _amount(resources: Any) -> Amount:
    requests = (resources or {}).get("requests") or {}
    cpu = parse_quantity(str(requests.get("cpu", "0")))
    memory = parse_quantity(str(requests.get("memory", "0")))
    return Amount(int(cpu * 1000), int(memory / MIB))


def pod_request(spec: Mapping[str, Any]) -> Amount:
    """What the scheduler reserves for one pod."""
    running = Amount()
    for container in spec.get("containers") or []:
        running = running + _amount(container.get("resources"))
    for init in spec.get("initContainers") or []:
        need = _amount(init.get("resources"))
        running = Amount(max(running.cpu, need.cpu), max(running.memory, need.memory))
    return running


@dataclass
class Workload:
    ref: str
    replicas: int
    """Per node for a DaemonSet."""
    daemon: bool
    request: Amount
    servers_only: bool
    tolerates_servers: bool
    spread: bool
    """Required anti-affinity on the hostname against its own pods."""


def _labels_match(selector: Mapping[str, Any], labels: Mapping[str, Any]) -> bool:
    wanted = selector.get("matchLabels") or {}
    if any(labels.get(k) != v for k, v in wanted.items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        if expression.get("operator") == "In" and labels.get(expression["key"]) not in (
            expression.get("values") or []
        ):
            return False
    return bool(wanted or selector.get("matchExpressions"))


def workload(obj: Mapping[str, Any]) -> Workload | None:
    """The scheduling facts of a long-running workload; None for anything else."""
    kind = obj.get("kind")
    if kind not in ("Deployment", "StatefulSet", "DaemonSet"):
        return None
    template = obj["spec"]["template"]
    spec = template.get("spec") or {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    selector = spec.get("nodeSelector") or {}
    tolerations = spec.get("tolerations") or []
    anti = ((spec.get("affinity") or {}).get("podAntiAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or []
    replicas = obj["spec"].get("replicas", 1)
    return Workload(
        ref=f"{kind}/{obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}",
        replicas=1 if kind == "DaemonSet" else int(replicas),
        daemon=kind == "DaemonSet",
        request=pod_request(spec),
        servers_only=all(selector.get(k) == v for k, v in CONTROL_PLANE_SELECTOR.items()),
        tolerates_servers=any(
            t.get("key") == "CriticalAddonsOnly"
            or (not t.get("key") and t.get("operator") == "Exists")
            for t in tolerations
        ),
        spread=any(
            term.get("topologyKey") == "kubernetes.io/hostname"
            and _labels_match(term.get("labelSelector") or {}, labels)
            for term in anti
        ),
    )


@dataclass
class Group:
    name: str
    nodes: int
    instance_type: str
    allocatable: Amount
    requested: Amount = Amount()
    pods: list[str] = field(default_factory=list)

    def headroom(self) -> dict[str, float] | None:
        if not self.nodes:
            return None
        return {
            "cpu": _share(self.allocatable.cpu, self.requested.cpu),
            "memory": _share(self.allocatable.memory, self.requested.memory),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "nodes": self.nodes,
            "instanceType": self.instance_type,
            "allocatable": self.allocatable.quantities(),
            "requested": self.requested.quantities(),
            "headroom": self.headroom(),
        }


def _share(allocatable: int, requested: int) -> float:
    if allocatable <= 0:
        return 0.0
    return round((allocatable - requested) / allocatable, 2)


def _group(name: str, nodes: int, instance_type: str, reserve: Amount) -> Group:
    spec = instance_types()[instance_type]
    per_node = Amount(
        spec.vcpu * 1000 - reserve.cpu,
        int(spec.memory_gib * 1024) - reserve.memory - EVICTION_RESERVE.memory,
    )
    return Group(name, nodes, instance_type, per_node * nodes)


def _finding(message: str, where: str) -> Finding:
    return Finding(RULE, Enforcement.MANDATORY, message, object=where)


def check(
    config: PlatformConfig, objects: Iterable[Mapping[str, Any]]
) -> tuple[dict[str, Any], list[Finding]]:
    """(capacity.json, findings) for a stack and every object it creates."""
    cluster = config.cluster
    if cluster is None:
        return {
            "groups": {},
            "note": "an existing cluster (platform:target existing): its nodes are not the "
            "stack's, so no group is checked",
        }, []
    servers = _group("servers", cluster.servers, cluster.server_instance_type, SERVER_RESERVE)
    agents = _group("agents", cluster.agents.min, cluster.agents.instance_type, AGENT_RESERVE)
    dedicated = cluster.agents.min >= 1
    groups = [servers, agents]
    findings: list[Finding] = []
    for name, (count, request) in K3S_ADDONS.items():
        for group in groups:
            if group.nodes:
                group.requested = group.requested + request * count
                group.pods.append(f"k3s/{name}")
    for obj in objects:
        load = workload(obj)
        if load is None:
            continue
        on_servers = not dedicated or load.tolerates_servers
        if load.servers_only or not agents.nodes:
            target = servers if on_servers else None
        else:
            target = agents
        if target is None or not target.nodes:
            findings.append(
                _finding(
                    "no node group may run it: the servers are tainted and it does not "
                    "tolerate CriticalAddonsOnly, and there are no agents",
                    load.ref,
                )
            )
            continue
        pods = target.nodes if load.daemon else load.replicas
        if load.spread and pods > target.nodes:
            findings.append(
                _finding(
                    f"{pods} replicas must each have a node of their own (required "
                    f"anti-affinity) but the {target.name} group has {target.nodes}",
                    load.ref,
                )
            )
        target.requested = target.requested + load.request * pods
        target.pods.append(load.ref)
    for group in groups:
        headroom = group.headroom()
        if headroom is None:
            continue
        if Decimal(str(headroom["memory"])) < MIN_MEMORY_HEADROOM:
            findings.append(
                _finding(
                    f"{group.requested.quantities()['memory']} of memory requested of "
                    f"{group.allocatable.quantities()['memory']} allocatable on {group.nodes} "
                    f"{group.instance_type}: {headroom['memory']:.0%} headroom, under the "
                    f"{MIN_MEMORY_HEADROOM:.0%} a node loss or an upgrade surge needs",
                    f"capacity/{group.name}",
                )
            )
        if headroom["cpu"] < 0:
            findings.append(
                _finding(
                    f"{group.requested.quantities()['cpu']} of CPU requested of "
                    f"{group.allocatable.quantities()['cpu']} allocatable on {group.nodes} "
                    f"{group.instance_type}: pods would stay Pending",
                    f"capacity/{group.name}",
                )
            )
    return {"groups": {group.name: group.to_dict() for group in groups}}, findings
