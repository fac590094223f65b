"""Build the e2e's tools from the Go module proxy into a cache outside the tree.

    python -m e2e.tools.build            # build what is missing, print the tools folder
    python -m e2e.tools.build --check    # exit 1 (and say why) when the cache is not built

What is built, and from which module of this folder (each pins its versions in go.mod/go.sum):
- pulumi/: the Pulumi CLI and the Python language host, plus the SDK's two helper scripts
  (`pulumi-language-python-exec`, `pulumi-resource-pulumi-python`, the dynamic-provider host)
  copied from the sdk/v3 module with the exec bit;
- kubernetes-provider/: `pulumi-resource-kubernetes`;
- cluster/: kube-apiserver, kube-controller-manager, kube-scheduler, and etcd at the release
  kube-apiserver is built against;
- kwok/: kwok (fake nodes whose pods become Ready).

The cache folder is named after a digest of every input (go.mod, go.sum, sources, this script,
the version pins and the Go version), so a changed pin builds a new folder and an unchanged tree
reuses the old one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from components import versions

HERE = Path(__file__).resolve().parent
MODULES = ("pulumi", "kubernetes-provider", "cluster", "kwok")
BINARIES = (
    "pulumi",
    "pulumi-language-python",
    "pulumi-language-python-exec",
    "pulumi-resource-pulumi-python",
    "pulumi-resource-kubernetes",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "etcd",
    "kwok",
)
COMPLETE = ".complete"
KWOK_CONFIG = "kwok-stages.yaml"


class BuildError(RuntimeError):
    pass


def cache_root() -> Path:
    if root := os.environ.get("E2E_TOOLS_CACHE"):
        return Path(root)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gitops-platform" / "e2e-tools"


def go_env() -> dict[str, str]:
    # readonly: go.sum is the record of what may be downloaded; local: the machine's own Go.
    return {**os.environ, "GOFLAGS": "-mod=readonly -buildvcs=false", "GOTOOLCHAIN": "local"}


def go_version() -> str:
    try:
        return subprocess.run(
            ["go", "env", "GOVERSION"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as exc:
        raise BuildError(f"the Go toolchain is needed to build the e2e tools: {exc}") from None


def inputs_digest() -> str:
    digest = hashlib.sha256()
    pins = {
        "pulumi": versions.PULUMI_CLI_VERSION,
        "provider": versions.KUBERNETES_PROVIDER_VERSION,
        "kubernetes": versions.kubernetes_release(),
        "kwok": versions.KWOK_VERSION,
        "go": go_version(),
    }
    digest.update(json.dumps(pins, sort_keys=True).encode())
    files = [Path(__file__)]
    for module in MODULES:
        folder = HERE / module
        files += [folder / "go.mod", folder / "go.sum", *sorted(folder.rglob("*.go"))]
    for path in files:
        digest.update(str(path.relative_to(HERE)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def tools_dir() -> Path:
    return cache_root() / inputs_digest()


def run(step: str, cmd: list[str], cwd: Path) -> str:
    started = time.monotonic()
    print(f"  {step} ...", flush=True)
    proc = subprocess.run(cmd, cwd=cwd, env=go_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise BuildError(f"{step} failed (in {cwd.relative_to(HERE.parent.parent)}):\n{tail}")
    print(f"  {step}: {time.monotonic() - started:.0f} s", flush=True)
    return proc.stdout


def module_dir(cwd: Path, module: str) -> Path:
    """The module's source folder, downloading it first (on a cold cache it is not there yet)."""
    out = run(f"download {module}", ["go", "mod", "download", "-json", module], cwd)
    folder = json.loads(out).get("Dir")
    if not folder:
        raise BuildError(f"`go mod download {module}` gave no source folder:\n{out}")
    return Path(folder)


def build_pulumi(out: Path) -> None:
    cwd = HERE / "pulumi"
    version = (
        f"github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v{versions.PULUMI_CLI_VERSION}"
    )
    ldflags = f"-s -w -X {version}"
    run(
        f"pulumi CLI v{versions.PULUMI_CLI_VERSION} and language host",
        [
            "go",
            "build",
            "-trimpath",
            "-tags",
            "osusergo,grpcnotrace",
            "-ldflags",
            ldflags,
            "-o",
            f"{out}/",
            "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi",
            "./cmd/pulumi-language-python",
        ],
        cwd,
    )
    sdk = module_dir(cwd, "github.com/pulumi/pulumi/sdk/v3")
    for script in (
        "python/cmd/pulumi-language-python-exec",
        "python/dist/pulumi-resource-pulumi-python",
    ):
        target = out / Path(script).name
        shutil.copyfile(sdk / script, target)
        target.chmod(0o755)


def build_kubernetes_provider(out: Path) -> None:
    cwd = HERE / "kubernetes-provider"
    provider = module_dir(cwd, "github.com/pulumi/pulumi-kubernetes/provider/v4")
    source = provider / "cmd" / "pulumi-resource-kubernetes"
    # The release build stamps the version into the schema and embeds both files compacted.
    schema = json.loads((source / "schema.json").read_text())
    schema["version"] = versions.KUBERNETES_PROVIDER_VERSION
    mapping = json.loads((source / "terraform-mapping.json").read_text())
    for name, data in (("schema-embed.json", schema), ("terraform-mapping-embed.json", mapping)):
        (cwd / name).write_text(json.dumps(data, separators=(",", ":")))
    ldflags = (
        "-s -w -X github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version.Version="
        + versions.KUBERNETES_PROVIDER_VERSION
    )
    run(
        f"pulumi-resource-kubernetes {versions.KUBERNETES_PROVIDER_VERSION}",
        [
            "go",
            "build",
            "-trimpath",
            "-ldflags",
            ldflags,
            "-o",
            str(out / "pulumi-resource-kubernetes"),
            ".",
        ],
        cwd,
    )


def build_cluster(out: Path) -> None:
    release = versions.kubernetes_release()
    major, minor = release.removeprefix("v").split(".")[:2]
    ldflags = ["-s", "-w"]
    # Without these the binaries report v0.0.0 and Helm's kubeVersion checks refuse every chart.
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        ldflags += [
            f"-X {pkg}.gitVersion={release}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
        ]
    run(
        f"Kubernetes {release} control plane and etcd",
        [
            "go",
            "build",
            "-trimpath",
            "-pgo=off",
            "-ldflags",
            " ".join(ldflags),
            "-o",
            f"{out}/",
            "k8s.io/kubernetes/cmd/kube-apiserver",
            "k8s.io/kubernetes/cmd/kube-controller-manager",
            "k8s.io/kubernetes/cmd/kube-scheduler",
            "./cmd/etcd",
        ],
        HERE / "cluster",
    )


KWOK_STAGES = (
    "node/fast/node-initialize.yaml",
    "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "pod/fast/pod-ready.yaml",
    "pod/fast/pod-complete.yaml",
    "pod/fast/pod-delete.yaml",
)
"""kwok's own stage definitions, the ones kwokctl loads: nodes become Ready and keep a lease,
pods become Ready, Job pods complete, deleted pods go away."""


def build_kwok(out: Path) -> None:
    cwd = HERE / "kwok"
    run(
        f"kwok {versions.KWOK_VERSION}",
        [
            "go",
            "build",
            "-trimpath",
            "-ldflags",
            "-s -w",
            "-o",
            f"{out}/",
            "sigs.k8s.io/kwok/cmd/kwok",
        ],
        cwd,
    )
    stages = module_dir(cwd, "sigs.k8s.io/kwok") / "kustomize" / "stage"
    (out / KWOK_CONFIG).write_text(
        "\n---\n".join((stages / stage).read_text() for stage in KWOK_STAGES)
    )


def build() -> Path:
    target = tools_dir()
    if (target / COMPLETE).exists():
        return target
    print(f"building the e2e tools into {target} (cold: about 16 minutes on 2 cores)", flush=True)
    started = time.monotonic()
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for step in (build_pulumi, build_kubernetes_provider, build_cluster, build_kwok):
        step(staging)
    missing = [b for b in (*BINARIES, KWOK_CONFIG) if not (staging / b).is_file()]
    if missing:
        raise BuildError(f"the build left out {', '.join(missing)}")
    (staging / COMPLETE).write_text(f"{time.monotonic() - started:.0f}\n")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    print(f"e2e tools built in {time.monotonic() - started:.0f} s", flush=True)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the cache is built")
    args = parser.parse_args(argv)
    try:
        if args.check:
            target = tools_dir()
            if not (target / COMPLETE).exists():
                print(f"e2e tools are not built in {target}: run `make e2e-tools`", file=sys.stderr)
                return 1
        else:
            target = build()
    except (BuildError, OSError, ValueError) as exc:
        print(f"e2e tools: {exc}", file=sys.stderr)
        return 1
    print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
