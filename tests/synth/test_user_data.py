"""The nodes' user data: valid cloud-config, clean shell, no secrets, within EC2's size limit."""

from __future__ import annotations

import base64
import gzip
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from components.k3s import userdata
from tests.conftest import REPO, require_tool

SHELLCHECK = Path(sys.executable).with_name("shellcheck")
KINDS = {"dev": {"server-init", "agent"}, "prod": {"server-init", "server", "agent"}}


def test_node_kinds(synth_dirs):
    for stack, kinds in KINDS.items():
        assert {p.stem for p in (synth_dirs[stack] / "cloud-init").glob("*.yaml")} == kinds


@pytest.mark.parametrize("stack", sorted(KINDS))
def test_cloud_init_schema(synth_dirs, stack):
    cloud_init = require_tool("cloud-init")
    for path in sorted((synth_dirs[stack] / "cloud-init").glob("*.yaml")):
        run = subprocess.run(
            [cloud_init, "schema", "--config-file", str(path)], capture_output=True, text=True
        )
        assert run.returncode == 0, f"{path.name}: {run.stdout}{run.stderr}"
        assert "Valid cloud-config" in run.stdout


def test_cloud_init_schema_rejects_a_broken_document(tmp_path):
    cloud_init = require_tool("cloud-init")
    bad = tmp_path / "bad.yaml"
    bad.write_text("#cloud-config\nwrite_files:\n  - path: /x\n    permissions: 600\n")
    run = subprocess.run(
        [cloud_init, "schema", "--config-file", str(bad)], capture_output=True, text=True
    )
    assert run.returncode != 0


def _content(entry: dict) -> str:
    """A write_files entry's content as cloud-init writes it to disk."""
    if entry.get("encoding") == "gz+b64":
        return gzip.decompress(base64.b64decode(entry["content"])).decode()
    assert "encoding" not in entry, entry["encoding"]
    return entry["content"]


def _embedded_scripts(text: str) -> list[str]:
    doc = yaml.safe_load(text)
    contents = [_content(f) for f in doc["write_files"]]
    return [c for c in contents if c.startswith("#!/bin/")]


@pytest.mark.parametrize("stack", sorted(KINDS))
def test_embedded_scripts_pass_shellcheck(synth_dirs, stack, tmp_path):
    for path in sorted((synth_dirs[stack] / "cloud-init").glob("*.yaml")):
        scripts = _embedded_scripts(path.read_text())
        assert scripts, f"{path.name} embeds no boot script"
        for i, script in enumerate(scripts):
            target = tmp_path / f"{stack}-{path.stem}-{i}.sh"
            target.write_text(script)
            run = subprocess.run(
                [str(SHELLCHECK), "--severity=style", str(target)], capture_output=True, text=True
            )
            assert run.returncode == 0, run.stdout


def test_shellcheck_catches_a_defect(tmp_path):
    script = tmp_path / "bad.sh"
    script.write_text("#!/bin/bash\nrm -rf $DIR/*\n")
    assert subprocess.run([str(SHELLCHECK), str(script)], capture_output=True).returncode != 0


@pytest.mark.parametrize("stack", sorted(KINDS))
def test_user_data_carries_no_secret_and_fits(synth_dirs, stack):
    for path in sorted((synth_dirs[stack] / "cloud-init").glob("*.yaml")):
        text = path.read_text()
        assert len(text.encode()) <= userdata.USER_DATA_LIMIT
        assert "PRIVATE KEY" not in text
        config = yaml.safe_load(yaml.safe_load(text)["write_files"][1]["content"])
        assert not {"token", "agent-token", "datastore-endpoint"} & set(config), path.name
        env = dict(
            re.findall(
                r"^(\w+)=(.*)$", yaml.safe_load(text)["write_files"][0]["content"], re.MULTILINE
            )
        )
        assert env["SECRET_ID"].startswith("'arn:aws:secretsmanager:") or env[
            "SECRET_ID"
        ].startswith("arn:aws:secretsmanager:")


def test_servers_share_critical_k3s_settings(synth_dirs):
    configs = []
    for kind in ("server-init", "server"):
        doc = yaml.safe_load((synth_dirs["prod"] / "cloud-init" / f"{kind}.yaml").read_text())
        configs.append(yaml.safe_load(doc["write_files"][1]["content"]))
    assert configs[0] == configs[1]
    assert (
        configs[0]["secrets-encryption"] is True and configs[0]["protect-kernel-defaults"] is True
    )
    assert configs[0]["etcd-s3"] is True and configs[0]["etcd-s3-folder"] == "etcd"


def test_boot_script_is_the_committed_one(synth_dirs):
    for stack, kinds in KINDS.items():
        for kind in kinds:
            text = (synth_dirs[stack] / "cloud-init" / f"{kind}.yaml").read_text()
            assert _embedded_scripts(text) == [(REPO / "components/k3s/boot.sh").read_text()]


def test_nodes_can_pull_from_the_registry(synth_dirs):
    for kind in ("server-init", "server", "agent"):
        doc = yaml.safe_load((synth_dirs["prod"] / "cloud-init" / f"{kind}.yaml").read_text())
        files = {f["path"]: f["content"] for f in doc["write_files"]}
        config = yaml.safe_load(files["/etc/platform/k3s-config.yaml"])
        assert set(userdata.ECR_KUBELET_ARGS) <= set(config["kubelet-arg"]), kind
        provider = yaml.safe_load(files["/var/lib/rancher/credentialprovider/config.yaml"])
        assert provider["providers"][0]["name"] == "ecr-credential-provider"
        assert (
            "ECR_CREDENTIAL_PROVIDER_URL=https://artifacts.k8s.io/"
            in files["/etc/platform/boot.env"]
        )


def test_servers_carry_the_traefik_configuration(synth_dirs):
    from components.k3s import traefik

    for stack, production in (("dev", False), ("prod", True)):
        doc = yaml.safe_load((synth_dirs[stack] / "cloud-init" / "server-init.yaml").read_text())
        files = {f["path"]: f["content"] for f in doc["write_files"]}
        path = f"/var/lib/rancher/k3s/server/manifests/{traefik.MANIFEST_NAME}"
        assert files[path] == traefik.render_manifest(production)
        agent = yaml.safe_load((synth_dirs[stack] / "cloud-init" / "agent.yaml").read_text())
        assert path not in {f["path"] for f in agent["write_files"]}
