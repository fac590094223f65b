"""Pod Security "restricted", checked where a namespace in the set enforces it.

The API server refuses, at admission, any pod that breaks the profile its namespace enforces
(label `pod-security.kubernetes.io/enforce`). A Deployment is still admitted and only its pods are
refused, so the failure shows up as a ReplicaSet event after the sync, not as a sync error. These
rules judge the pod templates before that: the checks of the "restricted" profile
(kubernetes.io/docs/concepts/security/pod-security-standards), plus what the platform asks of
every app although the profile does not: a read-only root filesystem, and egress that cannot
reach the instance metadata service.

Namespaces come from the set: Argo CD creates each app's namespace with the label (the rendered
apps carry that Namespace), and a Namespace object in the YAML counts the same way. Pods in other
namespaces are out of scope: the profile is what the namespace enforces, not what a rule assumes.

The metadata and server-taint rules judge every app namespace instead: each Namespace of the set
that is not the platform's (`platformNamespaces`), whatever its labels say.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from collections.abc import Collection, Iterator, Mapping
from typing import Any

from policy.model import UNKNOWN, Inventory, Item, as_dict, as_list, dig
from policy.rules.base import Enforcement, Params, Rule, Scope, StackInfo, Violation
from policy.rules.kubernetes import POD_KINDS, containers, pod_labels, pod_spec, selector_matches

ENFORCE_LABEL = "pod-security.kubernetes.io/enforce"
RESTRICTED = "restricted"
ALLOWED_VOLUMES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)
SECCOMP_TYPES = ("RuntimeDefault", "Localhost")
METADATA_ADDRESS = ipaddress.ip_address("169.254.169.254")
"""EC2's instance metadata service: with hop limit 2 a pod reaches it and the node role's keys."""
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)


PLATFORM_NAMESPACES = (
    "default",
    "kube-system",
    "kube-public",
    "kube-node-lease",
    "argocd",
    "cert-manager",
    "external-secrets",
    "vault",
    "openbao",
    "cattle-*",
    "fleet-*",
)
"""Namespaces the platform owns (patterns); every other namespace is an app's."""
SERVER_TAINT_KEYS = ("CriticalAddonsOnly",)
"""The taint K3s servers carry when agents run the apps (`CriticalAddonsOnly=true:NoExecute`)."""


class AppNamespaceParams(Params):
    platform_namespaces: list[str] = list(PLATFORM_NAMESPACES)
    """Namespaces (fnmatch patterns) the platform owns; the rule judges every other one."""


class ServerTaintParams(AppNamespaceParams):
    taint_keys: list[str] = list(SERVER_TAINT_KEYS)
    """Taint keys only platform pods may tolerate."""


def app_namespaces(inv: Inventory, platform: list[str]) -> dict[str, Item]:
    """The set's Namespaces that are not the platform's, by name."""
    found = {}
    for ns in inv.of("Namespace"):
        name = dig(ns.props, "metadata", "name")
        if isinstance(name, str) and not any(fnmatch.fnmatchcase(name, p) for p in platform):
            found.setdefault(name, ns)
    return found


def _pods_in(inv: Inventory, namespaces: Collection[str]) -> Iterator[Item]:
    if namespaces:
        yield from (item for item in inv.of(*POD_KINDS) if item.namespace in namespaces)


def restricted_namespaces(inv: Inventory) -> set[str]:
    return {
        dig(ns.props, "metadata", "name")
        for ns in inv.of("Namespace")
        if dig(ns.props, "metadata", "labels", ENFORCE_LABEL) == RESTRICTED
    }


def _restricted_pods(inv: Inventory) -> Iterator[Item]:
    yield from _pods_in(inv, restricted_namespaces(inv))


def _pod_problems(spec: Mapping[str, Any]) -> Iterator[str]:
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field) is True:
            yield f"{field}: true (set it false or remove it)"
    for volume in as_list(spec.get("volumes")):
        kinds = set(as_dict(volume)) - {"name"}
        if kinds and not kinds & ALLOWED_VOLUMES:
            yield f"volume {dig(volume, 'name')} is {', '.join(sorted(kinds))} (use emptyDir, a "
            "ConfigMap, a Secret or a PersistentVolumeClaim)"
    for sysctl in as_list(dig(spec, "securityContext", "sysctls")):
        if dig(sysctl, "name") not in SAFE_SYSCTLS:
            yield f"sysctl {dig(sysctl, 'name')} is not in the safe set"


def _container_problems(
    name: str, container: Mapping[str, Any], pod: Mapping[str, Any]
) -> Iterator[str]:
    context = as_dict(container.get("securityContext"))

    def effective(field: str) -> Any:
        value = context.get(field)
        return pod.get(field) if value is None else value

    if context.get("privileged") is True:
        yield f"container {name}: privileged: true"
    if context.get("allowPrivilegeEscalation") is not False:
        yield f"container {name}: securityContext.allowPrivilegeEscalation must be false"
    capabilities = as_dict(context.get("capabilities"))
    if "ALL" not in as_list(capabilities.get("drop")):
        yield f"container {name}: securityContext.capabilities.drop must list ALL"
    added = [c for c in as_list(capabilities.get("add")) if c != "NET_BIND_SERVICE"]
    if added:
        yield f"container {name}: capabilities.add may hold only NET_BIND_SERVICE, not {added}"
    if effective("runAsNonRoot") is not True:
        yield f"container {name}: runAsNonRoot: true is set neither on it nor on the pod"
    if effective("runAsUser") == 0:
        yield f"container {name}: runAsUser: 0 runs as root"
    seccomp = dig(context, "seccompProfile", "type") or dig(pod, "seccompProfile", "type")
    if seccomp not in SECCOMP_TYPES:
        yield (
            f"container {name}: seccompProfile.type must be RuntimeDefault or Localhost "
            "(on the pod or the container)"
        )
    if context.get("procMount") not in (None, "Default"):
        yield f"container {name}: procMount must be Default"
    for port in as_list(container.get("ports")):
        if dig(port, "hostPort"):
            yield f"container {name}: hostPort {dig(port, 'hostPort')}"


def check_pod_security(inv: Inventory, _: Params, __: StackInfo) -> Iterator[Violation]:
    for item in _restricted_pods(inv):
        spec = pod_spec(item)
        if spec is UNKNOWN:
            continue
        pod = as_dict(spec.get("securityContext"))
        problems = list(_pod_problems(spec))
        for name, container in containers(spec, init=True, ephemeral=True):
            problems += _container_problems(name, container, pod)
        if problems:
            yield Violation(
                item,
                f"namespace {item.namespace} enforces Pod Security restricted and would refuse "
                f"its pods: {'; '.join(problems)}",
            )


def check_read_only_root(inv: Inventory, _: Params, __: StackInfo) -> Iterator[Violation]:
    for item in _restricted_pods(inv):
        for name, container in containers(pod_spec(item), init=True):
            if dig(container, "securityContext", "readOnlyRootFilesystem") is not True:
                yield Violation(
                    item,
                    f"container {name} can write to its root filesystem: a compromised process "
                    "can replace the binaries it runs",
                )


def _reaches_metadata(rule: Mapping[str, Any]) -> str | None:
    """Why an egress rule lets pods reach the metadata address, or None."""
    peers = as_list(rule.get("to"))
    if not peers:
        return "an egress rule without `to` allows every address"
    for peer in peers:
        block = as_dict(dig(peer, "ipBlock"))
        try:
            cidr = ipaddress.ip_network(str(block.get("cidr")), strict=False)
        except ValueError:
            continue
        if METADATA_ADDRESS not in cidr:
            continue
        excepted = []
        for text in as_list(block.get("except")):
            try:
                excepted.append(ipaddress.ip_network(str(text), strict=False))
            except ValueError:
                continue
        if not any(METADATA_ADDRESS in net for net in excepted):
            return f"ipBlock {cidr} does not except 169.254.169.254/32"
    return None


def _selects_all(policy: Item) -> bool:
    selector = as_dict(dig(policy.props, "spec", "podSelector"))
    return not selector.get("matchLabels") and not selector.get("matchExpressions")


def check_metadata_blocked(
    inv: Inventory, p: AppNamespaceParams, _: StackInfo
) -> Iterator[Violation]:
    egress = [
        p
        for p in inv.of("NetworkPolicy")
        if "Egress" in as_list(dig(p.props, "spec", "policyTypes"))
    ]
    namespaces = app_namespaces(inv, p.platform_namespaces)
    for name, namespace in namespaces.items():
        if not any(pol.namespace == name and _selects_all(pol) for pol in egress):
            yield Violation(
                namespace,
                f"namespace {name} has no egress NetworkPolicy for all its pods (podSelector: "
                "{}), so a pod the app adds later can fetch the node role's AWS credentials "
                "from 169.254.169.254",
            )
    for item in _pods_in(inv, namespaces):
        labels = pod_labels(item)
        selecting = [
            p
            for p in egress
            if p.namespace == item.namespace
            and selector_matches(dig(p.props, "spec", "podSelector"), labels)
        ]
        if not selecting:
            yield Violation(
                item,
                "no NetworkPolicy limits its egress, so its pods can fetch the node role's AWS "
                "credentials from 169.254.169.254",
            )
        for policy in selecting:
            for rule in as_list(dig(policy.props, "spec", "egress")):
                why = _reaches_metadata(as_dict(rule))
                if why:
                    yield Violation(
                        item,
                        f"NetworkPolicy {policy.object_name}: {why}, so its pods can fetch the "
                        "node role's AWS credentials",
                    )


def _tolerated(toleration: Mapping[str, Any], keys: list[str]) -> str | None:
    """The server taint key this toleration matches, or None."""
    key = toleration.get("key")
    if toleration.get("effect") not in (None, "", "NoExecute"):
        return None
    if not key and toleration.get("operator") == "Exists":
        return "every taint (operator Exists without a key)"
    return key if key in keys else None


def check_server_taint(inv: Inventory, p: ServerTaintParams, _: StackInfo) -> Iterator[Violation]:
    for item in _pods_in(inv, app_namespaces(inv, p.platform_namespaces)):
        spec = pod_spec(item)
        if spec is UNKNOWN:
            continue
        for toleration in as_list(spec.get("tolerations")):
            taint = _tolerated(as_dict(toleration), p.taint_keys)
            if taint:
                yield Violation(
                    item,
                    f"its pods tolerate {taint}, the taint that keeps app pods off the servers, "
                    "whose instance role holds the snapshot bucket and the KMS key",
                )


RULES = (
    Rule(
        id="pod-security-restricted",
        description="Pods in namespaces that enforce Pod Security restricted meet the profile.",
        enforcement=Enforcement.MANDATORY,
        remediation="Set on the pod securityContext runAsNonRoot: true and seccompProfile: "
        "{type: RuntimeDefault}, and on every container allowPrivilegeEscalation: false and "
        "capabilities: {drop: [ALL]}; no host namespaces, host ports, hostPath volumes or "
        "privileged containers.",
        check=check_pod_security,
        scope=Scope.STACK,
    ),
    Rule(
        id="read-only-root-filesystem",
        description="Containers in restricted namespaces (the apps') keep a read-only root "
        "filesystem.",
        enforcement=Enforcement.MANDATORY,
        remediation="Set securityContext.readOnlyRootFilesystem: true on every container and "
        "mount an emptyDir where the app writes (/tmp, caches).",
        check=check_read_only_root,
        scope=Scope.STACK,
    ),
    Rule(
        id="metadata-address-blocked",
        description="App namespaces have an egress NetworkPolicy for all their pods, and no "
        "egress rule there reaches the instance metadata address.",
        enforcement=Enforcement.MANDATORY,
        remediation="Deploy apps through the root ApplicationSet, which adds the platform's "
        "egress baseline (argocd-apps/projects/app-namespace); give ipBlocks that cover "
        "169.254.169.254 except: [169.254.169.254/32].",
        check=check_metadata_blocked,
        scope=Scope.STACK,
        params=AppNamespaceParams,
    ),
    Rule(
        id="apps-off-servers",
        description="Pods in app namespaces do not tolerate the K3s servers' taint.",
        enforcement=Enforcement.MANDATORY,
        remediation="Remove the toleration of CriticalAddonsOnly (and any toleration with "
        "operator Exists and no key); apps run on the agents.",
        check=check_server_taint,
        scope=Scope.STACK,
        params=ServerTaintParams,
    ),
)
