"""Every container argocd-apps ships, as kustomize builds each folder: no privilege escalation,
capabilities dropped, RuntimeDefault seccomp, a read-only root filesystem unless the image must
write, and an image pinned by digest."""

from __future__ import annotations

import re

import pytest
import yaml

from tests.argocd_apps.support import REPO, kustomization_folders, run_kustomize

POD_KINDS = {"Deployment", "DaemonSet", "StatefulSet", "Job", "CronJob", "Pod", "ReplicaSet"}
DIGEST = re.compile(r"^[^@\s]+:[^@\s/]+@sha256:[0-9a-f]{64}$")
WRITABLE_ROOT = {
    # node-cache writes the Corefile it serves from Corefile.base at start (daemonset.yaml).
    ("node-local-dns", "node-cache"),
}
ADDED_CAPABILITIES = {
    # NodeLocal DNSCache programs the host's network (daemonset.yaml says why each is needed).
    ("node-local-dns", "node-cache"): {"NET_ADMIN", "NET_RAW", "NET_BIND_SERVICE"},
}


def _is_component(folder) -> bool:
    return yaml.safe_load((folder / "kustomization.yaml").read_text())["kind"] == "Component"


FOLDERS = [f for f in kustomization_folders() if not _is_component(f)]


def _pod_spec(obj: dict) -> dict:
    spec = obj["spec"]
    if obj["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec if obj["kind"] == "Pod" else spec["template"]["spec"]


def _containers():
    for folder in FOLDERS:
        for obj in run_kustomize(folder):
            if obj["kind"] not in POD_KINDS:
                continue
            pod = _pod_spec(obj)
            for container in pod.get("initContainers", []) + pod["containers"]:
                yield folder.relative_to(REPO), obj["metadata"]["name"], pod, container


CONTAINERS = list(_containers())


def test_every_workload_folder_is_covered():
    assert {name for _, name, _, _ in CONTAINERS} >= {"hello", "node-local-dns"}


@pytest.mark.parametrize(
    ("folder", "workload", "pod", "container"),
    CONTAINERS,
    ids=[f"{f}:{w}/{c['name']}" for f, w, _, c in CONTAINERS],
)
def test_container_is_locked_down(folder, workload, pod, container):
    context = container.get("securityContext", {})
    key = (workload, container["name"])
    assert context.get("allowPrivilegeEscalation") is False
    capabilities = context.get("capabilities", {})
    assert capabilities.get("drop") == ["ALL"]
    assert set(capabilities.get("add", [])) == ADDED_CAPABILITIES.get(key, set())
    seccomp = context.get("seccompProfile") or pod.get("securityContext", {}).get("seccompProfile")
    assert seccomp == {"type": "RuntimeDefault"}
    assert context.get("readOnlyRootFilesystem") is (key not in WRITABLE_ROOT)
    assert DIGEST.match(container["image"]), f"{container['image']} is not pinned by digest"
