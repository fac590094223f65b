"""The synth renders every release with the real pinned chart: readable values, strict objects,
HA in production, requests and limits everywhere, and a capacity check that can fail."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import replace

import pytest
import yaml

from components.config import parse
from components.platform import sizing
from policy.cost.catalogue import instance_types, priced_types
from synth import capacity, charts
from synth.core import helm_releases, load_stack_config
from synth.mocks import SECRET
from tests.conftest import REPO, STACKS
from tests.synth.test_synth_output import _synth_cli

RELEASE = "kubernetes:helm.sh/v3:Release"
POD_KINDS = {"Deployment": "spec", "StatefulSet": "spec", "DaemonSet": "spec", "Job": "spec"}


@pytest.fixture(scope="module")
def rendered_dirs(synth_dirs):
    if charts.chart_folder() is None:
        reason = f"no chart cache at {charts.cache_dir()}: `make charts` fills it"
        if os.environ.get("REQUIRE_ALL_TOOLS") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return synth_dirs


def objects(folder, release=None):
    files = sorted((folder / "rendered").glob(f"{release or '*'}.yaml"))
    return [o for f in files for o in yaml.safe_load_all(f.read_text()) if o]


def pod_spec(obj):
    return obj["spec"]["template"]["spec"]


@pytest.mark.parametrize("stack", STACKS)
def test_every_release_renders_from_readable_values(rendered_dirs, stack):
    folder = rendered_dirs[stack]
    releases = json.loads((folder / "helm" / "releases.json").read_text())
    assert releases
    for entry in releases:
        values = yaml.safe_load((folder / "helm" / f"{entry['name']}.values.yaml").read_text())
        assert isinstance(values, dict), f"{entry['name']}: the values are one secret"
        assert "[secret]" not in json.dumps(values), entry["name"]
        assert objects(folder, entry["name"]), entry["name"]


@pytest.mark.parametrize("stack", STACKS)
def test_every_rendered_container_is_sized_and_restricted(rendered_dirs, stack):
    for obj in objects(rendered_dirs[stack]):
        if obj["kind"] not in POD_KINDS:
            continue
        spec = pod_spec(obj)
        for container in spec.get("initContainers", []) + spec["containers"]:
            where = f"{obj['kind']}/{obj['metadata']['name']}/{container['name']}"
            if (obj["metadata"]["name"], obj["kind"]) in {
                ("rancher-post-delete", "Job"),
                ("rancher-pre-upgrade", "Job"),
            }:
                continue  # synth.charts.CHART_EXEMPTIONS: the chart has no value for these
            resources = container.get("resources") or {}
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(part) or {}), where
            if obj["metadata"]["namespace"] == "cattle-system":
                continue  # Rancher's chart sets no security context (docs/security.md)
            context = container["securityContext"]
            pod = spec.get("securityContext") or {}
            assert context["allowPrivilegeEscalation"] is False, where
            assert "ALL" in context["capabilities"]["drop"], where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context.get("runAsNonRoot") or pod.get("runAsNonRoot"), where
            seccomp = context.get("seccompProfile") or pod.get("seccompProfile")
            assert seccomp == {"type": "RuntimeDefault"}, where


def test_production_runs_every_platform_controller_highly_available(rendered_dirs):
    found = objects(rendered_dirs["prod"])
    budgets = [o for o in found if o["kind"] == "PodDisruptionBudget"]
    for obj in found:
        if obj["kind"] not in ("Deployment", "StatefulSet"):
            continue
        name = obj["metadata"]["name"]
        if name == "argocd-application-controller":
            # Shards clusters; exempt in its own annotations (components/platform/argocd.py).
            continue
        assert obj["spec"]["replicas"] >= 2, name
        labels = obj["spec"]["template"]["metadata"]["labels"]
        terms = pod_spec(obj)["affinity"]["podAntiAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"
        ]
        assert any(t["topologyKey"] == "kubernetes.io/hostname" for t in terms), name
        if name != "rancher":  # its budget is a Pulumi object (manifests/)
            assert any(
                b["metadata"]["namespace"] == obj["metadata"]["namespace"]
                and all(
                    labels.get(k) == v
                    for k, v in b["spec"]["selector"].get("matchLabels", {}).items()
                )
                for b in budgets
            ), name


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_capacity_fits_with_headroom(rendered_dirs, stack):
    report = json.loads((rendered_dirs[stack] / "capacity.json").read_text())
    servers = report["groups"]["servers"]
    assert servers["nodes"] >= 1 and re.fullmatch(r"\d+m", servers["allocatable"]["cpu"])
    assert re.fullmatch(r"\d+(Mi|Gi)", servers["requested"]["memory"])
    for group in report["groups"].values():
        if group["nodes"]:
            assert group["headroom"]["memory"] >= 0.2


def test_a_platform_that_does_not_fit_fails_the_synth(tmp_path, rendered_dirs):
    text = (REPO / "stacks" / "Pulumi.dev.yaml").read_text()
    # The smallest server the catalogue offers for the stack's architecture and region.
    arch = re.search(r"\barch: (\S+)", text)[1]
    region = re.search(r"aws:region: (\S+)", text)[1]
    specs = instance_types()
    tiny = min(priced_types(region, arch), key=lambda name: specs[name].memory_gib)
    small = re.sub(r"serverInstanceType: \S+", f"serverInstanceType: {tiny}", text)
    assert small != text
    (tmp_path / "Pulumi.dev.yaml").write_text(small)
    run = _synth_cli(
        "--stack",
        "dev",
        "--stack-file",
        str(tmp_path / "Pulumi.dev.yaml"),
        "--out",
        str(tmp_path / "out"),
    )
    assert run.returncode == 1, run.stderr
    assert "synth: platform-capacity: capacity/servers: " in run.stderr
    report = json.loads((tmp_path / "out" / "capacity.json").read_text())
    assert report["groups"]["servers"]["headroom"]["memory"] < 0.2


def test_rendering_is_byte_identical(rendered_dirs, tmp_path, synth_results):
    from synth.core import write

    write(synth_results["dev"], tmp_path / "again")
    for path in sorted((rendered_dirs["dev"] / "rendered").iterdir()):
        assert (tmp_path / "again" / "rendered" / path.name).read_bytes() == path.read_bytes()


def test_sizing_covers_the_single_replica_of_small_stacks(rendered_dirs):
    for obj in objects(rendered_dirs["dev"]):
        if obj["kind"] in ("Deployment", "StatefulSet"):
            assert obj["spec"].get("replicas", 1) == 1, obj["metadata"]["name"]
    assert sizing.replicas("argocd", "redis-ha", "small") == 0


def test_without_a_chart_cache_the_synth_says_so_and_goes_on(tmp_path):
    env = {**os.environ, "GITOPS_CHART_CACHE": str(tmp_path / "empty")}
    run = subprocess.run(
        [sys.executable, "-m", "synth", "--stack", "local", "--out", str(tmp_path / "out")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    (line,) = [ln for ln in run.stdout.splitlines() if "chart cache" in ln]
    assert "`make charts` fills it" in line and str(tmp_path / "empty") in line
    assert (tmp_path / "out" / "helm" / "releases.json").exists()
    assert not (tmp_path / "out" / "rendered").exists()
    assert not (tmp_path / "out" / "capacity.json").exists()


def test_required_anti_affinity_needs_a_node_per_replica(rendered_dirs):
    """Production's three-replica controllers each need their own agent: two agents fail."""
    values, _ = load_stack_config("prod")
    cluster = values["platform:cluster"]
    values["platform:cluster"] = {
        **cluster,
        "agents": {**cluster["agents"], "min": 2, "desired": 2},
    }
    _, findings = capacity.check(parse(values), objects(rendered_dirs["prod"]))
    spread = {f.object for f in findings if "node of their own" in f.message}
    assert "StatefulSet/argocd/argocd-redis-ha-server" in spread
    assert "Deployment/cert-manager/cert-manager-webhook" in spread
    assert all(f.rule == capacity.RULE and f.enforcement == "mandatory" for f in findings)


def test_a_pod_reserves_its_largest_init_container_when_that_is_larger():
    spec = {
        "initContainers": [{"resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}],
        "containers": [
            {"resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}},
            {"resources": {"requests": {"cpu": "200m", "memory": "2Gi"}}},
        ],
    }
    assert capacity.pod_request(spec) == capacity.Amount(1000, 2112)


def test_a_secret_in_values_hides_its_leaf_not_the_document(synth_results):
    """Were a password put into values again, the SDK would mark all of them secret; the synth
    still shows every other value."""
    result = synth_results["dev"]
    (argocd,) = [r for r in result.of_type(RELEASE) if r.inputs["name"] == "argocd"]
    password = sorted(result.secret_values)[0]
    leaky = replace(
        argocd,
        inputs={**argocd.inputs, "values": SECRET},
        plain_inputs={
            **argocd.plain_inputs,
            "values": {**argocd.plain_inputs["values"], "configs": {"hash": f"$2b${password}"}},
        },
    )
    ((_, values),) = helm_releases(replace(result, registrations=[leaky]))
    assert values["configs"] == {"hash": SECRET}
    assert values["global"]["domain"] == argocd.plain_inputs["values"]["global"]["domain"]
