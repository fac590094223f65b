"""The version matrix is consistent, and config validation follows it."""

from __future__ import annotations

import re

import pytest
import yaml

from components import config, versions
from tests.conftest import REPO, require_data


def test_k3s_is_within_every_chart_range():
    minor = versions.kubernetes_minor()
    low, high = versions.supported_k3s_minors()
    assert versions.minor_tuple(low) <= versions.minor_tuple(minor) <= versions.minor_tuple(high)


def test_rancher_range_is_the_tightest_upper_bound():
    _, high = versions.supported_k3s_minors()
    assert high == versions.RANCHER.kube_max


@pytest.mark.parametrize("name", sorted(versions.CHARTS))
def test_chart_pins_are_exact(name):
    pin = versions.CHARTS[name]
    assert pin.version and not any(c in pin.version for c in "^~*x><=")
    assert pin.repo.startswith("https://")


@pytest.mark.parametrize(
    "version,ok",
    [
        (versions.K3S_VERSION, True),
        ("v1.35.0+k3s1", False),
        ("v1.31.1+k3s1", False),
    ],
)
def test_config_follows_rancher_range(version, ok):
    raw = yaml.safe_load((REPO / "stacks/Pulumi.dev.yaml").read_text())["config"]
    raw["platform:cluster"] = {**raw["platform:cluster"], "k3sVersion": version}
    if ok:
        assert config.parse(raw).cluster.k3s_version == version
    else:
        with pytest.raises(config.ConfigError, match="platform:cluster.k3sVersion"):
            config.parse(raw)


def test_every_boot_download_has_a_pinned_digest():
    assert versions.K3S_VERSION in versions.K3S_BINARY_SHA256
    digest = re.compile(r"^[0-9a-f]{64}$")
    for release, pins in versions.K3S_BINARY_SHA256.items():
        assert versions.k3s_minor(release), release
        assert set(pins) == {"amd64", "arm64"}, release
        assert all(digest.match(d) for d in pins.values()), release
    assert digest.match(versions.K3S_INSTALL_SCRIPT_SHA256)
    assert re.match(r"^[0-9a-f]{40}$", versions.K3S_INSTALL_SCRIPT_COMMIT)
    assert all(digest.match(d) for d in versions.ECR_CREDENTIAL_PROVIDER_SHA256.values())


# cert-manager's and OpenBao's copies come from development branches (version 0.0.0 or ahead).
@pytest.mark.parametrize("name", ["vault", "argo-cd"])
def test_pins_match_the_upstream_chart_metadata(name):
    chart = yaml.safe_load(require_data("chart-schemas", name, "Chart.yaml").read_text())
    pin = versions.CHARTS[name]
    assert chart["version"].lstrip("v") == pin.version.lstrip("v")
    assert chart["appVersion"].lstrip("v") == pin.app_version.lstrip("v")


def test_rancher_upstream_allows_our_kubernetes():
    text = require_data("chart-schemas", "rancher", "Chart.yaml").read_text()
    match = re.search(r"^kubeVersion: < (\d+\.\d+)\.\d+-0$", text, re.MULTILINE)
    assert match, "Rancher's Chart.yaml states an upper kubeVersion bound"
    assert versions.minor_tuple(versions.kubernetes_minor()) < versions.minor_tuple(match[1])
