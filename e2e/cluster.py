"""A real Kubernetes control plane with fake nodes, inside a network namespace of its own.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok run as processes of the
harness. The namespace has only a loopback interface, so nothing it does can leave it; the API
server's address, the Service range and the Pod range are all local to it (the Pod and Service
ranges are routed to loopback as a whole), which is what lets the API server's pod proxy reach a
real OpenBao server listening in the namespace as if it were the `vault-0` pod.

What differs from K3s, and why:
- Nodes are kwok's: pods become Running and Ready, Jobs complete, but no container runs.
- The dynamic admission webhooks (cert-manager's, External Secrets') would be served by those
  pods, so the API server runs without the ValidatingAdmissionWebhook and MutatingAdmissionWebhook
  plugins. The webhook configurations are still created and stored; the objects they would check
  are still validated against their CRD schemas.
- Storage: a few PersistentVolumes of a default `local-path` class stand in for K3s's
  local-path provisioner.
- Traefik's CRDs, which K3s installs with its bundled Traefik, are applied from the pinned copies.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

NODE_IP = "10.77.0.1"
"""The API server's advertised address (and the fake nodes' InternalIP)."""
SERVICE_CIDR = "10.96.0.0/16"
POD_CIDR = "10.244.0.0/16"
API_PORT = 6443
CONTEXT = "e2e"
NODES = ("e2e-server", "e2e-agent-1", "e2e-agent-2")
"""One server and two agents, like `k3d cluster create platform --agents 2` in the local stack."""
PERSISTENT_VOLUMES = 8
STORAGE_CLASS = "local-path"
STARTUP_TIMEOUT = 60.0


class ClusterError(RuntimeError):
    """The cluster could not be brought up; the message says what was waited for."""


def wait_for(
    what: str,
    ready: Callable[[], bool],
    timeout: float,
    log: Callable[[str], None],
    interval: float = 0.2,
) -> None:
    """Poll `ready` every `interval` s until it holds, saying every 5 s what it awaits; fail after
    `timeout`."""
    started = time.monotonic()
    last_note = started
    while not ready():
        now = time.monotonic()
        if now - started > timeout:
            raise ClusterError(f"timed out after {timeout:.0f} s waiting for {what}")
        if now - last_note >= 5:
            log(f"  still waiting for {what} ({now - started:.0f} s)")
            last_note = now
        time.sleep(interval)


def port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


# --- certificates -------------------------------------------------------------------------------


@dataclass
class Pki:
    """The cluster CA and every certificate the control plane uses, as files in `folder`."""

    folder: Path
    ca_key: ec.EllipticCurvePrivateKey = field(init=False)
    ca_cert: x509.Certificate = field(init=False)

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "e2e-cluster-ca")])
        self.ca_cert = (
            self._builder(name, name, self.ca_key)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.ca_key, hashes.SHA256())
        )
        self._write("ca", self.ca_key, self.ca_cert)
        # The service-account token signing key: the API server verifies with the public half.
        sa_key = ec.generate_private_key(ec.SECP256R1())
        self._write_key("sa", sa_key)
        (self.folder / "sa.pub").write_bytes(
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    @staticmethod
    def _builder(subject: x509.Name, issuer: x509.Name, key) -> x509.CertificateBuilder:
        now = dt.datetime.now(dt.UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
        )

    def _write(self, stem: str, key, cert: x509.Certificate) -> None:
        self._write_key(stem, key)
        (self.folder / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    def _write_key(self, stem: str, key) -> None:
        (self.folder / f"{stem}.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )

    def issue(
        self,
        stem: str,
        common_name: str,
        *,
        organization: str | None = None,
        dns: tuple[str, ...] = (),
        ips: tuple[str, ...] = (),
        client: bool = False,
    ) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
        if organization:
            attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
        builder = self._builder(x509.Name(attrs), self.ca_cert.subject, key)
        if dns or ips:
            names = [x509.DNSName(d) for d in dns] + [
                x509.IPAddress(ipaddress.ip_address(i)) for i in ips
            ]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        usage = (
            x509.ExtendedKeyUsageOID.CLIENT_AUTH if client else x509.ExtendedKeyUsageOID.SERVER_AUTH
        )
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        self._write(stem, key, builder.sign(self.ca_key, hashes.SHA256()))

    def path(self, name: str) -> str:
        return str(self.folder / name)


def kubeconfig(pki: Pki, client: str, server: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": CONTEXT,
                "cluster": {"server": server, "certificate-authority": pki.path("ca.crt")},
            }
        ],
        "users": [
            {
                "name": client,
                "user": {
                    "client-certificate": pki.path(f"{client}.crt"),
                    "client-key": pki.path(f"{client}.key"),
                },
            }
        ],
        "contexts": [{"name": CONTEXT, "context": {"cluster": CONTEXT, "user": client}}],
        "current-context": CONTEXT,
    }


# --- processes ----------------------------------------------------------------------------------


@dataclass
class Cluster:
    """The control plane's processes and files under `workdir`; `start()` then `stop()`."""

    workdir: Path
    tools: Path
    """The folder `make e2e-tools` built (etcd, kube-apiserver, kube-controller-manager, ...)."""
    crd_files: list[Path]
    log: Callable[[str], None] = print
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def admin_kubeconfig(self) -> Path:
        return self.workdir / "admin.kubeconfig"

    @property
    def api_url(self) -> str:
        return f"https://{NODE_IP}:{API_PORT}"

    def _spawn(self, name: str, command: list[str], **flags: object) -> None:
        """Start `command` with `--flag-name=value` for each keyword (True: a bare flag)."""
        args = [*command]
        for key, value in flags.items():
            flag = "--" + key.replace("_", "-")
            if value is True:
                args.append(flag)
            else:
                args.append(f"{flag}={str(value).lower() if value is False else value}")
        logfile = (self.workdir / "logs" / f"{name}.log").open("wb")
        self.processes[name] = subprocess.Popen(
            args, stdout=logfile, stderr=subprocess.STDOUT, start_new_session=True
        )

    def _alive(self, name: str) -> None:
        proc = self.processes[name]
        if proc.poll() is not None:
            tail = (self.workdir / "logs" / f"{name}.log").read_text(errors="replace")
            last = "\n".join(tail.strip().splitlines()[-5:])
            raise ClusterError(f"{name} exited with code {proc.returncode}:\n{last}")

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        proc = subprocess.run(
            ["kubectl", "--kubeconfig", str(self.admin_kubeconfig), *args],
            input=stdin,
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise ClusterError(f"kubectl {' '.join(args)}: {proc.stderr.strip()}")
        return proc.stdout

    def start(self) -> None:
        started = time.monotonic()
        for port in (2379, 2380, API_PORT, 10257, 10259):
            if not port_free("0.0.0.0", port):
                raise ClusterError(f"port {port} is already in use in the e2e network namespace")
        shutil.rmtree(self.workdir, ignore_errors=True)
        (self.workdir / "logs").mkdir(parents=True)
        pki = Pki(self.workdir / "pki")
        pki.issue(
            "apiserver",
            "kube-apiserver",
            dns=(
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
                "localhost",
            ),
            ips=("127.0.0.1", NODE_IP, str(ipaddress.ip_network(SERVICE_CIDR)[1])),
        )
        for stem, cn, org in (
            ("admin", "e2e-admin", "system:masters"),
            ("controller-manager", "system:kube-controller-manager", None),
            ("scheduler", "system:kube-scheduler", None),
        ):
            pki.issue(stem, cn, organization=org, client=True)
        for client in ("admin", "controller-manager", "scheduler"):
            path = self.workdir / f"{client}.kubeconfig"
            path.write_text(yaml.safe_dump(kubeconfig(pki, client, self.api_url)))
            path.chmod(0o600)

        self.log("starting etcd")
        self._spawn(
            "etcd",
            [str(self.tools / "etcd")],
            data_dir=self.workdir / "etcd",
            listen_client_urls="http://127.0.0.1:2379",
            advertise_client_urls="http://127.0.0.1:2379",
            listen_peer_urls="http://127.0.0.1:2380",
            initial_advertise_peer_urls="http://127.0.0.1:2380",
            initial_cluster="default=http://127.0.0.1:2380",
            unsafe_no_fsync=True,
        )
        self.log("starting kube-apiserver")
        self._spawn(
            "kube-apiserver",
            [str(self.tools / "kube-apiserver")],
            etcd_servers="http://127.0.0.1:2379",
            bind_address="0.0.0.0",
            secure_port=API_PORT,
            advertise_address=NODE_IP,
            service_cluster_ip_range=SERVICE_CIDR,
            tls_cert_file=pki.path("apiserver.crt"),
            tls_private_key_file=pki.path("apiserver.key"),
            client_ca_file=pki.path("ca.crt"),
            service_account_key_file=pki.path("sa.pub"),
            service_account_signing_key_file=pki.path("sa.key"),
            service_account_issuer="https://kubernetes.default.svc.cluster.local",
            authorization_mode="Node,RBAC",
            disable_admission_plugins="ValidatingAdmissionWebhook,MutatingAdmissionWebhook",
            allow_privileged=True,
            profiling=False,
        )

        def api_ready() -> bool:
            self._alive("etcd")
            self._alive("kube-apiserver")
            return self._readyz()

        wait_for("the API server's /readyz", api_ready, STARTUP_TIMEOUT, self.log)
        self.log("starting kube-controller-manager, kube-scheduler and kwok")
        self._spawn(
            "kube-controller-manager",
            [str(self.tools / "kube-controller-manager")],
            kubeconfig=self.workdir / "controller-manager.kubeconfig",
            bind_address="127.0.0.1",
            service_account_private_key_file=pki.path("sa.key"),
            root_ca_file=pki.path("ca.crt"),
            cluster_signing_cert_file=pki.path("ca.crt"),
            cluster_signing_key_file=pki.path("ca.key"),
            use_service_account_credentials=True,
            allocate_node_cidrs=True,
            cluster_cidr=POD_CIDR,
            service_cluster_ip_range=SERVICE_CIDR,
            leader_elect=False,
        )
        self._spawn(
            "kube-scheduler",
            [str(self.tools / "kube-scheduler")],
            kubeconfig=self.workdir / "scheduler.kubeconfig",
            bind_address="127.0.0.1",
            leader_elect=False,
        )
        self._spawn(
            "kwok",
            [str(self.tools / "kwok")],
            kubeconfig=self.admin_kubeconfig,
            config=self.tools / "kwok-stages.yaml",
            manage_all_nodes=True,
            node_lease_duration_seconds=40,
            cidr=POD_CIDR,
            node_ip=NODE_IP,
            server_address="",
        )
        self._seed(pki)

        def nodes_ready() -> bool:
            for name in self.processes:
                self._alive(name)
            nodes = json.loads(self.kubectl("get", "nodes", "-o", "json"))["items"]
            ready = [
                n
                for n in nodes
                if any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in n["status"].get("conditions", [])
                )
            ]
            return len(ready) == len(NODES)

        wait_for(f"{len(NODES)} Ready nodes", nodes_ready, STARTUP_TIMEOUT, self.log)

        def settled() -> bool:
            # What the controllers add to every namespace of a fresh cluster is part of it.
            accounts = json.loads(self.kubectl("get", "serviceaccounts", "-A", "-o", "json"))
            maps = json.loads(self.kubectl("get", "configmaps", "-A", "-o", "json"))
            have = {(i["metadata"]["namespace"], i["metadata"]["name"]) for i in accounts["items"]}
            have |= {(i["metadata"]["namespace"], i["metadata"]["name"]) for i in maps["items"]}
            return all(
                (ns, name) in have
                for ns in ("default", "kube-system", "kube-public", "kube-node-lease")
                for name in ("default", "kube-root-ca.crt")
            )

        wait_for(
            "the default ServiceAccounts and root CA ConfigMaps", settled, STARTUP_TIMEOUT, self.log
        )
        self.log(f"cluster up in {time.monotonic() - started:.1f} s")

    def _readyz(self) -> bool:
        context = ssl.create_default_context(cafile=str(self.workdir / "pki" / "ca.crt"))
        context.load_cert_chain(
            self.workdir / "pki" / "admin.crt", self.workdir / "pki" / "admin.key"
        )
        try:
            with urllib.request.urlopen(f"{self.api_url}/readyz", context=context, timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def _seed(self, pki: Pki) -> None:
        """What a fresh K3s/k3d cluster already has: nodes, storage, Traefik's CRDs."""
        objects: list[dict] = []
        for i, name in enumerate(NODES):
            labels = {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "topology.kubernetes.io/zone": f"e2e-{'abc'[i]}",
            }
            if i == 0:
                labels["node-role.kubernetes.io/control-plane"] = "true"
            objects.append(
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {
                        "name": name,
                        "labels": labels,
                        "annotations": {"kwok.x-k8s.io/node": "fake"},
                    },
                }
            )
        # K3s's local-path class: binding waits for the pod's node, so the scheduler binds a
        # volume while it places the pod (an unbound claim would leave the pod unschedulable).
        objects.append(
            {
                "apiVersion": "storage.k8s.io/v1",
                "kind": "StorageClass",
                "metadata": {
                    "name": STORAGE_CLASS,
                    "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
                },
                "provisioner": "kubernetes.io/no-provisioner",
                "volumeBindingMode": "WaitForFirstConsumer",
                "reclaimPolicy": "Retain",
            }
        )
        for i in range(PERSISTENT_VOLUMES):
            objects.append(
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolume",
                    "metadata": {"name": f"e2e-pv-{i}"},
                    "spec": {
                        "capacity": {"storage": "50Gi"},
                        "accessModes": ["ReadWriteOnce"],
                        "persistentVolumeReclaimPolicy": "Retain",
                        "storageClassName": STORAGE_CLASS,
                        "hostPath": {"path": f"/var/lib/e2e/pv-{i}"},
                    },
                }
            )
        manifest = "\n---\n".join(yaml.safe_dump(o) for o in objects)
        crds = "\n---\n".join(p.read_text() for p in self.crd_files)
        self.kubectl("apply", "--server-side", "-f", "-", stdin=manifest + "\n---\n" + crds)

    def stop(self) -> None:
        for proc in reversed(list(self.processes.values())):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in self.processes.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.processes.clear()
