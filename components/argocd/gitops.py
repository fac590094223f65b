"""The contract between the Pulumi program and Argo CD, defined next to the layout it serves.

Pulumi creates what Argo CD cannot create for itself: the in-cluster cluster Secret (labelled and
annotated with `cluster_secret_metadata`), the AppProjects and the two root ApplicationSets. Argo CD
then syncs `<path>/` of the Git repository (argocd-apps/README.md):

    <path>/apps/<app>/overlays/<environment>   one Application per app with an overlay for the env
    <path>/extras/<extra>                      one Application per extra the environment enables

The environment's values (domain, ClusterIssuer, ClusterSecretStore) travel on the cluster Secret's
annotations and reach each app as kustomize patches the ApplicationSet templates from them.

Everything here is pure data: no Pulumi imports, so tests build exactly what the component creates.
`expand` applies the generators to a checkout the way the ApplicationSet controller does.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from components import versions
from components.config import PlatformConfig

# The apps project may not deploy into these; the guardrails judge every other one as an app's.
from policy.rules.pod_security import PLATFORM_NAMESPACES, SERVER_TAINT_KEYS

ARGOCD_NAMESPACE = "argocd"
IN_CLUSTER_SERVER = "https://kubernetes.default.svc"
IN_CLUSTER_NAME = "in-cluster"
APPS_PROJECT = "apps"
EXTRAS_PROJECT = "platform-extras"
EXTRAS_NAMESPACE = "kube-system"
APPS_DIR = "apps"
PROJECTS_DIR = "projects"
APP_NAMESPACE_COMPONENT = "app-namespace"
"""The kustomize Component under <path>/projects/ every app gets: the platform's part of each app
namespace (its egress baseline), which the app's own folder cannot leave out."""
OVERLAYS_DIR = "overlays"
EXTRAS_DIR = "extras"
EXTRA_APP_PREFIX = "extra-"

SECRET_TYPE_LABEL = "argocd.argoproj.io/secret-type"
ENVIRONMENT_LABEL = "environment"
PRODUCTION_LABEL = "production"
SYNC_WAVE = "argocd.argoproj.io/sync-wave"
RESOURCES_FINALIZER = "resources-finalizer.argocd.argoproj.io"


# Annotation keys use underscores so templates can read them as {{.metadata.annotations.<key>}}.
_ANNOTATIONS = {
    "domain": "platform_domain",
    "cluster_issuer": "platform_cluster_issuer",
    "secret_store": "platform_secret_store",
    "vault_addr": "platform_vault_addr",
    "repo_url": "platform_repo_url",
    "revision": "platform_repo_revision",
    "path": "platform_repo_path",
}
# An extra's label is enable_<name>; label names stop at 63 characters.
_EXTRA_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,54}[a-z0-9])?$")


class LayoutError(ValueError):
    """The repository does not have the layout the root ApplicationSets expect."""


@dataclass(frozen=True)
class PlatformFacts:
    """What one environment tells its apps. Pulumi knows these; Argo CD reads them from the cluster
    Secret's labels and annotations (`cluster_secret_metadata`)."""

    environment: str
    """Selects the overlay: apps/<app>/overlays/<environment>."""
    domain: str
    """Apps get the host <app>.<domain>."""
    cluster_issuer: str
    """cert-manager ClusterIssuer that signs the apps' Ingress certificates."""
    secret_store: str
    """External Secrets ClusterSecretStore backed by Vault."""
    vault_addr: str
    repo_url: str
    revision: str
    path: str
    """Folder of the repository Argo CD syncs (argocd-apps)."""
    production: bool = False
    extras: tuple[str, ...] = ()
    """Folders under <path>/extras/ this environment enables; none by default."""

    def __post_init__(self) -> None:
        bad = [e for e in self.extras if not _EXTRA_NAME.match(e)]
        if bad:
            raise ValueError(
                f"extras {bad}: names are folder names under extras/ made of a-z, 0-9 "
                "and '-', at most 56 characters (they become the label enable_<name>)"
            )
        if len(set(self.extras)) != len(self.extras):
            raise ValueError(f"extras {list(self.extras)} lists a name twice")

    @classmethod
    def from_config(
        cls,
        cfg: PlatformConfig,
        *,
        domain: str,
        cluster_issuer: str,
        secret_store: str,
        vault_addr: str,
        extras: Iterable[str] = (),
    ) -> PlatformFacts:
        """The facts of a stack: its config plus what the other platform components decided."""
        return cls(
            environment=cfg.environment,
            domain=domain,
            cluster_issuer=cluster_issuer,
            secret_store=secret_store,
            vault_addr=vault_addr,
            repo_url=cfg.gitops.repo_url,
            revision=cfg.gitops.revision,
            path=cfg.gitops.path,
            production=cfg.production,
            extras=tuple(extras),
        )


def extra_label(extra: str) -> str:
    """The cluster Secret label that enables an extra (gitops-bridge's enable_<addon>)."""
    return f"enable_{extra}"


def cluster_secret_metadata(facts: PlatformFacts) -> dict[str, dict[str, str]]:
    """Labels and annotations of Argo CD's in-cluster cluster Secret: labels select, annotations
    carry values."""
    labels = {
        SECRET_TYPE_LABEL: "cluster",
        ENVIRONMENT_LABEL: facts.environment,
        PRODUCTION_LABEL: str(facts.production).lower(),
    }
    labels |= {extra_label(extra): "true" for extra in facts.extras}
    annotations = {key: getattr(facts, attr) for attr, key in _ANNOTATIONS.items()}
    return {"labels": labels, "annotations": annotations}


def _fact(attr: str) -> str:
    return f"{{{{.metadata.annotations.{_ANNOTATIONS[attr]}}}}}"


def _json_patch(*ops: tuple[str, str, str]) -> str:
    return json.dumps([{"op": op, "path": path, "value": value} for op, path, value in ops])


def _environment_patches(app: str) -> list[dict[str, Any]]:
    """Kustomize patches carrying the environment's values into every app (Argo CD appends them to
    the overlay's kustomization). The tls index makes a TLS-less Ingress fail to build."""
    host = f"{app}.{_fact('domain')}"
    return [
        {
            "target": {"group": "networking.k8s.io", "kind": "Ingress"},
            "patch": _json_patch(
                ("replace", "/spec/rules/0/host", host),
                ("replace", "/spec/tls/0/hosts/0", host),
                (
                    "replace",
                    "/metadata/annotations/cert-manager.io~1cluster-issuer",
                    _fact("cluster_issuer"),
                ),
            ),
        },
        {
            "target": {"group": "external-secrets.io", "kind": "ExternalSecret"},
            "patch": _json_patch(("replace", "/spec/secretStoreRef/name", _fact("secret_store"))),
        },
    ]


def _sync_policy(*, create_namespace: bool) -> dict[str, Any]:
    # Server-side apply lets controllers own the fields they default (ESO on ExternalSecrets);
    # ServerSideDiff on the template keeps those fields from showing as drift.
    options = ["ServerSideApply=true"]
    policy: dict[str, Any] = {
        "automated": {"prune": True, "selfHeal": True},
        # The first sync can race Vault or the ClusterSecretStore becoming ready.
        "retry": {"limit": 5, "backoff": {"duration": "10s", "factor": 2, "maxDuration": "3m"}},
    }
    if create_namespace:
        options.insert(0, "CreateNamespace=true")
        policy["managedNamespaceMetadata"] = {
            "labels": {
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": f"v{versions.kubernetes_minor()}",
            }
        }
    policy["syncOptions"] = options
    return policy


def _application_template(
    facts: PlatformFacts,
    *,
    name: str,
    project: str,
    namespace: str,
    create_namespace: bool,
    kustomize: dict[str, Any] | None = None,
) -> dict[str, Any]:
    source: dict[str, Any] = {
        "repoURL": facts.repo_url,
        "targetRevision": facts.revision,
        "path": "{{.path.path}}",
    }
    if kustomize:
        source["kustomize"] = kustomize
    return {
        "metadata": {
            "name": name,
            "annotations": {"argocd.argoproj.io/compare-options": "ServerSideDiff=true"},
            # Deleting the Application (or its ApplicationSet) deletes what it deployed.
            "finalizers": [RESOURCES_FINALIZER],
        },
        "spec": {
            "project": project,
            "source": source,
            "destination": {"server": IN_CLUSTER_SERVER, "namespace": namespace},
            "syncPolicy": _sync_policy(create_namespace=create_namespace),
        },
    }


def _application_set(
    name: str, generator: dict[str, Any], template: dict[str, Any]
) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "ApplicationSet",
        "metadata": {"name": name, "namespace": ARGOCD_NAMESPACE},
        "spec": {
            "goTemplate": True,
            "goTemplateOptions": ["missingkey=error"],
            "generators": [generator],
            "template": template,
        },
    }


def _git(facts: PlatformFacts, pattern: str) -> dict[str, Any]:
    return {
        "git": {
            "repoURL": facts.repo_url,
            "revision": facts.revision,
            "directories": [{"path": pattern}],
        }
    }


def apps_pattern(facts: PlatformFacts) -> str:
    """The git directories pattern of the apps: an app without this overlay is not deployed."""
    return f"{facts.path}/{APPS_DIR}/*/{OVERLAYS_DIR}/{facts.environment}"


def root_application_set(facts: PlatformFacts) -> dict[str, Any]:
    """The root ApplicationSet: every apps/<app>/overlays/<environment> becomes the Application
    <app>, deployed into the namespace <app> with the environment's values patched in."""
    app = f"{{{{index .path.segments {len(PurePosixPath(facts.path).parts) + 1}}}}}"
    clusters = {"clusters": {"selector": {"matchLabels": {ENVIRONMENT_LABEL: facts.environment}}}}
    generator = {"matrix": {"generators": [clusters, _git(facts, apps_pattern(facts))]}}
    # Argo CD resolves components from the overlay: <path>/apps/<app>/overlays/<environment>.
    component = f"../../../../{PROJECTS_DIR}/{APP_NAMESPACE_COMPONENT}"
    template = _application_template(
        facts,
        name=app,
        project=APPS_PROJECT,
        namespace=app,
        create_namespace=True,
        kustomize={
            "namespace": app,
            "components": [component],
            "patches": _environment_patches(app),
        },
    )
    return _application_set(APPS_PROJECT, generator, template)


def extras_application_set(facts: PlatformFacts) -> dict[str, Any]:
    """Platform extras: extras/<extra> becomes the Application extra-<extra> (in kube-system) when
    the cluster Secret carries the label enable_<extra>: "true"."""
    # The clusters generator comes second so its selector can be templated from the folder name.
    clusters = {
        "clusters": {
            "selector": {
                "matchLabels": {
                    ENVIRONMENT_LABEL: facts.environment,
                    extra_label("{{.path.basename}}"): "true",
                }
            }
        }
    }
    git = _git(facts, f"{facts.path}/{EXTRAS_DIR}/*")
    template = _application_template(
        facts,
        name=EXTRA_APP_PREFIX + "{{.path.basename}}",
        project=EXTRAS_PROJECT,
        namespace=EXTRAS_NAMESPACE,
        create_namespace=False,
    )
    return _application_set(EXTRAS_PROJECT, {"matrix": {"generators": [git, clusters]}}, template)


def _app_project(
    facts: PlatformFacts,
    name: str,
    description: str,
    destinations: list[dict[str, str]],
    cluster_kinds: list[dict[str, str]],
) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AppProject",
        # Pulumi creates projects before the ApplicationSets; the wave keeps that order for a root
        # that would sync them from Git instead.
        "metadata": {"name": name, "namespace": ARGOCD_NAMESPACE, "annotations": {SYNC_WAVE: "-2"}},
        "spec": {
            "description": description,
            "sourceRepos": [facts.repo_url],
            "destinations": destinations,
            # Empty denies every cluster-scoped kind.
            "clusterResourceWhitelist": cluster_kinds,
        },
    }


def app_project(facts: PlatformFacts) -> dict[str, Any]:
    """The project of apps/: this repository only, the in-cluster server, any namespace but the
    platform's, and no cluster-scoped kind but the Namespace that CreateNamespace=true creates."""
    denied = [{"server": IN_CLUSTER_SERVER, "namespace": f"!{ns}"} for ns in PLATFORM_NAMESPACES]
    return _app_project(
        facts,
        APPS_PROJECT,
        "Workloads from apps/: one namespace each, outside the platform's namespaces",
        [*denied, {"server": IN_CLUSTER_SERVER, "namespace": "*"}],
        [{"group": "", "kind": "Namespace"}],
    )


def extras_project(facts: PlatformFacts) -> dict[str, Any]:
    """The project of extras/: this repository only, kube-system only, no cluster-scoped kind."""
    return _app_project(
        facts,
        EXTRAS_PROJECT,
        "Cluster add-ons from extras/, enabled per environment on the cluster Secret",
        [{"server": IN_CLUSTER_SERVER, "namespace": EXTRAS_NAMESPACE}],
        [],
    )


APPS_OFF_SERVERS = "apps-off-servers"


def _cel_list(values: Iterable[str]) -> str:
    return "[" + ", ".join(json.dumps(v) for v in values) + "]"


def server_taint_admission() -> list[dict[str, Any]]:
    """A ValidatingAdmissionPolicy and its binding: the API server refuses a pod outside the
    platform's namespaces that tolerates the servers' taint (or every taint). The AppProject
    cannot look into pods, and the guardrail `apps-off-servers` judges only what CI sees; this
    holds for whatever reaches the cluster."""
    exact = [ns for ns in PLATFORM_NAMESPACES if not ns.endswith("*")]
    prefixes = [ns.removesuffix("*") for ns in PLATFORM_NAMESPACES if ns.endswith("*")]
    app_namespace = (
        f"!(request.namespace in {_cel_list(exact)}) && "
        f"!{_cel_list(prefixes)}.exists(p, request.namespace.startsWith(p))"
    )
    # A toleration matches the NoExecute taint when its effect is empty or NoExecute, and its key
    # is one of the taint keys, or empty with operator Exists (every taint).
    keeps_off = (
        "!has(object.spec.tolerations) || object.spec.tolerations.all(t, "
        "(has(t.effect) && t.effect != '' && t.effect != 'NoExecute') || "
        f"((has(t.key) && t.key != '') ? !(t.key in {_cel_list(SERVER_TAINT_KEYS)}) "
        ": !(has(t.operator) && t.operator == 'Exists')))"
    )
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": APPS_OFF_SERVERS},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": ["pods"],
                    }
                ]
            },
            "matchConditions": [{"name": "app-namespace", "expression": app_namespace}],
            "validations": [
                {
                    "expression": keeps_off,
                    "message": "pods outside the platform's namespaces may not tolerate the "
                    f"servers' taint ({', '.join(SERVER_TAINT_KEYS)}) or every taint: the "
                    "servers' instance role is the platform's (guardrail apps-off-servers)",
                }
            ],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": APPS_OFF_SERVERS},
        "spec": {"policyName": APPS_OFF_SERVERS, "validationActions": ["Deny"]},
    }
    return [policy, binding]


def root_objects(facts: PlatformFacts) -> list[dict[str, Any]]:
    """Every Argo CD object Pulumi creates besides the Secrets, in creation order."""
    return [
        app_project(facts),
        extras_project(facts),
        root_application_set(facts),
        extras_application_set(facts),
    ]


# -- what the ApplicationSet controller would generate -------------------------------------------


@dataclass(frozen=True)
class DiscoveredApp:
    """One Application the root ApplicationSets generate for a checkout."""

    application: Mapping[str, Any]

    @property
    def name(self) -> str:
        return self.application["metadata"]["name"]

    @property
    def namespace(self) -> str:
        return self.application["spec"]["destination"]["namespace"]

    @property
    def path(self) -> str:
        """Folder to build, relative to the repository root."""
        return self.application["spec"]["source"]["path"]

    @property
    def kustomize(self) -> Mapping[str, Any]:
        """spec.source.kustomize: the namespace and patches Argo CD adds to the build."""
        return self.application["spec"]["source"].get("kustomize", {})

    @property
    def patches(self) -> list[dict[str, Any]]:
        return list(self.kustomize.get("patches", []))


class TemplateError(ValueError):
    """A template uses a key the parameters lack (Argo CD's missingkey=error) or syntax that
    `render` does not implement."""


_ACTION = re.compile(r"{{(.*?)}}")


def _lookup(params: Mapping[str, Any], dotted: str) -> Any:
    value: Any = params
    for key in dotted.removeprefix(".").split("."):
        if not isinstance(value, Mapping) or key not in value:
            raise TemplateError(f"map has no entry for key {key!r} in {{{{{dotted}}}}}")
        value = value[key]
    return value


def _evaluate(action: str, params: Mapping[str, Any]) -> str:
    match action.split():
        case [field] if field.startswith("."):
            return str(_lookup(params, field))
        case ["index", field, key] if field.startswith(".") and key.isdigit():
            items = _lookup(params, field)
            if not isinstance(items, list) or int(key) >= len(items):
                raise TemplateError(f"index {key} out of range in {{{{{action}}}}}")
            return str(items[int(key)])
    raise TemplateError(f"unsupported template action {{{{{action}}}}}")


def render(value: Any, params: Mapping[str, Any]) -> Any:
    """Go-template rendering of every string and map key, as the ApplicationSet controller does
    with goTemplate: true; only the actions these templates use: {{.a.b}} and {{index .a N}}."""
    if isinstance(value, str):
        return _ACTION.sub(lambda m: _evaluate(m.group(1).strip(), params), value)
    if isinstance(value, list):
        return [render(v, params) for v in value]
    if isinstance(value, Mapping):
        return {render(k, params): render(v, params) for k, v in value.items()}
    return value


def _path_match(pattern: str, path: str) -> bool:
    """Go's path.Match (what the git directories generator uses): '*' stops at '/'."""
    if "[" in pattern or "\\" in pattern:
        raise TemplateError(f"directory pattern {pattern!r}: only '*' and '?' are emulated")
    regex = "".join("[^/]*" if c == "*" else "[^/]" if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, path) is not None


def _directories(checkout: Path) -> list[str]:
    """Every folder of the checkout as the repo server lists it: relative, '/'-separated, without
    folders whose name starts with '.'."""
    found = []
    for root, dirs, _ in os.walk(checkout):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(root, d).relative_to(checkout).as_posix() for d in dirs]
    return sorted(found)


def _generate(
    generator: Mapping[str, Any], cluster: Mapping[str, Mapping[str, str]], checkout: Path
) -> list[dict[str, Any]]:
    match generator:
        case {"matrix": {"generators": [first, second]}}:
            return [
                {**p1, **p2}
                for p1 in _generate(first, cluster, checkout)
                for p2 in _generate(render(second, p1), cluster, checkout)
            ]
        case {"clusters": {"selector": {"matchLabels": wanted}}}:
            labels = cluster["labels"]
            if any(labels.get(k) != v for k, v in wanted.items()):
                return []
            return [
                {
                    "name": IN_CLUSTER_NAME,
                    "server": IN_CLUSTER_SERVER,
                    "metadata": {
                        "labels": dict(labels),
                        "annotations": dict(cluster["annotations"]),
                    },
                }
            ]
        case {"git": {"directories": items}}:
            include = [i["path"] for i in items if not i.get("exclude")]
            exclude = [i["path"] for i in items if i.get("exclude")]
            return [
                {"path": {"path": d, "basename": PurePosixPath(d).name, "segments": d.split("/")}}
                for d in _directories(checkout)
                if any(_path_match(p, d) for p in include)
                and not any(_path_match(p, d) for p in exclude)
            ]
    raise TemplateError(f"generator not emulated: {sorted(generator)}")


def expand_application_sets(
    application_sets: Sequence[Mapping[str, Any]],
    cluster: Mapping[str, Mapping[str, str]],
    checkout: str | os.PathLike[str],
) -> list[DiscoveredApp]:
    """The Applications that `application_sets` generate for `checkout` when the in-cluster
    cluster Secret has the metadata `cluster` ({"labels": ..., "annotations": ...})."""
    apps = []
    for appset in application_sets:
        spec = appset["spec"]
        if spec.get("goTemplate") is not True:
            raise TemplateError(
                f"ApplicationSet {appset['metadata']['name']}: only goTemplate is emulated"
            )
        for generator in spec["generators"]:
            for params in _generate(generator, cluster, Path(checkout)):
                rendered = render(spec["template"], params)
                metadata = {**rendered["metadata"], "namespace": appset["metadata"]["namespace"]}
                apps.append(
                    DiscoveredApp(
                        {
                            "apiVersion": "argoproj.io/v1alpha1",
                            "kind": "Application",
                            "metadata": metadata,
                            "spec": rendered["spec"],
                        }
                    )
                )
    names = [a.name for a in apps]
    if len(set(names)) != len(names):
        raise LayoutError(f"two generated Applications share a name: {sorted(names)}")
    return apps


def expand(facts: PlatformFacts, repo_checkout_dir: str | os.PathLike[str]) -> list[DiscoveredApp]:
    """The Applications Argo CD generates for `facts` from a checkout of facts.revision.

    Where Argo CD would quietly generate nothing, this raises LayoutError: when <path>/apps does
    not exist, or when an enabled extra has no folder.
    """
    checkout = Path(repo_checkout_dir)
    if not (checkout / facts.path / APPS_DIR).is_dir():
        raise LayoutError(
            f"{facts.path}/{APPS_DIR} does not exist in {checkout}: "
            f"platform:gitops.path {facts.path!r} points at no argocd-apps folder"
        )
    apps = expand_application_sets(
        [root_application_set(facts), extras_application_set(facts)],
        cluster_secret_metadata(facts),
        checkout,
    )
    found = {
        PurePosixPath(a.path).name
        for a in apps
        if a.application["spec"]["project"] == EXTRAS_PROJECT
    }
    missing = [e for e in facts.extras if e not in found]
    if missing:
        raise LayoutError(
            f"extras {missing} are enabled but {facts.path}/{EXTRAS_DIR}/ has no such folder"
        )
    return apps


def missing_overlays(
    repo_dir: str | os.PathLike[str], path: str, environments: Iterable[str]
) -> list[str]:
    """Overlays an app lacks, as '<app>/overlays/<environment>'.

    Argo CD skips an app without an overlay for the environment, which is right for an app meant
    for some environments only; for the environments every app must run in (the shipped stacks'),
    a missing overlay is a mistake this reports.
    """
    apps = Path(repo_dir, path, APPS_DIR)
    return [
        f"{app.name}/{OVERLAYS_DIR}/{env}"
        for app in sorted(p for p in apps.iterdir() if p.is_dir())
        for env in environments
        if not (app / OVERLAYS_DIR / env / "kustomization.yaml").is_file()
    ]
