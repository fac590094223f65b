"""Pulumi dynamic resource `VaultBootstrap`: runs `bootstrap()` against Vault in the cluster.

Vault is reached through the Kubernetes API server's service proxy with the admin client
certificate, so the deployment needs neither a port-forward nor a public Vault endpoint. The root
token and the recovery/unseal keys become secret outputs of the resource. From the moment Vault
answers the init request until Pulumi state holds them, they are also kept, encrypted, in a Secret
beside Vault (`init_store.py`), so no interruption of `pulumi up` can lose them.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pulumi
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    CreateResult,
    DiffResult,
    ResourceProvider,
    UpdateResult,
)

from components.dynamic import is_unknown
from components.vault.bootstrap import (
    K8S_NAME_RE,
    SECRET_OUTPUTS,
    BootstrapError,
    BootstrapResult,
    BootstrapSpec,
    SpecError,
    bootstrap,
    read_seal_status,
    refuse_foreign_answers,
    wait_for_api,
)
from components.vault.init_store import INIT_SECRET, KubernetesSecretStore

if TYPE_CHECKING:
    import hvac

DEFAULT_WAIT_TIMEOUT = 600.0
"""Seconds to wait for Vault's API through the proxy: pods may still be scheduling."""
REQUEST_TIMEOUT = 30
"""Seconds one HTTP request to Vault may take."""
OUTPUTS = (*SECRET_OUTPUTS, *BootstrapResult.PUBLIC_OUTPUTS, "spec", "converged", "error")
CONNECTION = ("base_url", "ca_pem", "client_cert_pem", "client_key_pem", "init_secret")
"""Inputs that say how to reach Vault and the Kubernetes API; they change nothing in Vault."""
"""Output properties; `spec` has the token reviewer JWT replaced by its digest."""


def proxy_url(
    api_url: str,
    namespace: str,
    name: str,
    port: int = 8200,
    scheme: str = "https",
    kind: str = "services",
) -> str:
    """The Kubernetes API server's proxy URL for a service or pod port; Vault's API lives under it.

    `https://k3s:6443` + `vault`/`vault` ->
    `https://k3s:6443/api/v1/namespaces/vault/services/https:vault:8200/proxy`;
    with `kind="pods"` and `vault-0`, the same path under `pods/`.
    """
    if not re.match(r"^https?://[^/?#\s]+(/[^?#\s]*)?$", api_url):
        raise ValueError(f"api_url {api_url!r} must be an http(s) URL without query or fragment")
    if kind not in ("services", "pods"):
        raise ValueError(f"kind {kind!r} must be services or pods")
    for what, value in (("namespace", namespace), (kind[:-1], name)):
        if not K8S_NAME_RE.match(value):
            raise ValueError(f"{what} {value!r} is not a Kubernetes object name (DNS label)")
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is not a TCP port")
    if scheme not in ("http", "https"):
        raise ValueError(f"scheme {scheme!r} must be http or https")
    base = api_url.rstrip("/")
    return f"{base}/api/v1/namespaces/{namespace}/{kind}/{scheme}:{name}:{port}/proxy"


@contextlib.contextmanager
def pem_files(
    ca_pem: str | None, client_cert_pem: str | None, client_key_pem: str | None
) -> Iterator[tuple[str | bool, tuple[str, str] | None]]:
    """Yield requests' (`verify`, `cert`) backed by 0600 files that are removed on exit.

    requests reads certificates only from files; a private directory keeps the key away from
    other users for the few seconds it exists, and leaving the block removes it even on errors.
    """
    with tempfile.TemporaryDirectory(prefix="vault-bootstrap-") as directory:

        def write(name: str, text: str) -> str:
            path = os.path.join(directory, name)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(text)
            return path

        verify: str | bool = write("ca.pem", ca_pem) if ca_pem else True
        cert = None
        if client_cert_pem and client_key_pem:
            cert = (write("client.pem", client_cert_pem), write("client-key.pem", client_key_pem))
        yield verify, cert


def _report(message: str) -> None:
    # The provider process has no engine connection; pulumi.log then writes to stderr, which the
    # engine shows with the resource.
    pulumi.log.info(f"vault bootstrap: {message}")


def _comparable_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec as stored in outputs: the token reviewer JWT replaced by its digest."""
    kube = spec.get("kubernetes")
    if not kube or not kube.get("token_reviewer_jwt"):
        return spec
    digest = hashlib.sha256(kube["token_reviewer_jwt"].encode()).hexdigest()
    return spec | {"kubernetes": kube | {"token_reviewer_jwt": f"sha256:{digest}"}}


SEAL_CHECK_TIMEOUT = 5
"""Seconds a diff waits for Vault or the API server before it assumes there is nothing to do."""


@contextlib.contextmanager
def _connection(
    props: dict[str, Any], timeout: float
) -> Iterator[tuple[hvac.Client, KubernetesSecretStore]]:
    """A Vault client and the init store of `props`, with TLS files that live for the block."""
    import hvac

    tls = (props.get("ca_pem"), props.get("client_cert_pem"), props.get("client_key_pem"))
    where = props["init_secret"]
    with pem_files(*tls) as (verify, cert):
        client = hvac.Client(
            url=props["base_url"], token="", verify=verify, cert=cert, timeout=timeout
        )
        store = KubernetesSecretStore(
            where["api_url"],
            where["namespace"],
            where["statefulset"],
            name=where.get("name", INIT_SECRET),
            client_key_pem=props.get("client_key_pem") or "",
            verify=verify,
            cert=cert,
            timeout=timeout,
        )
        yield refuse_foreign_answers(client), store


def _known_connection(props: dict[str, Any]) -> bool:
    """Whether every connection input is known (not during a preview that creates them)."""
    where = props.get("init_secret")
    if any(is_unknown(props.get(key)) for key in CONNECTION) or not isinstance(where, dict):
        return False
    return bool(props.get("base_url")) and not any(is_unknown(v) for v in where.values())


def _pending(store: KubernetesSecretStore, olds: dict[str, Any]) -> bool:
    """Whether the store holds an init record that state lacks (then an update must adopt it).

    A record whose answer state already holds is deleted here: `olds` is saved state, so this is
    the first moment the copy is provably redundant, and a converged stack has no update to do it.
    """
    record = store.load()
    if record is None:
        return False
    if record.answer is not None and record.answer.root_token == olds.get("root_token"):
        store.delete()
        _report(f"removed {store.where}: Pulumi state holds the init answer")
        return False
    return True


def _pending_or_sealed(props: dict[str, Any], olds: dict[str, Any], shamir: bool) -> bool:
    """Whether Vault needs an update though the spec is unchanged (False when it cannot be asked).

    A Shamir-sealed server seals itself on every restart and only an update unseals it.
    """
    import requests

    if not _known_connection(props):
        return False
    with _connection(props, SEAL_CHECK_TIMEOUT) as (client, store):
        try:
            return _pending(store, olds) or (shamir and bool(read_seal_status(client)["sealed"]))
        except (BootstrapError, requests.RequestException) as exc:
            _report(f"could not ask Vault or the API server ({exc}); an `up` once they answer acts")
            return False


class VaultBootstrapProvider(ResourceProvider):
    """Create/update run `bootstrap()`; delete leaves Vault alone (it cannot be un-initialised).

    Inputs: `base_url` (Vault API root: the service proxy URL), `ca_pem` (verifies the endpoint),
    `client_cert_pem`/`client_key_pem` (client certificate), `init_secret` (where the init answer
    is kept until state holds it: `api_url` of the Kubernetes API, `namespace`, `statefulset` of
    Vault, optional Secret `name`), `spec` (`BootstrapSpec.to_dict()`), `wait_timeout` (seconds
    for the API to answer).
    """

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = []

        def known(key: str) -> Any:
            value = news.get(key)
            return None if is_unknown(value) else value

        base_url = known("base_url")
        if base_url is not None and not str(base_url).startswith(("https://", "http://")):
            failures.append(CheckFailure("base_url", f"{base_url!r} is not an http(s) URL"))
        if "base_url" not in news:
            failures.append(CheckFailure("base_url", "required"))
        if bool(news.get("client_cert_pem")) != bool(news.get("client_key_pem")):
            failures.append(
                CheckFailure("client_cert_pem", "client_cert_pem and client_key_pem go together")
            )
        failures += _init_secret_failures(news.get("init_secret"))
        try:
            BootstrapSpec.from_dict(news["spec"])
        except KeyError:
            failures.append(CheckFailure("spec", "required"))
        except SpecError as exc:
            failures += [CheckFailure("spec", problem) for problem in exc.problems]
        timeout = news.get("wait_timeout", DEFAULT_WAIT_TIMEOUT)
        if not isinstance(timeout, int | float) or timeout <= 0:
            failures.append(CheckFailure("wait_timeout", f"{timeout!r} is not a positive number"))
        return CheckResult(news, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        # Connection inputs (a re-minted client certificate, a new endpoint) change nothing in
        # Vault; a run that stopped early is finished by an update, and so is an init answer that
        # only the init Secret holds. Otherwise ask Vault, so a running one shows no change.
        changed = _comparable_spec(news.get("spec") or {}) != olds.get("spec")
        unfinished = olds.get("converged") is False
        shamir = (news.get("spec") or {}).get("seal") == "shamir"
        pending = not (changed or unfinished) and _pending_or_sealed(news, olds, shamir)
        return DiffResult(
            changes=changed or unfinished or pending,
            replaces=[],
            delete_before_replace=False,
        )

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(id_=uuid.uuid4().hex, outs=self._run(props, previous_outputs=None))

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs=self._run(news, previous_outputs=olds))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        _report("the resource leaves Vault as it is; its root token and keys leave Pulumi state")

    def _run(
        self, props: dict[str, Any], previous_outputs: dict[str, Any] | None
    ) -> dict[str, Any]:
        spec = BootstrapSpec.from_dict(props["spec"])
        previous = BootstrapResult.from_outputs(previous_outputs) if previous_outputs else None
        timeout = float(props.get("wait_timeout", DEFAULT_WAIT_TIMEOUT))
        with _connection(props, REQUEST_TIMEOUT) as (client, store):
            wait_for_api(client, timeout=timeout, progress=_report, report_every=15.0)
            try:
                result = bootstrap(
                    client, spec, previous, progress=_report, timeout=timeout, store=store
                )
                error = ""
            except BootstrapError as exc:
                # Raising would drop the new root token and keys with the failed operation; keep
                # them as outputs instead, and let diff schedule an update to finish the rest.
                if exc.partial is None:
                    raise
                result, error = exc.partial, str(exc)
                _report(
                    f"stopped with credentials Pulumi state lacks; an update continues: {error}"
                )
        return {
            "spec": _comparable_spec(props["spec"]),
            "converged": not error,
            "error": error,
            **result.to_outputs(),
        }


def _init_secret_failures(where: Any) -> list[CheckFailure]:
    if is_unknown(where):
        return []
    if not isinstance(where, dict):
        return [CheckFailure("init_secret", "required: {api_url, namespace, statefulset}")]
    failures = []
    api_url = where.get("api_url")
    if not is_unknown(api_url) and not str(api_url).startswith(("https://", "http://")):
        failures.append(CheckFailure("init_secret", f"api_url {api_url!r} is not an http(s) URL"))
    for key in ("namespace", "statefulset", "name"):
        value = where.get(key, INIT_SECRET)
        if not is_unknown(value) and not K8S_NAME_RE.match(str(value)):
            failures.append(
                CheckFailure("init_secret", f"{key} {value!r} is not a Kubernetes object name")
            )
    return failures


def _fail_unless_converged(args: list[Any]) -> None:
    converged, error = args
    if converged is False:
        raise RuntimeError(
            f"Vault bootstrap stopped before converging; its root token and keys are saved as "
            f"secret outputs and the next `pulumi up` continues. Cause: {error}"
        )


class VaultBootstrap(pulumi.dynamic.Resource, module="vault", name="Bootstrap"):
    """Initialise, unseal and configure the cluster's Vault through the API server's proxy."""

    root_token: pulumi.Output[str]
    """Root token (secret); revoke it once Vault has other administrators."""
    keys: pulumi.Output[list[str]]
    """Recovery keys (auto-unseal) or unseal keys (shamir), base64 (secret)."""
    key_kind: pulumi.Output[str]
    changed: pulumi.Output[list[str]]
    """Steps the last create/update changed."""
    policies: pulumi.Output[list[str]]
    roles: pulumi.Output[list[str]]
    reviewer_jwt_sha256: pulumi.Output[str]
    converged: pulumi.Output[bool]
    """False when a run stopped with credentials state lacked; the next update continues."""
    error: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        api_url: pulumi.Input[str],
        ca_pem: pulumi.Input[str],
        client_cert_pem: pulumi.Input[str],
        client_key_pem: pulumi.Input[str],
        spec: BootstrapSpec,
        namespace: str = "vault",
        target: str = "vault",
        target_kind: str = "services",
        port: int = 8200,
        wait_timeout: float = DEFAULT_WAIT_TIMEOUT,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """`api_url`, `ca_pem` and the client certificate come from `ClusterAccess`; `target` is
        the service (or, with `target_kind="pods"`, the pod) whose port 8200 serves Vault's API.

        A token reviewer JWT in `spec` makes the whole spec input a secret.
        """
        spec_input: Any = spec.to_dict()
        if spec.kubernetes is not None and spec.kubernetes.token_reviewer_jwt:
            spec_input = pulumi.Output.secret(spec_input)
        # The StatefulSet behind the target: its pods' Raft data is what a lost init answer wipes.
        statefulset = re.sub(r"-\d+$", "", target) if target_kind == "pods" else target
        props = {
            "base_url": pulumi.Output.from_input(api_url).apply(
                lambda url: proxy_url(url, namespace, target, port, kind=target_kind)
            ),
            "init_secret": pulumi.Output.from_input(api_url).apply(
                lambda url: {"api_url": url, "namespace": namespace, "statefulset": statefulset}
            ),
            "ca_pem": ca_pem,
            "client_cert_pem": client_cert_pem,
            "client_key_pem": pulumi.Output.secret(client_key_pem),
            "spec": spec_input,
            "wait_timeout": wait_timeout,
        } | {output: None for output in OUTPUTS if output != "spec"}
        super().__init__(VaultBootstrapProvider(), name, props, secret_output_options(opts))
        pulumi.Output.all(self.converged, self.error).apply(_fail_unless_converged)


def secret_output_options(opts: pulumi.ResourceOptions | None) -> pulumi.ResourceOptions:
    """`opts` plus the root token and keys as additional secret outputs."""
    return pulumi.ResourceOptions.merge(
        opts, pulumi.ResourceOptions(additional_secret_outputs=list(SECRET_OUTPUTS))
    )
