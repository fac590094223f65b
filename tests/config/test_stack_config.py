"""The typed stack config against folders of valid and invalid stack files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from components import config
from policy.stack_file import load

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "config"
VALID = sorted((FIXTURES / "valid").glob("*.yaml")) + sorted(
    (REPO / "stacks").glob("Pulumi.*.yaml")
)
INVALID = sorted((FIXTURES / "invalid").glob("*.yaml"))


def _config(path: Path) -> dict:
    return load(path).values


def _expected_key(path: Path) -> str:
    match = re.search(r"^# error-key: (\S+)$", path.read_text(), re.MULTILINE)
    assert match, f"{path.name} must say which key it breaks (# error-key: ...)"
    return match[1]


def test_enough_fixtures():
    assert len(INVALID) >= 25
    assert len(VALID) >= 8


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_valid(path: Path):
    cfg = config.parse(_config(path))
    assert cfg.environment


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_names_the_key(path: Path):
    with pytest.raises(config.ConfigError) as err:
        config.from_stack_file(load(path))
    key = _expected_key(path)
    keys = [issue.key for issue in err.value.issues]
    assert key in keys, f"expected an error on {key}, got:\n{err.value}"
    issue = next(i for i in err.value.issues if i.key == key)
    assert len(issue.message) > 10, "the message must say what is allowed"
    if not path.stem.startswith("unknown-"):
        assert not issue.message.startswith("unknown key"), f"{key} is not a known key"
    line = err.value.lines()[err.value.issues.index(issue)]
    where = f"{path}:{issue.line}" if issue.line else str(path)
    assert line.startswith(f"{where}: {key}: "), line
    assert "secure" not in line and "v1:" not in line


def test_every_problem_is_reported_once():
    raw = _config(REPO / "stacks" / "Pulumi.dev.yaml")
    raw["platform:cluster"] = {**raw["platform:cluster"], "servers": 2, "rootVolumeGb": 1}
    raw["platform:bogus"] = True
    with pytest.raises(config.ConfigError) as err:
        config.parse(raw)
    keys = [i.key for i in err.value.issues]
    assert sorted(keys) == sorted(set(keys))
    assert {"platform:bogus", "platform:cluster.servers", "platform:cluster.rootVolumeGb"} <= set(
        keys
    )
    assert str(err.value).count("\n") == len(keys)


def test_defaults_derive_from_production():
    dev = config.parse(_config(REPO / "stacks" / "Pulumi.dev.yaml"))
    prod = config.parse(_config(REPO / "stacks" / "Pulumi.prod.yaml"))
    assert (dev.acme_server, dev.cluster.endpoint_kind) == ("staging", "eip")
    assert (prod.acme_server, prod.cluster.endpoint_kind) == ("production", "nlb")


@pytest.mark.parametrize(
    "itype,arch",
    [
        ("t3.large", "x86_64"),
        ("t3a.medium", "x86_64"),
        ("t4g.large", "arm64"),
        ("m7gd.xlarge", "arm64"),
        ("c7gn.large", "arm64"),
        ("g5.xlarge", "x86_64"),
        ("m6i.2xlarge", "x86_64"),
        ("nonsense", None),
    ],
)
def test_instance_arch(itype: str, arch: str | None):
    assert config.instance_arch(itype) == arch


def test_chart_directory_must_hold_every_chart_the_stack_installs(tmp_path: Path):
    from components import versions

    raw = _config(REPO / "stacks" / "Pulumi.local.yaml")
    raw["platform:charts"] = {"directory": str(tmp_path)}
    needed = [versions.CERT_MANAGER, versions.EXTERNAL_SECRETS, versions.ARGO_CD, versions.VAULT]
    for pin in needed[1:]:
        (tmp_path / f"{pin.chart}-{pin.version}.tgz").write_bytes(b"")
    with pytest.raises(config.ConfigError) as err:
        config.parse(raw)
    (issue,) = err.value.issues
    assert issue.key == "platform:charts.directory"
    assert f"cert-manager-{versions.CERT_MANAGER.version}.tgz" in issue.message
    (tmp_path / f"cert-manager-{versions.CERT_MANAGER.version}.tgz").write_bytes(b"")
    assert config.parse(raw).charts.directory == str(tmp_path)


def test_the_gitops_token_is_never_echoed():
    raw = _config(REPO / "stacks" / "Pulumi.local.yaml")
    raw["platform:gitopsToken"] = {"secure": "v1:cipher"}
    assert config.parse(raw).environment == "local"
    raw["platform:gitopsToken"] = "plain-token-from-the-engine"
    assert config.parse(raw).environment == "local"
    raw["platform:gitopsToken"] = ["plain-token-in-a-list"]
    with pytest.raises(config.ConfigError) as err:
        config.parse(raw)
    assert "plain-token" not in str(err.value)


def test_under_the_engine_an_invalid_config_is_a_run_error(monkeypatch):
    """The engine prints a RunError as its message alone: no traceback, and no secret value."""
    import json

    import pulumi

    raw = {
        "platform:environment": "local",
        "platform:target": "existing",
        "platform:local": json.dumps({"kubeconfig": "~/.kube/config", "ingressIp": "nope"}),
        "platform:gitops": json.dumps({"repoUrl": "https://example.org/x.git"}),
        "platform:tls": json.dumps({"letsEncrypt": False}),
        "platform:dns": "a-decrypted-secret-value",
    }
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps(raw))
    monkeypatch.setenv("PULUMI_CONFIG_SECRET_KEYS", json.dumps(["platform:dns"]))
    with pytest.raises(pulumi.RunError) as err:
        config.from_pulumi()
    message = str(err.value)
    assert "platform:local.ingressIp" in message and "platform:dns" in message
    assert "a-decrypted-secret-value" not in message
