"""Kubernetes workload rules: availability, scheduling, resources and images.

Pod-bearing kinds are Deployment, StatefulSet, DaemonSet, ReplicaSet, ReplicationController, Job,
CronJob and Pod. Exemptions, and why:

* replica count and node spreading apply to replicated controllers only: a DaemonSet already runs
  one pod per node, a Job/CronJob runs to completion, a bare Pod has no replica count;
* readiness probes and graceful shutdown apply to pods a Service selects (same namespace, selector
  a subset of the pod labels): they are about traffic, and Jobs/CronJobs never take part in it;
* resources, the limit/request ratio and image tags apply to every pod, init containers included
  (they are scheduled with their own requests); image tags also cover ephemeral containers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any, Literal

from pydantic import Field

from policy.model import UNKNOWN, Inventory, Item, as_dict, as_int, as_list, dig
from policy.quantity import parse_quantity
from policy.rules.base import Enforcement, Params, Rule, Scope, StackInfo, Violation

POD_KINDS = frozenset(
    {
        "Deployment",
        "StatefulSet",
        "DaemonSet",
        "ReplicaSet",
        "ReplicationController",
        "Job",
        "CronJob",
        "Pod",
    }
)
REPLICATED_KINDS = ("Deployment", "StatefulSet", "ReplicaSet", "ReplicationController")
BATCH_KINDS = frozenset({"Job", "CronJob"})
SERVED_KINDS = tuple(sorted(POD_KINDS - BATCH_KINDS))

HOSTNAME_KEY = "kubernetes.io/hostname"
ZONE_KEYS = ("topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/zone")
DEFAULT_GRACE_SECONDS = 30
"""terminationGracePeriodSeconds when the pod spec leaves it unset."""


# --- pod templates -------------------------------------------------------------------------------


def pod_template(item: Item) -> Mapping[str, Any]:
    """The pod (metadata + spec) an object runs: itself for a Pod, its template otherwise."""
    if item.kind == "Pod":
        return item.props
    if item.kind == "CronJob":
        return as_dict(dig(item.props, "spec", "jobTemplate", "spec", "template"))
    return as_dict(dig(item.props, "spec", "template"))


def pod_spec(item: Item) -> Mapping[str, Any]:
    return as_dict(pod_template(item).get("spec"))


def pod_labels(item: Item) -> Mapping[str, Any]:
    return as_dict(dig(pod_template(item), "metadata", "labels"))


def containers(
    spec: Mapping[str, Any], *, init: bool, ephemeral: bool = False
) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(display name, container) for the pod's containers, optionally init and ephemeral ones."""
    fields = ["containers"]
    if init:
        fields.append("initContainers")
    if ephemeral:
        fields.append("ephemeralContainers")
    for field in fields:
        for index, container in enumerate(as_list(spec.get(field))):
            if isinstance(container, Mapping):
                name = container.get("name")
                label = name if isinstance(name, str) else f"{field}[{index}]"
                yield (label if field == "containers" else f"{label} ({field})"), container


def selector_matches(selector: Any, labels: Mapping[str, Any]) -> bool:
    """Whether a LabelSelector selects `labels`; an empty selector selects everything."""
    if not isinstance(selector, Mapping):
        return False
    for key, value in as_dict(selector.get("matchLabels")).items():
        if labels.get(key) != value:
            return False
    for expression in as_list(selector.get("matchExpressions")):
        key = dig(expression, "key")
        values = as_list(dig(expression, "values"))
        operator = dig(expression, "operator")
        if operator == "In":
            matched = key in labels and labels[key] in values
        elif operator == "NotIn":
            matched = key not in labels or labels[key] not in values
        elif operator == "Exists":
            matched = key in labels
        elif operator == "DoesNotExist":
            matched = key not in labels
        else:
            matched = False
        if not matched:
            return False
    return True


class SelectorIndex:
    """Selectors by namespace and one label pair they require.

    A pod can only be selected by a selector whose pair it carries, so matching every workload
    against every Service or PodDisruptionBudget stays linear in the number of objects.
    """

    def __init__(self) -> None:
        self._by_pair: dict[tuple[str, str, str], list[tuple[int, Item, Any]]] = {}
        self._unkeyed: dict[str, list[tuple[int, Item, Any]]] = {}
        self._count = 0

    def add(self, item: Item, required: Mapping[str, Any], selector: Any) -> None:
        entry = (self._count, item, selector)
        self._count += 1
        pairs = sorted(
            (key, value)
            for key, value in required.items()
            if isinstance(key, str) and isinstance(value, str)
        )
        if pairs:
            self._by_pair.setdefault((item.namespace, *pairs[0]), []).append(entry)
        else:
            self._unkeyed.setdefault(item.namespace, []).append(entry)

    def candidates(self, namespace: str, labels: Mapping[str, Any]) -> list[tuple[Item, Any]]:
        """(item, selector) that may select `labels`, in the order they were added."""
        found = list(self._unkeyed.get(namespace, ()))
        for key, value in labels.items():
            if isinstance(key, str) and isinstance(value, str):
                found += self._by_pair.get((namespace, key, value), ())
        return [(item, selector) for _, item, selector in sorted(found, key=lambda e: e[0])]


def _service_index(inv: Inventory) -> SelectorIndex:
    index = SelectorIndex()
    for service in inv.of("Service"):
        selector = as_dict(dig(service.props, "spec", "selector"))
        # A Service without a selector routes to hand-managed endpoints, not to pods.
        if selector and dig(service.props, "spec", "type") != "ExternalName":
            index.add(service, selector, selector)
    return index


def serving_services(inv: Inventory, item: Item) -> list[Item]:
    """Services in the item's namespace whose selector picks the item's pods."""
    labels = pod_labels(item)
    if not labels:
        return []
    return [
        service
        for service, selector in inv.memo("services", _service_index).candidates(
            item.namespace, labels
        )
        if all(labels.get(key) == value for key, value in selector.items())
    ]


def _hpa_targets(inv: Inventory) -> dict[tuple[str, str, str], Item]:
    index: dict[tuple[str, str, str], Item] = {}
    for hpa in inv.of("HorizontalPodAutoscaler"):
        target = as_dict(dig(hpa.props, "spec", "scaleTargetRef"))
        kind, name = target.get("kind"), target.get("name")
        if isinstance(kind, str) and isinstance(name, str):
            index[(hpa.namespace, kind, name)] = hpa
    return index


def replica_range(inv: Inventory, item: Item) -> tuple[int | None, int | None, Item | None]:
    """(fewest, most, autoscaler) replicas the controller runs; None where it can't be known.

    An autoscaler targeting the controller owns its replica count, so its minReplicas and
    maxReplicas win over spec.replicas (which then only matters until the first scaling).
    """
    hpa = inv.memo("hpa-targets", _hpa_targets).get(
        (item.namespace, item.kind or "", item.object_name)
    )
    if hpa is not None:
        low = dig(hpa.props, "spec", "minReplicas")
        high = dig(hpa.props, "spec", "maxReplicas")
        return (1 if low is None else as_int(low)), as_int(high), hpa
    declared = dig(item.props, "spec", "replicas")
    count = 1 if declared is None else as_int(declared)
    return count, count, None


# --- replicas-min-2 ------------------------------------------------------------------------------


class ReplicaParams(Params):
    min_replicas: int = Field(2, ge=1)
    """Fewest replicas (or HPA minReplicas) a replicated controller may run."""
    max_replicas: int | None = Field(None, ge=1)
    """Optional ceiling on spec.replicas / HPA maxReplicas (a cost guardrail); off by default."""


def check_replicas(inv: Inventory, p: ReplicaParams, _: StackInfo) -> Iterator[Violation]:
    for item in inv.of(*REPLICATED_KINDS):
        low, high, hpa = replica_range(inv, item)
        if hpa is not None:
            what = f"HorizontalPodAutoscaler {hpa.object_name} minReplicas"
        elif dig(item.props, "spec", "replicas") is None:
            what = "spec.replicas (unset, so 1)"
        else:
            what = "spec.replicas"
        if low is not None and low < p.min_replicas:
            yield Violation(
                item,
                f"{what} is {low}; fewer than {p.min_replicas} replicas means an outage whenever "
                "the pod restarts or its node is drained",
            )
        if p.max_replicas is not None and high is not None and high > p.max_replicas:
            limit = "maxReplicas" if hpa is not None else "spec.replicas"
            yield Violation(item, f"{limit} is {high}, above the ceiling of {p.max_replicas}")


# --- spread-across-nodes -------------------------------------------------------------------------


class SpreadParams(Params):
    topology_keys: list[str] = Field(
        default_factory=lambda: [HOSTNAME_KEY, *ZONE_KEYS], min_length=1
    )
    """Topology keys that separate replicas onto different nodes (zones imply nodes)."""


def _namespace_in_scope(term: Mapping[str, Any], namespace: str) -> bool:
    namespaces = as_list(term.get("namespaces"))
    # An unset object namespace is decided at deploy time; a namespaceSelector needs namespace
    # labels the set does not carry. Neither can prove the term misses the pod's own namespace.
    return not namespaces or not namespace or namespace in namespaces or "namespaceSelector" in term


def _anti_affinity_spreads(
    spec: Mapping[str, Any], labels: Mapping[str, Any], namespace: str, keys: set[str]
) -> bool:
    anti = as_dict(dig(spec, "affinity", "podAntiAffinity"))
    terms = as_list(anti.get("requiredDuringSchedulingIgnoredDuringExecution")) + [
        dig(weighted, "podAffinityTerm")
        for weighted in as_list(anti.get("preferredDuringSchedulingIgnoredDuringExecution"))
    ]
    return any(
        isinstance(term, Mapping)
        and term.get("topologyKey") in keys
        and selector_matches(term.get("labelSelector"), labels)
        and _namespace_in_scope(term, namespace)
        for term in terms
    )


def _topology_spread(spec: Mapping[str, Any], labels: Mapping[str, Any], keys: set[str]) -> bool:
    return any(
        isinstance(constraint, Mapping)
        and constraint.get("topologyKey") in keys
        and (as_int(constraint.get("maxSkew")) or 0) >= 1
        and constraint.get("whenUnsatisfiable") in ("DoNotSchedule", "ScheduleAnyway")
        and selector_matches(constraint.get("labelSelector"), labels)
        for constraint in as_list(spec.get("topologySpreadConstraints"))
    )


def check_spread(inv: Inventory, p: SpreadParams, _: StackInfo) -> Iterator[Violation]:
    keys = set(p.topology_keys)
    for item in inv.of(*REPLICATED_KINDS):
        _, most, _ = replica_range(inv, item)
        if most is None or most < 2:
            continue
        spec, labels = pod_spec(item), pod_labels(item)
        if _anti_affinity_spreads(spec, labels, item.namespace, keys) or _topology_spread(
            spec, labels, keys
        ):
            continue
        yield Violation(
            item,
            f"{most} replicas but no podAntiAffinity term or topologySpreadConstraint on "
            f"{' / '.join(p.topology_keys)} selects its own pods, so the scheduler may place "
            "every replica on one node",
        )


# --- readiness-probe-if-serviced, graceful-shutdown ----------------------------------------------


def _served(inv: Inventory) -> list[tuple[Item, list[Item]]]:
    """Workloads a Service routes to, with those Services (shared by two rules)."""

    def build(inv: Inventory) -> list[tuple[Item, list[Item]]]:
        pairs = [(item, serving_services(inv, item)) for item in inv.of(*SERVED_KINDS)]
        return [(item, services) for item, services in pairs if services]

    return inv.memo("served", build)


def _names(items: list[Item]) -> str:
    return ", ".join(item.object_name for item in items)


def check_readiness(inv: Inventory, _: Params, __: StackInfo) -> Iterator[Violation]:
    handlers = ("httpGet", "tcpSocket", "exec", "grpc")
    for item, services in _served(inv):
        missing = [
            name
            for name, container in containers(pod_spec(item), init=False)
            if (probe := container.get("readinessProbe")) is not UNKNOWN
            and not (isinstance(probe, Mapping) and any(h in probe for h in handlers))
        ]
        if missing:
            yield Violation(
                item,
                f"Service {_names(services)} routes to these pods, but container "
                f"{', '.join(missing)} has no readinessProbe: new or restarting pods get traffic "
                "before they can serve it",
            )


class ShutdownParams(Params):
    grace_margin_seconds: int = Field(5, ge=0)
    """Seconds terminationGracePeriodSeconds must leave after the longest preStop delay."""


_SLEEP_RE = re.compile(r"(?:^|[\s;&|(])sleep\s+(\d+(?:\.\d+)?)s?\b")


def prestop_delay(hook: Mapping[str, Any]) -> int:
    """Seconds a preStop hook holds the container: native sleep or an exec'd `sleep N`."""
    seconds = as_int(dig(hook, "sleep", "seconds"))
    if seconds is not None:
        return seconds
    command = as_list(dig(hook, "exec", "command"))
    match = _SLEEP_RE.search(" ".join(str(part) for part in command))
    return math.ceil(float(match[1])) if match else 0


def check_graceful_shutdown(inv: Inventory, p: ShutdownParams, _: StackInfo) -> Iterator[Violation]:
    for item, services in _served(inv):
        spec = pod_spec(item)
        grace_value = spec.get("terminationGracePeriodSeconds")
        if grace_value is UNKNOWN:
            continue
        grace = DEFAULT_GRACE_SECONDS if grace_value is None else as_int(grace_value)
        without_hook, delays = [], []
        for name, container in containers(spec, init=False):
            hook = dig(container, "lifecycle", "preStop")
            if hook is UNKNOWN:
                continue
            if isinstance(hook, Mapping) and hook:
                delays.append(prestop_delay(hook))
            else:
                without_hook.append(name)
        if without_hook:
            yield Violation(
                item,
                f"container {', '.join(without_hook)} has no lifecycle.preStop hook: it gets "
                f"SIGTERM while Service {_names(services)} may still route new requests to it",
            )
        longest = max(delays, default=0)
        if delays and grace is not None and grace < longest + p.grace_margin_seconds:
            unset = " (unset, so 30)" if grace_value is None else ""
            yield Violation(
                item,
                f"terminationGracePeriodSeconds {grace}{unset} does not cover the {longest}s "
                f"preStop delay plus {p.grace_margin_seconds}s to finish in-flight requests; the "
                "kubelet kills the container mid-drain",
            )


# --- resources-requests-limits, limit-request-ratio ----------------------------------------------


ResourceName = Literal["cpu", "memory"]


class ResourceParams(Params):
    requests: list[ResourceName] = Field(default_factory=lambda: ["cpu", "memory"])
    """Resources every container must request."""
    limits: list[ResourceName] = Field(default_factory=lambda: ["cpu", "memory"])
    """Resources every container must limit."""


def check_resources(item: Item, p: ResourceParams, _: StackInfo) -> Iterator[Violation]:
    for name, container in containers(pod_spec(item), init=True):
        resources = container.get("resources")
        if resources is UNKNOWN:
            continue
        missing = [
            f"{section}.{resource}"
            for section, wanted in (("requests", p.requests), ("limits", p.limits))
            for resource in wanted
            if dig(resources, section, resource) in (None, "")
        ]
        if missing:
            yield Violation(
                item,
                f"container {name} sets no {', '.join(missing)}: without requests the scheduler "
                "overcommits the node, without limits one pod can starve its neighbours",
            )


class RatioParams(Params):
    max_ratio: float = Field(5, gt=0)
    """Mandatory ceiling on limit / request for cpu and memory."""
    cpu_max_ratio: float | None = Field(None, gt=0)
    """A separate mandatory ceiling for cpu (maxRatio applies when unset)."""
    advisory_ratio: float | None = Field(2, gt=0)
    """Above this ratio (and within the ceiling) the violation is advisory; null turns it off."""


def check_ratio(item: Item, p: RatioParams, _: StackInfo) -> Iterator[Violation]:
    for name, container in containers(pod_spec(item), init=True):
        for resource in ("cpu", "memory"):
            request = dig(container, "resources", "requests", resource)
            limit = dig(container, "resources", "limits", resource)
            # A missing side is resources-requests-limits' finding; a limit alone also sets the
            # request to the same value (ratio 1).
            if request is None or limit is None or UNKNOWN in (request, limit):
                continue
            try:
                ratio = _ratio(parse_quantity(limit), parse_quantity(request))
            except ValueError as exc:
                yield Violation(item, f"container {name}: {exc}")
                continue
            ceiling = p.max_ratio
            if resource == "cpu" and p.cpu_max_ratio is not None:
                ceiling = p.cpu_max_ratio
            text = (
                f"container {name}: {resource} limit {limit} is {float(ratio):.3g}x its request "
                f"{request}"
            )
            if ratio > Decimal(str(ceiling)):
                yield Violation(
                    item,
                    f"{text}, above the {ceiling:g}x ceiling: the node is overcommitted by the "
                    "difference and evicts or throttles pods under load",
                )
            elif p.advisory_ratio is not None and ratio > Decimal(str(p.advisory_ratio)):
                yield Violation(
                    item,
                    f"{text}, above {p.advisory_ratio:g}x: consider a request closer to real use",
                    advisory=True,
                )


def _ratio(limit: Decimal, request: Decimal) -> Decimal:
    if request <= 0:
        return Decimal("Infinity") if limit > 0 else Decimal(1)
    return limit / request


# --- unique-ingress-host -------------------------------------------------------------------------


def _ingress_backend(namespace: str, backend: Any) -> str | None:
    service = as_dict(dig(backend, "service"))
    if service:
        port = as_dict(service.get("port"))
        return f"{namespace}/{service.get('name')}:{port.get('number', port.get('name'))}"
    resource = as_dict(dig(backend, "resource"))
    if resource:
        return f"{namespace}/{resource.get('kind')}/{resource.get('name')}"
    legacy = dig(backend, "serviceName")
    if isinstance(legacy, str):
        return f"{namespace}/{legacy}:{dig(backend, 'servicePort')}"
    return None


def _route_key(host: Any, path: Mapping[str, Any]) -> tuple[str, str, str]:
    # Hostnames are case-insensitive and may end with the root dot; no host means every host.
    host_key = host.lower().rstrip(".") if isinstance(host, str) and host else "*"
    path_type = path.get("pathType") or "ImplementationSpecific"
    value = path.get("path") if isinstance(path.get("path"), str) else "/"
    if path_type == "Prefix" and value != "/":
        # Prefix matching is element-wise, so /app and /app/ are the same route.
        value = value.rstrip("/") or "/"
    return host_key, path_type, value


def check_unique_ingress(inv: Inventory, _: Params, __: StackInfo) -> Iterator[Violation]:
    routes: dict[tuple[str, str, str], list[tuple[Item, str]]] = {}
    for ingress in inv.of("Ingress"):
        for rule in as_list(dig(ingress.props, "spec", "rules")):
            for path in as_list(dig(rule, "http", "paths")):
                if not isinstance(path, Mapping):
                    continue
                backend = _ingress_backend(ingress.namespace, path.get("backend"))
                if backend is not None:
                    key = _route_key(dig(rule, "host"), path)
                    routes.setdefault(key, []).append((ingress, backend))
    for (host, path_type, path), entries in routes.items():
        if len({backend for _, backend in entries}) < 2:
            continue
        reported: set[int] = set()
        for ingress, backend in entries:
            # Two documents with one namespace/name are one Ingress written twice, not a clash.
            clash = next(
                (
                    (other, other_backend)
                    for other, other_backend in entries
                    if other_backend != backend
                    and (
                        other is ingress
                        or (other.namespace, other.object_name)
                        != (ingress.namespace, ingress.object_name)
                    )
                ),
                None,
            )
            if clash is None or id(ingress) in reported:
                continue
            reported.add(id(ingress))
            other, other_backend = clash
            where = "this Ingress" if other is ingress else f"Ingress {other.ref}"
            yield Violation(
                ingress,
                f"host {host} {path_type} path {path} routes to {backend} here but to "
                f"{other_backend} in {where}: the controller picks one of them arbitrarily",
            )


# --- no-latest-tag -------------------------------------------------------------------------------


class ImageParams(Params):
    disallowed_tags: list[str] = Field(default_factory=lambda: ["latest"])
    exempt_images: list[str] = Field(default_factory=list)
    """Images allowed anyway: exact references, or prefixes ending in `*`."""


def image_tag_problem(image: str, disallowed: list[str]) -> str | None:
    """Why an image reference is mutable, or None when it pins a tag or a digest."""
    if "@" in image:
        return None
    # A colon before the last slash belongs to a registry port (registry:5000/app), not a tag.
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return "has no tag, so it pulls :latest"
    tag = last.rsplit(":", 1)[1]
    return f"uses the mutable tag :{tag}" if tag in disallowed else None


def _exempt_image(image: str, exemptions: list[str]) -> bool:
    return any(
        image.startswith(rule[:-1]) if rule.endswith("*") else image == rule for rule in exemptions
    )


def check_image_tags(item: Item, p: ImageParams, _: StackInfo) -> Iterator[Violation]:
    for name, container in containers(pod_spec(item), init=True, ephemeral=True):
        image = container.get("image")
        if not isinstance(image, str) or _exempt_image(image, p.exempt_images):
            continue
        problem = image_tag_problem(image, p.disallowed_tags)
        if problem:
            yield Violation(
                item,
                f"container {name} image {image} {problem}: nodes may run different code and a "
                "rollback does not restore the previous build",
            )


# --- dns-conntrack-mitigation --------------------------------------------------------------------


class DnsParams(Params):
    options: list[str] = Field(
        default_factory=lambda: ["single-request-reopen", "single-request", "use-vc"],
        min_length=1,
    )
    """resolv.conf options accepted as a mitigation (any one of them)."""


_NODE_LOCAL_DNS = ("node-local-dns", "nodelocaldns", "k8s-dns-node-cache")


def has_node_local_dns(inv: Inventory) -> bool:
    """NodeLocal DNSCache answers on each node, so lookups never cross the conntrack race."""
    for daemonset in inv.of("DaemonSet"):
        images = [str(c.get("image", "")) for _, c in containers(pod_spec(daemonset), init=False)]
        if any(
            marker in text
            for text in [daemonset.object_name, *images]
            for marker in _NODE_LOCAL_DNS
        ):
            return True
    return any(
        isinstance(chart := release.props.get("chart"), str)
        and any(marker in chart for marker in _NODE_LOCAL_DNS)
        for release in inv.of("kubernetes:helm.sh/v3:Release", "kubernetes:helm.sh/v4:Chart")
    )


def check_dns(inv: Inventory, p: DnsParams, _: StackInfo) -> Iterator[Violation]:
    if has_node_local_dns(inv):
        return
    accepted = set(p.options)
    for item in inv.of(*sorted(POD_KINDS)):
        spec = pod_spec(item)
        policy = spec.get("dnsPolicy") or "ClusterFirst"
        # These pods read the node's resolv.conf and never query through the DNS Service's NAT.
        if policy == "Default" or (spec.get("hostNetwork") is True and policy == "ClusterFirst"):
            continue
        options = dig(spec, "dnsConfig", "options")
        if options is UNKNOWN or any(dig(o, "name") in accepted for o in as_list(options)):
            continue
        yield Violation(
            item,
            f"no dnsConfig option {' / '.join(p.options)} and no NodeLocal DNSCache in the set: "
            "parallel A/AAAA lookups through the DNS Service can hit the conntrack insert race "
            "and stall for 5 s",
        )


# --- pdb-for-multi-replica -----------------------------------------------------------------------


def _pdb_index(inv: Inventory) -> SelectorIndex:
    index = SelectorIndex()
    for pdb in inv.of("PodDisruptionBudget"):
        selector = dig(pdb.props, "spec", "selector")
        index.add(pdb, as_dict(dig(selector, "matchLabels")), selector)
    return index


def _blocks_every_eviction(pdb: Item, replicas: int | None) -> bool:
    spec = as_dict(pdb.props.get("spec"))
    max_unavailable = spec.get("maxUnavailable")
    if max_unavailable is not None:
        return max_unavailable in (0, "0%") or as_int(max_unavailable) == 0
    min_available = spec.get("minAvailable")
    if min_available == "100%":
        return True
    count = as_int(min_available)
    return count is not None and replicas is not None and count >= replicas


def check_pdb(inv: Inventory, _: Params, __: StackInfo) -> Iterator[Violation]:
    pdbs = inv.memo("pdbs", _pdb_index)
    for item in inv.of(*REPLICATED_KINDS):
        fewest, most, _ = replica_range(inv, item)
        if most is None or most < 2:
            continue
        labels = pod_labels(item)
        matching = [
            pdb
            for pdb, selector in pdbs.candidates(item.namespace, labels)
            if selector_matches(selector, labels)
        ]
        if not matching:
            yield Violation(
                item,
                f"{most} replicas and no PodDisruptionBudget selects its pods: a node drain or "
                "cluster upgrade may evict all of them at once",
            )
        for pdb in matching:
            if _blocks_every_eviction(pdb, fewest):
                yield Violation(
                    item,
                    f"PodDisruptionBudget {pdb.object_name} allows no voluntary eviction, so "
                    "node drains and upgrades hang until someone deletes it",
                )


RULES = (
    Rule(
        id="replicas-min-2",
        description="Replicated workloads run at least 2 replicas (HPA minReplicas when scaled).",
        enforcement=Enforcement.MANDATORY,
        remediation="Set spec.replicas: 2 or more, or minReplicas: 2 on the "
        "HorizontalPodAutoscaler that targets the workload.",
        check=check_replicas,
        scope=Scope.STACK,
        params=ReplicaParams,
    ),
    Rule(
        id="spread-across-nodes",
        description="Workloads with 2+ replicas spread them over nodes (hostname anti-affinity "
        "or topologySpreadConstraints).",
        enforcement=Enforcement.MANDATORY,
        remediation="Add a topologySpreadConstraint (topologyKey kubernetes.io/hostname, "
        "maxSkew 1, labelSelector matching the pod labels) or a preferred podAntiAffinity term "
        "on the hostname.",
        check=check_spread,
        scope=Scope.STACK,
        params=SpreadParams,
    ),
    Rule(
        id="readiness-probe-if-serviced",
        description="Every container of pods selected by a Service has a readiness probe.",
        enforcement=Enforcement.MANDATORY,
        remediation="Add a readinessProbe (httpGet on a health endpoint, or tcpSocket on the "
        "serving port) to every container of the pod.",
        check=check_readiness,
        scope=Scope.STACK,
    ),
    Rule(
        id="graceful-shutdown",
        description="Pods selected by a Service have a preStop hook, and "
        "terminationGracePeriodSeconds covers its delay.",
        enforcement=Enforcement.MANDATORY,
        remediation="Add lifecycle.preStop.sleep.seconds: 5 (or an exec `sleep 5`) to each "
        "container and keep terminationGracePeriodSeconds at least the sleep plus the shutdown "
        "margin.",
        check=check_graceful_shutdown,
        scope=Scope.STACK,
        params=ShutdownParams,
    ),
    Rule(
        id="resources-requests-limits",
        description="Every container sets CPU and memory requests and limits.",
        enforcement=Enforcement.MANDATORY,
        remediation="Set resources.requests and resources.limits for cpu and memory on every "
        "container, init containers included.",
        check=check_resources,
        targets=POD_KINDS,
        params=ResourceParams,
    ),
    Rule(
        id="limit-request-ratio",
        description="Container limits stay within a bounded multiple of their requests "
        "(mandatory above 5x, advisory above 2x).",
        enforcement=Enforcement.MANDATORY,
        remediation="Raise the request towards real usage or lower the limit so that "
        "limit / request stays within the ratio.",
        check=check_ratio,
        targets=POD_KINDS,
        params=RatioParams,
        advisory_tier=True,
    ),
    Rule(
        id="unique-ingress-host",
        description="No two Ingress rules route the same host and path to different backends.",
        enforcement=Enforcement.MANDATORY,
        remediation="Give each backend its own host or path, or merge the rules into one Ingress.",
        check=check_unique_ingress,
        scope=Scope.STACK,
    ),
    Rule(
        id="no-latest-tag",
        description="Container images carry an explicit tag other than latest, or a digest.",
        enforcement=Enforcement.MANDATORY,
        remediation="Pin the image to a release tag (app:1.4.2) or a digest (app@sha256:...).",
        check=check_image_tags,
        targets=POD_KINDS,
        params=ImageParams,
    ),
    Rule(
        id="dns-conntrack-mitigation",
        description="Pods mitigate the DNS conntrack race (dnsConfig option, or NodeLocal "
        "DNSCache in the set).",
        enforcement=Enforcement.ADVISORY,
        remediation="Add spec.dnsConfig.options: [{name: single-request-reopen}] to the pod "
        "template (glibc images) or deploy NodeLocal DNSCache.",
        check=check_dns,
        scope=Scope.STACK,
        params=DnsParams,
    ),
    Rule(
        id="pdb-for-multi-replica",
        description="Workloads with 2+ replicas have a PodDisruptionBudget that allows evictions.",
        enforcement=Enforcement.ADVISORY,
        remediation="Add a PodDisruptionBudget with maxUnavailable: 1 whose selector matches the "
        "pod labels.",
        check=check_pdb,
        scope=Scope.STACK,
    ),
)
