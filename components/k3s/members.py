"""Server replacement that keeps etcd quorum.

A server keeps its fixed private address across a replacement, so its etcd peer URL is the same,
and K3s's join adds the new member by that URL: etcd refuses ("Peer URLs already exists") while
the old member is still listed, and a cluster that lists a dead member has lost one vote. So each
server of a multi-server cluster has an `EtcdMember` gate:

- its delete (which the engine runs before the server it depends on is deleted, because a new
  instance ID forces the gate's replacement) removes the old member through K3s's own member
  controller: the node is annotated `etcd.k3s.cattle.io/remove`, K3s removes the member and
  records `etcd.k3s.cattle.io/removed-node-name`, then the Node is deleted;
- its create or update waits until a node at the server's address is Ready and etcd answers
  healthy through the API server;
- the next server depends on it, so servers are created, replaced and updated one at a time.

The plain functions are exercised against a real etcd cluster in tests/ops/test_server_rollout.py.
"""

from __future__ import annotations

import json
import ssl
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pulumi
import pulumi.dynamic as dyn

from components.dynamic import is_unknown
from components.k3s.readiness import (
    CREDENTIAL_KEYS,
    ApiCredentials,
    poll,
    progress_log,
    ssl_context,
)

REMOVE_ANNOTATION = "etcd.k3s.cattle.io/remove"
REMOVED_ANNOTATION = "etcd.k3s.cattle.io/removed-node-name"
ETCD_ROLE_LABEL = "node-role.kubernetes.io/etcd"
JOIN_TIMEOUT_SECONDS = 1200
"""A replacement boots, downloads K3s, joins etcd and becomes Ready within this."""
REMOVE_TIMEOUT_SECONDS = 300
INTERVAL_SECONDS = 5
QUORUM_KEPT_FROM = 3
"""Members are removed only from clusters of at least this many etcd nodes: below it there is
no quorum left to keep (and the last member of a destroyed cluster cannot leave)."""


class MemberTimeout(RuntimeError):
    """A member did not join or leave in time."""


class KubeApi:
    """The few API calls the gate makes, with the admin client certificate."""

    def __init__(self, creds: ApiCredentials, scratch: Path):
        self.base = creds.api_url.rstrip("/")
        self.ctx: ssl.SSLContext = ssl_context(creds, scratch)

    def call(self, method: str, path: str, body: dict | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method)
        if body is not None:
            request.add_header("Content-Type", "application/merge-patch+json")
        with urllib.request.urlopen(request, context=self.ctx, timeout=10) as response:
            text = response.read().decode()
        return json.loads(text) if text.startswith("{") else text

    def nodes_at(self, address: str) -> list[dict]:
        return [
            node
            for node in self.call("GET", "/api/v1/nodes").get("items", [])
            if any(
                a.get("type") == "InternalIP" and a.get("address") == address
                for a in node.get("status", {}).get("addresses", [])
            )
        ]

    def etcd_nodes(self) -> list[dict]:
        items = self.call("GET", "/api/v1/nodes").get("items", [])
        return [n for n in items if n["metadata"].get("labels", {}).get(ETCD_ROLE_LABEL)]


def _ready(node: dict) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in node.get("status", {}).get("conditions", [])
    )


def _poll(
    what: str,
    check: Callable[[], str | None],
    timeout: float,
    interval: float,
    progress: Callable[[str], None],
) -> float:
    """What a member gate waits for, bounded and reported like the readiness gate's wait."""
    return poll(
        check,
        timeout=timeout,
        interval=interval,
        progress=progress,
        waiting=what,
        done=f"{what}: done",
        timed_out=lambda _attempts, last: MemberTimeout(
            f"{what}: not done within {timeout:.0f}s; last: {last}"
        ),
    )


def wait_for_member(
    api: KubeApi,
    address: str,
    timeout: float = JOIN_TIMEOUT_SECONDS,
    interval: float = INTERVAL_SECONDS,
    progress: Callable[[str], None] = lambda m: print(m, file=sys.stderr),
) -> float:
    """Until a Ready node at `address` exists and the API server's etcd check passes."""

    def check() -> str | None:
        nodes = [n for n in api.nodes_at(address) if REMOVED_ANNOTATION not in _annotations(n)]
        if not any(_ready(n) for n in nodes):
            return f"no Ready node at {address} yet"
        answer = api.call("GET", "/readyz/etcd")
        return None if answer.strip() == "ok" else f"/readyz/etcd: {answer.strip()}"

    return _poll(f"server {address} joined", check, timeout, interval, progress)


def _annotations(node: dict) -> dict:
    return node["metadata"].get("annotations") or {}


def remove_member(
    api: KubeApi,
    address: str,
    timeout: float = REMOVE_TIMEOUT_SECONDS,
    interval: float = INTERVAL_SECONDS,
    progress: Callable[[str], None] = lambda m: print(m, file=sys.stderr),
) -> list[str]:
    """Remove the etcd member of every node at `address`, then the nodes; returns their names."""
    etcd = api.etcd_nodes()
    if len(etcd) < QUORUM_KEPT_FROM:
        progress(f"{len(etcd)} etcd node(s): no quorum to keep, the member of {address} stays")
        return []
    removed = []
    for node in api.nodes_at(address):
        name = node["metadata"]["name"]
        path = f"/api/v1/nodes/{name}"
        if REMOVED_ANNOTATION not in _annotations(node):
            api.call("PATCH", path, {"metadata": {"annotations": {REMOVE_ANNOTATION: "true"}}})

            def check(path: str = path) -> str | None:
                node = api.call("GET", path)
                return None if REMOVED_ANNOTATION in _annotations(node) else "member still listed"

            _poll(f"etcd member of {name} removed", check, timeout, interval, progress)
        api.call("DELETE", path)
        removed.append(name)
    return removed


def _api_call(props: dict[str, Any], action: Callable[[KubeApi], Any]) -> Any:
    creds = ApiCredentials(*(props[k] for k in CREDENTIAL_KEYS))
    with tempfile.TemporaryDirectory(prefix="etcd-member-") as scratch:
        return action(KubeApi(creds, Path(scratch)))


class _EtcdMemberProvider(dyn.ResourceProvider):
    def _join(self, props: dict[str, Any]) -> dict[str, Any]:
        _api_call(
            props,
            lambda api: wait_for_member(
                api, props["address"], float(props["timeout_seconds"]), progress=progress_log
            ),
        )
        return props

    def create(self, props: dict[str, Any]) -> dyn.CreateResult:
        return dyn.CreateResult(id_=props["address"], outs=self._join(props))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dyn.DiffResult:
        # A new instance at the address is a new member: the old one must leave first.
        replaced = is_unknown(news.get("instance_id")) or news.get("instance_id") != olds.get(
            "instance_id"
        )
        changed = replaced or any(
            is_unknown(news.get(k)) or news.get(k) != olds.get(k)
            for k in ("spec", *CREDENTIAL_KEYS)
        )
        return dyn.DiffResult(
            changes=changed,
            replaces=["instance_id"] if replaced else [],
            delete_before_replace=True,
        )

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> dyn.UpdateResult:
        return dyn.UpdateResult(outs=self._join(news))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        _api_call(props, lambda api: remove_member(api, props["address"], progress=progress_log))


class EtcdMember(dyn.Resource):
    """One server's membership in etcd: joined on create, removed before its instance goes."""

    def __init__(
        self,
        name: str,
        *,
        address: pulumi.Input[str],
        instance_id: pulumi.Input[str],
        spec: pulumi.Input[str],
        credentials: dict[str, pulumi.Input[str]],
        timeout_seconds: int = JOIN_TIMEOUT_SECONDS,
        opts: pulumi.ResourceOptions | None = None,
    ):
        """`spec` summarises what an in-place update changes (instance type): after one, the
        gate waits for the server to be back before the next server is touched."""
        super().__init__(
            _EtcdMemberProvider(),
            name,
            {
                "address": address,
                "instance_id": instance_id,
                "spec": spec,
                "timeout_seconds": timeout_seconds,
                **{k: credentials[k] for k in CREDENTIAL_KEYS},
            },
            pulumi.ResourceOptions.merge(
                opts, pulumi.ResourceOptions(additional_secret_outputs=["client_key_pem"])
            ),
        )
