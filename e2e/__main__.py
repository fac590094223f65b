"""`make e2e`: the real Pulumi engine deploys the `local` stack onto a real control plane, offline.

    python -m e2e [--workdir build/e2e]

The harness builds nothing itself (`make e2e-tools` does) and needs root for its network
namespace. Outside the namespace it checks its inputs, creates the namespace, runs itself again
inside it (`--inside`), then removes every process and the namespace whatever happened. Inside, it
starts the cluster and an OpenBao server, and types the documented user commands into a copy of
the project; `build/e2e/report.json` records each step.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from components import versions
from e2e import cluster as control_plane
from e2e.tools import build
from policy import install as pack_venv
from synth import charts

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
STACK = "local"
PASSPHRASE = "e2e-only-passphrase"
GITOPS_TOKEN = "e2e-token-not-a-real-one"
VAULT_PORT = 8200
VAULT_NAMESPACE = "vault"
"""The local stack's secrets server: its namespace, service account and pod `vault-0`."""
STEP_TIMEOUT = 1200
NAMESPACE_GONE_TIMEOUT = 120.0
IGNORED_KINDS = {"Event", "Lease"}
"""Written by controllers all the time; not objects a stack creates."""


class E2eError(RuntimeError):
    """A precondition or step failed; the message is the one line the user sees."""


def say(message: str) -> None:
    print(f"e2e: {message}", flush=True)


# --- outside the namespace ----------------------------------------------------------------------


def chart_directory() -> Path:
    # The synth's chart cache (`make charts`) when it holds every pin, else the offline mirror.
    folder = Path(os.environ.get("E2E_CHARTS") or charts.chart_folder() or SHARED / "charts")
    if not folder.is_dir():
        raise E2eError(
            f"no chart directory at {folder}: set E2E_CHARTS to a folder of packaged charts"
        )
    return folder


def traefik_crds() -> list[Path]:
    folder = Path(os.environ.get("E2E_TRAEFIK_CRDS", SHARED / "crds" / "traefik"))
    files = sorted(folder.glob("traefik.io_*.yaml"))
    if not files:
        raise E2eError(
            f"no Traefik CRDs in {folder}: set E2E_TRAEFIK_CRDS to the folder of traefik.io_*.yaml"
        )
    return files


def netns(*args: str) -> None:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise E2eError(f"ip {' '.join(args)}: {proc.stderr.strip()}")


def create_namespace(name: str) -> None:
    netns("netns", "add", name)
    inside = ["-n", name]
    netns(*inside, "link", "set", "lo", "up")
    netns(*inside, "addr", "add", f"{control_plane.NODE_IP}/32", "dev", "lo")
    # Every address of these ranges is local to the namespace: the API server's dials to Service
    # and Pod addresses end on loopback and never leave.
    for cidr in (control_plane.SERVICE_CIDR, control_plane.POD_CIDR):
        netns(*inside, "route", "add", "local", cidr, "dev", "lo")


def remove_namespace(name: str) -> None:
    pids = subprocess.run(
        ["ip", "netns", "pids", name], capture_output=True, text=True
    ).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)
    subprocess.run(["ip", "netns", "delete", name], capture_output=True)


def outside(args: argparse.Namespace) -> int:
    tools = build.tools_dir()
    if not (tools / build.COMPLETE).exists():
        raise E2eError(f"the e2e tools are not built in {tools}: run `make e2e-tools` first")
    if os.geteuid() != 0 or shutil.which("ip") is None:
        raise E2eError("the e2e needs root and iproute2 (`ip`) for its network namespace")
    charts, crds = chart_directory(), traefik_crds()
    # Built out here: inside the namespace there is no package index.
    policy_venv = pack_venv.ensure(pack_venv.cached_location())
    name = f"gitops-e2e-{os.getpid()}"
    try:
        create_namespace(name)
        cmd = [
            "ip",
            "netns",
            "exec",
            name,
            sys.executable,
            "-m",
            "e2e",
            "--inside",
            "--workdir",
            str(args.workdir),
            "--tools",
            str(tools),
            "--charts",
            str(charts),
            "--policy-venv",
            str(policy_venv),
            *[f"--crd={c}" for c in crds],
        ]
        return subprocess.run(cmd, cwd=REPO).returncode
    finally:
        remove_namespace(name)


# --- inside the namespace -----------------------------------------------------------------------


@dataclass
class Step:
    name: str
    command: list[str]
    ok: bool = False
    seconds: float = 0.0
    changes: dict[str, int] = field(default_factory=dict)


@dataclass
class Report:
    pulumi: str = ""
    kubernetes_provider: str = versions.KUBERNETES_PROVIDER_VERSION
    kubernetes: str = ""
    cluster_seconds: float = 0.0
    steps: list[Step] = field(default_factory=list)
    resources: int = 0
    objects_in_cluster: int = 0
    left_after_destroy: int = -1
    left: list[str] = field(default_factory=list)
    """kind/namespace/name of each object the stack created that is still there after destroy."""
    error: str | None = None


CHANGE_WORDS = {
    "create": "create",
    "created": "create",
    "update": "update",
    "updated": "update",
    "delete": "delete",
    "deleted": "delete",
    "replace": "replace",
    "replaced": "replace",
    "unchanged": "same",
    "same": "same",
}


def preview_changes(output: str) -> dict[str, int]:
    """The `Resources:` block of the CLI's text output: `+ 57 to create`, `3 unchanged`."""
    block = output.rpartition("Resources:")[2]
    changes: dict[str, int] = {}
    for count, word in re.findall(r"^\s+(?:[-+~]+\s+)?(\d+) (?:to )?(\w+)", block, re.M):
        if word in CHANGE_WORDS:
            changes[CHANGE_WORDS[word]] = changes.get(CHANGE_WORDS[word], 0) + int(count)
    return changes


@dataclass
class Harness:
    workdir: Path
    tools: Path
    charts: Path
    crds: list[Path]
    policy_venv: Path
    report: Report = field(default_factory=Report)
    env: dict[str, str] = field(default_factory=dict)
    baseline: set[str] = field(default_factory=set)

    @property
    def project(self) -> Path:
        return self.workdir / "project"

    @property
    def logs(self) -> Path:
        return self.workdir / "cluster" / "logs"

    def copy_project(self) -> None:
        """The working tree's tracked and new files: the steps edit the copy's stack file."""
        shutil.rmtree(self.project, ignore_errors=True)
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO,
            capture_output=True,
            check=True,
        ).stdout
        for rel in filter(None, listed.decode().split("\0")):
            src = REPO / rel
            if src.is_file():
                (self.project / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, self.project / rel)
        (self.project / ".venv").symlink_to(REPO / ".venv")

    def published_pack(self) -> Path:
        """The policy folder alone, under another name, with a virtualenv of its requirements
        only: what `pulumi policy publish` ships and an enforcing CLI runs."""
        pack = self.workdir / "gitops-platform-guardrails"
        shutil.copytree(self.project / "policy", pack)
        (pack / "venv").symlink_to(self.policy_venv)
        return pack

    def pulumi_env(self) -> dict[str, str]:
        home = self.workdir / "pulumi-home"
        state = self.workdir / "state"
        state.mkdir(parents=True, exist_ok=True)
        path = os.pathsep.join(
            [str(self.tools), str(REPO / ".venv" / "bin"), os.environ.get("PATH", "")]
        )
        return {
            **os.environ,
            "PATH": path,
            "PULUMI_HOME": str(home),
            "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            # Offline: plugins come from PATH (the tools folder), never from a download.
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
            "PULUMI_BACKEND_URL": f"file://{state}",
            "NO_COLOR": "1",
        }

    def pulumi(self, *args: str) -> str:
        """Run the CLI; its output goes to build/e2e/pulumi.log as it comes and is returned."""
        log_path = self.workdir / "pulumi.log"
        with log_path.open("a") as log:
            log.write(f"$ pulumi {' '.join(args)}\n")
            log.flush()
            start = log.tell()
            proc = subprocess.run(
                ["pulumi", *args, "--non-interactive"],
                cwd=self.project,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=STEP_TIMEOUT,
            )
        with log_path.open() as log:
            log.seek(start)
            output = log.read()
        if proc.returncode != 0:
            tail = "\n".join(output.strip().splitlines()[-25:])
            raise E2eError(f"`pulumi {' '.join(args)}` failed:\n{tail}")
        return output

    def pulumi_json(self, *args: str) -> Any:
        """A command whose standard output is JSON (warnings on standard error go to the log)."""
        with (self.workdir / "pulumi.log").open("a") as log:
            proc = subprocess.run(
                ["pulumi", *args, "--non-interactive"],
                cwd=self.project,
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                timeout=STEP_TIMEOUT,
            )
        if proc.returncode != 0:
            raise E2eError(f"`pulumi {' '.join(args)}` failed (see {self.workdir / 'pulumi.log'})")
        return json.loads(proc.stdout)

    def step(self, name: str, *args: str) -> str:
        step = Step(name, ["pulumi", *args])
        self.report.steps.append(step)
        say(f"{name}: pulumi {' '.join(args)}")
        started = time.monotonic()
        try:
            output = self.pulumi(*args)
        finally:
            step.seconds = round(time.monotonic() - started, 1)
        step.ok = True
        step.changes = (
            self.last_changes()
            if name in ("up", "up-again", "refresh", "destroy")
            else preview_changes(output)
        )
        say(f"{name}: ok in {step.seconds} s {step.changes}")
        return output

    def last_changes(self) -> dict[str, int]:
        history = self.pulumi_json("stack", "history", "--json", "--page-size", "1")
        return history[0].get("resourceChanges", {}) if history else {}

    def cluster_objects(self) -> dict[str, str]:
        """uid -> kind/namespace/name of every object of every listable kind."""
        kinds = self.kubectl("api-resources", "--verbs=list", "-o", "name").split()
        items = json.loads(self.kubectl("get", ",".join(kinds), "-A", "-o", "json"))["items"]
        objects = {}
        for item in items:
            meta = item["metadata"]
            if item["kind"] not in IGNORED_KINDS and "uid" in meta:
                objects[meta["uid"]] = f"{item['kind']}/{meta.get('namespace', '')}/{meta['name']}"
        return objects

    def kubectl(self, *args: str) -> str:
        return self.cluster.kubectl(*args)

    def new_objects(self) -> list[str]:
        return sorted(v for k, v in self.cluster_objects().items() if k not in self.baseline)

    def start_openbao(self) -> None:
        """A real OpenBao server where the API server's pod proxy reaches `<vault-0's IP>:8200`.

        It runs as a pod would: in a mount namespace of its own that shows it the service account
        folder a kubelet projects (the cluster CA, the namespace, and a token of the `vault`
        account once the chart has created it), which Vault's Kubernetes auth reads.
        """
        folder = self.workdir / "openbao"
        shutil.rmtree(folder, ignore_errors=True)
        (folder / "raft").mkdir(parents=True)
        account = folder / "serviceaccount"
        account.mkdir()
        shutil.copyfile(self.cluster.workdir / "pki" / "ca.crt", account / "ca.crt")
        (account / "namespace").write_text(VAULT_NAMESPACE)
        pki = control_plane.Pki(folder / "pki")
        pki.issue(
            "server", "vault", dns=("vault-0.vault-internal", "localhost"), ips=("127.0.0.1",)
        )
        config = folder / "bao.hcl"
        config.write_text(
            f'storage "raft" {{\n  path = "{folder / "raft"}"\n  node_id = "vault-0"\n'
            "  performance_multiplier = 1\n}\n"
            f'listener "tcp" {{\n  address = "0.0.0.0:{VAULT_PORT}"\n'
            f'  cluster_address = "127.0.0.1:{VAULT_PORT + 1}"\n'
            f'  tls_cert_file = "{pki.path("server.crt")}"\n'
            f'  tls_key_file = "{pki.path("server.key")}"\n}}\n'
            f'api_addr = "https://127.0.0.1:{VAULT_PORT}"\n'
            f'cluster_addr = "https://127.0.0.1:{VAULT_PORT + 1}"\n'
            "disable_mlock = true\n"
        )
        if not control_plane.port_free("0.0.0.0", VAULT_PORT):
            raise E2eError(f"port {VAULT_PORT} is already in use in the e2e network namespace")
        mounts = (
            "mount -t tmpfs tmpfs /run && mkdir -p /run/secrets/kubernetes.io/serviceaccount"
            ' && mount --bind "$0" /run/secrets/kubernetes.io/serviceaccount && exec "$@"'
        )
        log = (self.logs / "openbao.log").open("wb")
        self.cluster.processes["openbao"] = subprocess.Popen(
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                mounts,
                str(account),
                str(REPO / ".venv" / "bin" / "bao"),
                "server",
                f"-config={config}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=folder,
            start_new_session=True,
            env={"PATH": os.environ.get("PATH", ""), "HOME": str(folder)},
        )
        control_plane.wait_for(
            f"OpenBao to listen on :{VAULT_PORT}",
            lambda: not control_plane.port_free("127.0.0.1", VAULT_PORT),
            30,
            say,
        )
        threading.Thread(target=self.project_token, args=(account / "token",), daemon=True).start()

    def project_token(self, path: Path) -> None:
        """What the kubelet does for the pod: a token of its service account, once it exists.

        Bounded by the `up` step's own limit; without a token Vault's Kubernetes auth fails and
        the bootstrap says so."""
        deadline = time.monotonic() + STEP_TIMEOUT
        while time.monotonic() < deadline:
            try:
                token = self.kubectl(
                    "create", "token", VAULT_NAMESPACE, "-n", VAULT_NAMESPACE, "--duration=2h"
                )
            except control_plane.ClusterError:
                time.sleep(2)
                continue
            path.write_text(token.strip())
            return
        say(f"gave up projecting a token: no service account {VAULT_NAMESPACE}/{VAULT_NAMESPACE}")

    def configure(self) -> None:
        """The documented commands (README, docs/operations.md) for the local stack."""
        kubeconfig = str(self.cluster.admin_kubeconfig)
        self.step("login", "login", self.env["PULUMI_BACKEND_URL"])
        self.step("stack", "stack", "select", STACK, "--create")
        for key, value in (
            ("platform:local.kubeconfig", kubeconfig),
            ("platform:local.context", control_plane.CONTEXT),
            ("platform:charts.directory", str(self.charts)),
            # Off by default on an existing cluster; on here so every pinned chart is installed.
            ("platform:services.rancher", "true"),
        ):
            self.step(f"config {key}", "config", "set", "--path", key, value)
        self.step(
            "config platform:gitopsToken",
            "config",
            "set",
            "--secret",
            "platform:gitopsToken",
            GITOPS_TOKEN,
        )

    def run(self) -> None:
        # Every run starts from nothing: a state left by an earlier run would describe a cluster
        # that no longer exists.
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.workdir.mkdir(parents=True)
        self.cluster = control_plane.Cluster(
            self.workdir / "cluster", self.tools, self.crds, log=say
        )
        started = time.monotonic()
        self.cluster.start()
        self.report.cluster_seconds = round(time.monotonic() - started, 1)
        self.report.kubernetes = json.loads(self.kubectl("version", "-o", "json"))["serverVersion"][
            "gitVersion"
        ]
        self.start_openbao()
        self.baseline = set(self.cluster_objects())

        self.copy_project()
        self.env = self.pulumi_env()
        self.report.pulumi = self.pulumi("version").strip()
        self.configure()
        self.step("preview", "preview", "--policy-pack", str(self.published_pack()))
        self.step("up", "up", "--yes")
        state = self.pulumi_json("stack", "export")
        self.report.resources = len(state["deployment"].get("resources", []))
        self.report.objects_in_cluster = len(self.new_objects())
        self.step("outputs", "stack", "output", "urls")
        kubeconfig_out = self.step("kubeconfig", "stack", "output", "kubeconfig", "--show-secrets")
        exported = self.workdir / "exported.kubeconfig"
        exported.write_text(kubeconfig_out)
        self.cluster.kubectl("--kubeconfig", str(exported), "get", "namespaces")
        self.check_repository_token()
        self.step("up-again", "up", "--yes", "--expect-no-changes")
        self.step("refresh", "refresh", "--yes", "--expect-no-changes")
        self.step("destroy", "destroy", "--yes")
        left = self.wait_for_cleanup()
        self.report.left_after_destroy = len(left)
        self.report.left = left
        if left:
            raise E2eError(
                f"{len(left)} objects of the stack are left after destroy: {', '.join(left[:10])}"
            )
        self.step("stack rm", "stack", "rm", STACK, "--yes")

    def check_repository_token(self) -> None:
        """`config set --secret platform:gitopsToken` reaches Argo CD's repository Secret."""
        encoded = self.kubectl(
            "get", "secret", "gitops-repo", "-n", "argocd", "-o", "jsonpath={.data.password}"
        )
        if base64.b64decode(encoded).decode() != GITOPS_TOKEN:
            raise E2eError(
                "the repository Secret argocd/gitops-repo does not hold the GitOps token"
            )

    def wait_for_cleanup(self) -> list[str]:
        """Namespaces take a while to empty; wait (bounded) until nothing the stack made is left,
        and return what still is."""
        with contextlib.suppress(control_plane.ClusterError):
            control_plane.wait_for(
                "the stack's objects to be deleted",
                lambda: not self.new_objects(),
                NAMESPACE_GONE_TIMEOUT,
                say,
                # Each look lists every object of every kind: no need to ask more often.
                interval=3,
            )
        return self.new_objects()


def inside(args: argparse.Namespace) -> int:
    harness = Harness(args.workdir.resolve(), args.tools, args.charts, args.crd, args.policy_venv)
    report = harness.report
    code = 0
    try:
        harness.run()
    except (E2eError, control_plane.ClusterError, subprocess.TimeoutExpired) as exc:
        report.error = str(exc)
        code = 1
    finally:
        if getattr(harness, "cluster", None) is not None:
            harness.cluster.stop()
        write_report(harness)
    return code


def write_report(harness: Harness) -> None:
    report = harness.report
    path = harness.workdir / "report.json"
    path.write_text(json.dumps(asdict(report), indent=2) + "\n")
    print()
    print(
        f"Pulumi {report.pulumi}, pulumi-kubernetes {report.kubernetes_provider}, "
        f"Kubernetes {report.kubernetes}"
    )
    print(f"cluster up in {report.cluster_seconds} s")
    for step in report.steps:
        mark = "ok  " if step.ok else "FAIL"
        changes = ", ".join(f"{k} {v}" for k, v in step.changes.items())
        print(f"  {mark} {step.name:<34} {step.seconds:>7.1f} s  {changes}")
    print(
        f"resources in state after up: {report.resources}; objects in the cluster: "
        f"{report.objects_in_cluster}; left after destroy: {report.left_after_destroy}"
    )
    if report.error:
        print(f"e2e FAILED: {report.error}")
    print(f"report: {path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="deploy the local stack for real onto an offline cluster"
    )
    parser.add_argument("--workdir", type=Path, default=REPO / "build" / "e2e")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tools", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--charts", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--policy-venv", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--crd", type=Path, action="append", default=[], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    # A stopped run (CI's time limit, Ctrl-C) still removes its processes and namespace.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        return inside(args) if args.inside else outside(args)
    except (E2eError, build.BuildError, pack_venv.VenvError) as exc:
        print(f"e2e: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
