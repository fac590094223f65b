"""The checker CLI: `python -m policy.check PATH... [--format json] [--config F] [--stack F]`."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from policy.check import main
from tests.policy.conftest import REPO_ROOT
from tests.policy.policy_objects import served_app, workload

STAGING_ISSUER = {
    "apiVersion": "cert-manager.io/v1",
    "kind": "ClusterIssuer",
    "metadata": {"name": "le"},
    "spec": {"acme": {"server": "https://acme-staging-v02.api.letsencrypt.org/directory"}},
}


def write(path: Path, *documents: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return path


def run(*argv: str | Path, stdin: str = "") -> tuple[int, str]:
    out = io.StringIO()
    status = main([str(a) for a in argv], stdout=out, stdin=io.StringIO(stdin))
    return status, out.getvalue()


def test_clean_tree_passes(tmp_path: Path) -> None:
    write(tmp_path / "apps" / "web" / "app.yaml", *served_app())
    status, out = run(tmp_path)
    assert status == 0
    assert out == "3 objects in 1 files: 0 mandatory and 0 advisory violations\n"


def test_report_groups_findings_by_object(tmp_path: Path) -> None:
    source = write(tmp_path / "web.yaml", *served_app(replicas=1, dnsConfig=None))
    status, out = run(tmp_path)
    assert status == 1
    lines = out.splitlines()
    assert lines[0] == f"Deployment/shop/web  ({source})"
    assert lines[1].startswith("  MANDATORY  replicas-min-2            spec.replicas is 1;")
    assert lines[2].startswith("  advisory   dns-conntrack-mitigation  no dnsConfig option")
    assert "How to fix:" in lines
    assert "  replicas-min-2: Set spec.replicas: 2 or more" in out
    assert lines[-1] == "3 objects in 1 files: 1 mandatory and 1 advisory violations"


def test_advisory_findings_alone_exit_zero(tmp_path: Path) -> None:
    write(tmp_path / "web.yaml", *served_app(dnsConfig=None))
    assert run(tmp_path)[0] == 0


def test_json_format(tmp_path: Path) -> None:
    source = write(tmp_path / "web.yaml", *served_app(replicas=1))
    status, out = run(tmp_path, "--format", "json")
    report = json.loads(out)
    assert status == 1
    assert {k: report[k] for k in ("files", "objects", "mandatory", "advisory")} == {
        "files": 1,
        "objects": 3,
        "mandatory": 1,
        "advisory": 0,
    }
    assert report["findings"] == [
        {
            "rule": "replicas-min-2",
            "enforcement": "mandatory",
            "object": "Deployment/shop/web",
            "message": report["findings"][0]["message"],
            "source": str(source),
        }
    ]


def test_files_directories_and_stdin_form_one_set(tmp_path: Path) -> None:
    # The Service (stdin) selects the Deployment (a file found recursively): readiness applies.
    bare = workload(
        containers=[
            {
                "name": "app",
                "image": "web:1.0",
                "resources": {
                    "requests": {"cpu": "1", "memory": "1Gi"},
                    "limits": {"cpu": "1", "memory": "1Gi"},
                },
            }
        ]
    )
    write(tmp_path / "a" / "b" / "deploy.yml", bare, {"replicaCount": 3}, None)
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "hidden.yaml").write_text("kind: [")
    (tmp_path / "notes.txt").write_text("not yaml: [")
    service_yaml = yaml.safe_dump(served_app()[1]) + "---\n" + yaml.safe_dump(served_app()[2])
    status, out = run(tmp_path, "-", "--format", "json", stdin=service_yaml)
    rules = {f["rule"] for f in json.loads(out)["findings"]}
    assert status == 1
    assert rules == {"readiness-probe-if-serviced", "graceful-shutdown"}
    assert json.loads(out)["files"] == 2


def test_config_file_and_stack_file(tmp_path: Path) -> None:
    write(tmp_path / "web.yaml", *served_app(replicas=1), STAGING_ISSUER)
    config = tmp_path / "policy.json"
    config.write_text(json.dumps({"replicas-min-2": {"enforcementLevel": "advisory"}}))
    assert run(tmp_path / "web.yaml", "--config", config)[0] == 0
    stack = write(
        tmp_path / "Pulumi.prod.yaml",
        {
            "config": {
                "platform:production": True,
                "platform:policy": {"replicas-min-2": "disabled"},
            }
        },
    )
    status, out = run(tmp_path / "web.yaml", "--stack", stack)
    assert status == 1
    assert "acme-server-per-stack" in out and "replicas-min-2" not in out
    assert run(tmp_path / "web.yaml", "--config", config, "--production")[0] == 1


def errors(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> str:
    assert run(*argv)[0] == 2
    return capsys.readouterr().err


def test_missing_path_and_empty_directory_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert "missing: no such file or directory" in errors(capsys, tmp_path / "missing")
    assert "no YAML files found in" in errors(capsys, tmp_path)


def test_invalid_yaml_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bad.yaml").write_text("kind: [")
    assert f"{tmp_path / 'bad.yaml'}: not valid YAML" in errors(capsys, tmp_path)


def test_invalid_policy_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path / "web.yaml", *served_app())
    (tmp_path / "policy.yaml").write_text("nope: advisory\n")
    message = errors(capsys, tmp_path / "web.yaml", "--config", tmp_path / "policy.yaml")
    assert "platform:policy.nope: unknown rule" in message


def test_unknown_option_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--format", "xml", "x.yaml"])
    assert exited.value.code == 2
    assert "invalid choice: 'xml'" in capsys.readouterr().err


def test_module_entry_point(tmp_path: Path) -> None:
    write(tmp_path / "web.yaml", *served_app(replicas=1))
    result = subprocess.run(
        [sys.executable, "-m", "policy.check", str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert "replicas-min-2" in result.stdout
