"""Platform rules: which ACME server a stack uses, pinned Helm charts, Vault auto-unseal.

Helm charts arrive three ways: Pulumi `helm.sh/v3:Release` and `helm.sh/v4:Chart` resources
(`chart`, `version`, `values`), Argo CD Applications / ApplicationSets (`source.chart`,
`targetRevision`, `helm.valuesObject` or `helm.values`), and kustomize `helmCharts`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

import yaml
from pydantic import Field

from policy.model import UNKNOWN, Item, as_dict, as_list, dig
from policy.rules.base import Enforcement, Params, Rule, StackInfo, Violation

RELEASE = "kubernetes:helm.sh/v3:Release"
CHART_V4 = "kubernetes:helm.sh/v4:Chart"
LETS_ENCRYPT_PRODUCTION = "https://acme-v02.api.letsencrypt.org/directory"

# Helm accepts constraints (^1.2, ~1, >=1, 1.2, 1.x, *) wherever it takes a version; only a full
# semantic version names one chart build.
EXACT_VERSION_RE = re.compile(r"^v?\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$")
SEAL_RE = re.compile(r'^\s*seal\s+"?([\w-]+)"?\s*\{', re.MULTILINE)


# --- acme-server-per-stack -----------------------------------------------------------------------


class AcmeParams(Params):
    production_servers: list[str] = Field(
        default_factory=lambda: [LETS_ENCRYPT_PRODUCTION], min_length=1
    )
    """ACME directories that issue publicly trusted certificates."""


def _directory(url: str) -> str:
    return url.strip().rstrip("/").lower()


def check_acme_server(item: Item, p: AcmeParams, stack: StackInfo) -> Iterator[Violation]:
    server = dig(item.props, "spec", "acme", "server")
    if not isinstance(server, str):
        return
    production = _directory(server) in {_directory(url) for url in p.production_servers}
    if stack.production and not production:
        yield Violation(
            item,
            f"spec.acme.server is {server} on a production stack: browsers do not trust its "
            f"certificates; use {p.production_servers[0]}",
        )
    elif not stack.production and production:
        yield Violation(
            item,
            f"spec.acme.server is {server} on a non-production stack: test stacks burn the "
            "production rate limits (50 certificates per domain per week); use the staging "
            "directory",
        )


# --- helm-chart-pinned ---------------------------------------------------------------------------


def version_problem(version: Any) -> str | None:
    """Why a chart version does not pin one build, or None when it does (or isn't known yet)."""
    if version is UNKNOWN:
        return None
    if version in (None, ""):
        return "no version, so each install takes whatever the repository serves that day"
    if not isinstance(version, str) or not EXACT_VERSION_RE.match(version.strip()):
        return f"version {version!r}, a range rather than one release"
    return None


def _local_chart(chart: Any) -> bool:
    """A chart path inside this repository is pinned by the Git revision itself."""
    return isinstance(chart, str) and chart.startswith(("./", "../", "/"))


def _argo_sources(item: Item) -> list[Mapping[str, Any]]:
    spec = as_dict(item.props.get("spec"))
    if item.kind == "ApplicationSet":
        spec = as_dict(dig(spec, "template", "spec"))
    return [as_dict(s) for s in [spec.get("source"), *as_list(spec.get("sources"))] if s]


def _yaml_values(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return None  # Argo CD reports unparsable values itself; no rule here can judge them


def helm_charts(item: Item) -> Iterator[tuple[str, Any, Any]]:
    """(chart, version, values) for every Helm chart the item installs.

    Values that come from files (valueYamlFiles, valueFiles, valuesFile) are not visible here, so
    such charts report their values as UNKNOWN.
    """
    if item.type in (RELEASE, CHART_V4):
        chart = item.props.get("chart")
        if not _local_chart(chart):
            values = UNKNOWN if item.props.get("valueYamlFiles") else item.props.get("values")
            yield str(chart), item.props.get("version"), values
    elif item.kind in ("Application", "ApplicationSet"):
        for source in _argo_sources(item):
            if "chart" in source:
                helm = as_dict(source.get("helm"))
                values = helm.get("valuesObject")
                if values is None and isinstance(helm.get("values"), str):
                    values = _yaml_values(helm["values"])
                if helm.get("valueFiles"):
                    values = UNKNOWN
                yield str(source["chart"]), source.get("targetRevision"), values
    elif item.kind == "Kustomization":
        for chart in as_list(item.props.get("helmCharts")):
            values = UNKNOWN if dig(chart, "valuesFile") else dig(chart, "valuesInline")
            yield str(dig(chart, "name")), dig(chart, "version"), values


def check_chart_pinned(item: Item, _: Params, __: StackInfo) -> Iterator[Violation]:
    for chart, version, _values in helm_charts(item):
        if isinstance(version, str) and "{{" in version:
            continue  # an ApplicationSet template fills it in per cluster
        problem = version_problem(version)
        if problem:
            yield Violation(
                item,
                f"Helm chart {chart} has {problem}: a new upstream release changes the cluster "
                "without a reviewed diff",
            )


# --- vault-auto-unseal ---------------------------------------------------------------------------


class SealParams(Params):
    seal_types: list[str] = Field(default_factory=lambda: ["awskms"], min_length=1)
    """Seal stanzas that unseal Vault/OpenBao without a human."""


VAULT_CHARTS = frozenset({"vault", "openbao"})


def _rendered_config_path(server: Mapping[str, Any]) -> tuple[str, ...]:
    """The one server config block the charts render: `ha.raft.config` in HA with Raft,
    `ha.config` in HA otherwise, `standalone.config` without HA (the charts' defaults)."""
    ha = as_dict(server.get("ha"))
    if ha.get("enabled") is True:
        return (
            ("ha", "raft", "config") if as_dict(ha.get("raft")).get("enabled") else ("ha", "config")
        )
    return ("standalone", "config")


def seal_types(values: Any) -> set[str] | None:
    """Seal types the chart values configure; None when a value is not known yet."""
    server = as_dict(dig(values, "server"))
    found: set[str] = set()
    environment = as_dict(server.get("extraEnvironmentVars"))
    for variable in ("VAULT_SEAL_TYPE", "BAO_SEAL_TYPE"):
        value = environment.get(variable)
        if value is UNKNOWN:
            return None
        if isinstance(value, str):
            found.add(value)
    if UNKNOWN in (dig(server, "ha", "enabled"), dig(server, "ha", "raft", "enabled")):
        return None
    # A seal in a block the chart does not render configures nothing.
    config = dig(server, *_rendered_config_path(server))
    if config is UNKNOWN:
        return None
    if isinstance(config, str):
        found.update(SEAL_RE.findall(config))
    elif isinstance(config, Mapping):
        # The charts also accept the server config as an object (HCL's JSON form).
        seal = config.get("seal")
        for stanza in seal if isinstance(seal, list) else [seal]:
            found.update(as_dict(stanza))
    return found


def check_vault_unseal(item: Item, p: SealParams, stack: StackInfo) -> Iterator[Violation]:
    if not stack.aws:
        return
    for chart, _version, values in helm_charts(item):
        if chart.rsplit("/", 1)[-1] not in VAULT_CHARTS or values is UNKNOWN:
            continue
        if dig(values, "server", "dev", "enabled") is True:
            yield Violation(
                item, f"{chart} runs in dev mode: in-memory storage, root token, no seal"
            )
            continue
        found = seal_types(values)
        if found is None or found & set(p.seal_types):
            continue
        wanted = " or ".join(f'seal "{seal}"' for seal in p.seal_types)
        yield Violation(
            item,
            f"{chart} values configure no {wanted} (server.ha.raft.config, "
            "server.standalone.config or server.extraEnvironmentVars.VAULT_SEAL_TYPE / "
            "BAO_SEAL_TYPE): every restarted pod stays sealed until someone enters unseal keys",
        )


CHART_TARGETS = frozenset({RELEASE, CHART_V4, "Application", "ApplicationSet", "Kustomization"})

RULES = (
    Rule(
        id="acme-server-per-stack",
        description="Production stacks issue certificates from the production ACME server; other "
        "stacks never do.",
        enforcement=Enforcement.MANDATORY,
        remediation="Set platform:tls.acmeServer (or the ClusterIssuer's spec.acme.server) to "
        "production on production stacks and staging elsewhere.",
        check=check_acme_server,
        targets=frozenset({"ClusterIssuer", "Issuer"}),
        params=AcmeParams,
    ),
    Rule(
        id="helm-chart-pinned",
        description="Every Helm chart install pins one exact chart version.",
        enforcement=Enforcement.MANDATORY,
        remediation="Set version (Pulumi Release/Chart), targetRevision (Argo CD) or version "
        "(kustomize helmCharts) to an exact release such as 1.21.1, kept in "
        "components/versions.py.",
        check=check_chart_pinned,
        targets=CHART_TARGETS,
    ),
    Rule(
        id="vault-auto-unseal",
        description="Vault/OpenBao on AWS stacks configures an auto-unseal seal (awskms).",
        enforcement=Enforcement.MANDATORY,
        remediation='Add seal "awskms" { region = ..., kms_key_id = ... } to server.ha.raft.config '
        "(or server.standalone.config) in the chart values.",
        check=check_vault_unseal,
        targets=frozenset({RELEASE, CHART_V4, "Application", "ApplicationSet"}),
        params=SealParams,
    ),
)
