"""The one version matrix of the platform.

Every pinned version lives here so an upgrade is one reviewed diff. Upgrade order
(docs/operations.md):
Rancher first (it bounds the Kubernetes minor), then K3s within Rancher's range, then cert-manager
(it supports only the two newest minors), then Vault/OpenBao, External Secrets and Argo CD.
tests/test_versions.py checks that the pins agree with each other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class ChartPin:
    """A Helm chart pinned to one version, with the Kubernetes minors it supports."""

    chart: str
    repo: str
    version: str
    kube_min: str
    """Lowest Kubernetes minor (``"1.33"``) the chart supports."""
    kube_max: str
    """Highest Kubernetes minor the chart supports."""
    sha256: str
    """Of the archive this project renders and tests (`archive`, packaged from the release tag)."""
    app_version: str = ""
    upstream_sha256: str = ""
    """Of the archive the chart repository serves, once recorded. Until then `make charts` takes
    the repository's archive on the sha256 its index.yaml lists, and prints it to pin here."""

    @property
    def accepted(self) -> frozenset[str]:
        """The archives `make charts` keeps without asking the repository's index."""
        return frozenset(filter(None, (self.sha256, self.upstream_sha256)))

    @property
    def archive(self) -> str:
        """The packaged chart's file name, as `helm pull` and `helm package` write it."""
        return f"{self.chart}-{self.version}.tgz"


K3S_VERSION = "v1.34.10+k3s1"
"""K3s release installed on every node (INSTALL_K3S_VERSION)."""

K3S_VERSION_RE = re.compile(r"^v1\.(?P<minor>\d+)\.(?P<patch>\d+)\+k3s(?P<build>\d+)$")

# Every file a node downloads at boot is checked against these before it runs.
# K3s binaries: the release's sha256sum-amd64.txt and sha256sum-arm64.txt (`k3s`, `k3s-arm64`).
K3S_BINARY_SHA256: dict[str, dict[str, str]] = {
    "v1.34.10+k3s1": {
        "amd64": "e63a3511b2603fd1436a1ea8d228348a3b47334b45024801d41a8c0e2d22e8c4",
        "arm64": "e96eb8b095600cb790f776ae3c619d266ad83a3c3d7b56166f8f2605ca898d65",
    },
}
# install.sh does not depend on the release it installs (the binary is downloaded and verified
# first, then the script only writes the service), so it is pinned to one commit and to the
# sha256 that the repository's install.sh.sha256sum records at that commit.
K3S_INSTALL_SCRIPT_COMMIT = "019b0afdd830e36f5e4b7a5b237e6a4339e6a6be"
K3S_INSTALL_SCRIPT_SHA256 = "68ae766b4c4fd2c8032f712cdd346c8f9d1ae60eaeb4736a1155effda44ea23d"
ECR_CREDENTIAL_PROVIDER_VERSION = "v1.34.0"
"""cloud-provider-aws release whose ecr-credential-provider matches the pinned Kubernetes minor."""
ECR_CREDENTIAL_PROVIDER_SHA256: dict[str, str] = {}
"""Per GOARCH; empty until recorded. A missing entry makes the node verify the binary against the
`.sha256` file the release publishes beside it (same origin, so weaker than a pin here)."""

# Rancher's chart refuses to install above its kubeVersion bound; 2.13 supports 1.32 to 1.34.
RANCHER = ChartPin(
    chart="rancher",
    repo="https://releases.rancher.com/server-charts/stable",
    version="2.13.3",
    kube_min="1.32",
    kube_max="1.34",
    sha256="1551794c2c6ccfca54fffb975caadf70d1d0828183f7b35298bec3807e167171",
    app_version="v2.13.3",
)
# cert-manager supports only its two newest minors; 1.21 covers Kubernetes 1.33 to 1.36.
CERT_MANAGER = ChartPin(
    chart="cert-manager",
    repo="https://charts.jetstack.io",
    version="v1.21.1",
    kube_min="1.33",
    kube_max="1.36",
    sha256="01924f1b3facef3d3d9e350eb150a7a03d144088cf553e91e70149ddad906650",
    app_version="v1.21.1",
)
VAULT = ChartPin(
    chart="vault",
    repo="https://helm.releases.hashicorp.com",
    version="0.34.1",
    kube_min="1.20",
    kube_max="1.36",
    sha256="c18b98c776a1ef4551403b972b75ef3b9ec629750370b55c608619c73dae9c3d",
    app_version="2.0.4",
)
OPENBAO = ChartPin(
    chart="openbao",
    repo="https://openbao.github.io/openbao-helm",
    version="0.29.2",
    kube_min="1.30",
    kube_max="1.36",
    sha256="746dacfa4915de2476a6ca94f0ac1f9c75e9b6da5c97ecfc69b0e54923503269",
    app_version="v2.6.2",
)
EXTERNAL_SECRETS = ChartPin(
    chart="external-secrets",
    repo="https://charts.external-secrets.io",
    version="2.9.0",
    kube_min="1.32",
    kube_max="1.36",
    sha256="e96d3d713a9d426724c7816c80b9de6360e6fee0c71c8cbbda5f645bf4bea5a4",
    app_version="v2.9.0",
)
ARGO_CD = ChartPin(
    chart="argo-cd",
    repo="https://argoproj.github.io/argo-helm",
    version="10.1.1",
    kube_min="1.31",
    kube_max="1.36",
    sha256="556464ee08dc48dd80e6fdf415b6f2e5a5aaba49f30a5649693f05e3e16f4b26",
    app_version="v3.4.4",
)

# The real engine of `make e2e` (e2e/tools/): the CLI is the oldest release the module proxy serves
# at or above the `pulumi` SDK pin (the CLI is backward compatible with older SDKs), and the
# Kubernetes provider is the release the `pulumi-kubernetes` SDK pin names, so the engine loads
# the plugin the SDK asks for. tests/test_versions.py checks both against requirements.txt and
# the go.mod files.
PULUMI_CLI_VERSION = "3.274.1"
KUBERNETES_PROVIDER_VERSION = "4.25.0"
KUBERNETES_PROVIDER_MODULE_VERSION = "v4.0.0-20260115033456-f47bc2d6f199"
"""The provider module has no tags of its own: the pseudo-version of the v4.25.0 release commit."""
KWOK_VERSION = "v0.8.0"


def kubernetes_release() -> str:
    """``"v1.34.10"``: the Kubernetes release inside the pinned K3s one (the e2e control plane)."""
    return K3S_VERSION.partition("+")[0]


CHARTS: dict[str, ChartPin] = {
    "rancher": RANCHER,
    "cert-manager": CERT_MANAGER,
    "vault": VAULT,
    "openbao": OPENBAO,
    "external-secrets": EXTERNAL_SECRETS,
    "argo-cd": ARGO_CD,
}


def minor_tuple(minor: str) -> tuple[int, int]:
    major, _, rest = minor.partition(".")
    return int(major), int(rest)


def k3s_minor(version: str) -> str | None:
    """``"v1.34.10+k3s1"`` -> ``"1.34"``; None when the string is not a K3s release."""
    match = K3S_VERSION_RE.match(version)
    return f"1.{match['minor']}" if match else None


def kubernetes_minor() -> str:
    """The Kubernetes minor of the pinned K3s release (used for schema validation)."""
    minor = k3s_minor(K3S_VERSION)
    assert minor, K3S_VERSION
    return minor


def supported_k3s_minors() -> tuple[str, str]:
    """The K3s minors that every pinned chart supports (Rancher's range is the tightest)."""
    low = max((c.kube_min for c in CHARTS.values()), key=minor_tuple)
    high = min((c.kube_max for c in CHARTS.values()), key=minor_tuple)
    return low, high
