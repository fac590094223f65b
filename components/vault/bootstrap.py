"""Initialise, unseal and configure a Vault-API server (HashiCorp Vault or OpenBao) with hvac.

Plain code, independent of Pulumi: `provider.py` wraps it in a dynamic resource, and it runs just as
well from a script against any server that speaks the Vault API.

Every configuration step reads the server's state first and writes the whole object the spec owns
when any of its fields differs, so a second run changes nothing and a run that stopped after any
step converges on the next one. The root token and the unseal/recovery keys live in
`BootstrapResult` (its repr hides them and `secrets()` hands them out explicitly) and, from the
moment the server answers the init request until the caller holds them durably, in an `InitStore`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, ClassVar, Literal, Protocol

import hvac
import requests
from hvac import exceptions as hvac_errors

SealMode = Literal["auto", "shamir"]
KeyKind = Literal["recovery", "unseal"]
Progress = Callable[[str], None]

_LOG = logging.getLogger(__name__)

SECRET_OUTPUTS: tuple[str, ...] = ("root_token", "keys")
"""The `BootstrapResult.to_outputs()` keys that hold secrets."""

IN_CLUSTER_KUBERNETES_HOST = "https://kubernetes.default.svc:443"
KV_MOUNT = "secret"
APPS_PREFIX = "apps"
EXTERNAL_SECRETS_NAMESPACE = "external-secrets"
EXTERNAL_SECRETS_SERVICE_ACCOUNT = "external-secrets"
EXTERNAL_SECRETS_POLICY = "external-secrets"
EXTERNAL_SECRETS_ROLE = "external-secrets"
SECRETS_READER_SERVICE_ACCOUNT = "external-secrets-reader"
"""The account, in each app namespace, that External Secrets logs in as for that namespace."""
SNAPSHOT_SERVICE_ACCOUNT = "vault-snapshot"
SNAPSHOT_POLICY = "raft-snapshot"
SNAPSHOT_ROLE = "raft-snapshot"
AUDIENCE = "vault"
"""Token audience the roles bind; External Secrets stores request it (`audiences: [vault]`)."""

# Also in policy/sections.py; this module stays free of the config's imports because the
# snapshot CronJob runs it with hvac and boto3 alone.
K8S_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_MOUNT_PATH_RE = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
_DURATION_RE = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_PEM_CERT = "-----BEGIN CERTIFICATE-----"
ACCESSOR_PLACEHOLDER = "@KUBERNETES_ACCESSOR@"
"""Stands in a policy for the Kubernetes auth mount's accessor, known only once it is enabled."""


class SpecError(ValueError):
    """The bootstrap spec is invalid; `problems` lists every problem found."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid Vault bootstrap spec: " + "; ".join(problems))


class BootstrapError(RuntimeError):
    """Bootstrapping stopped. Messages never contain the root token or any key.

    `partial` is set once the server has been initialised by this run: it holds the new root token
    and keys, which exist nowhere else, so callers must keep it and pass it as `previous` next time.
    """

    def __init__(self, message: str, partial: BootstrapResult | None = None):
        super().__init__(message)
        self.partial = partial


class TokenRejected(BootstrapError):
    """The server refused the token used for configuration (wrong, expired or revoked)."""


class WaitTimeout(BootstrapError, TimeoutError):
    """A bounded wait ran out; the message names what was awaited and the last state seen."""


class InitInterrupted(BootstrapError):
    """Vault was initialised by a run that died during the init request: its answer is lost.

    The message says what to wipe so that the next run can initialise Vault again.
    """


class UnexpectedAnswer(BootstrapError):
    """Something other than Vault answered; the message names the address and the answer."""


@dataclass(frozen=True)
class KvMount:
    """A KV version 2 secrets engine at `path`."""

    path: str = KV_MOUNT
    description: str = ""


@dataclass(frozen=True)
class KubernetesAuth:
    """The Kubernetes auth method and its connection to the Kubernetes API (TokenReview).

    For a Vault running in the cluster leave `kubernetes_ca_cert` and `token_reviewer_jwt` unset:
    Vault then uses its pod's service-account token and CA. From outside the cluster set
    `kubernetes_ca_cert` and `disable_local_ca_jwt=True`; without `token_reviewer_jwt` Vault reviews
    each login with the logging-in JWT itself.
    """

    mount_path: str = "kubernetes"
    kubernetes_host: str = IN_CLUSTER_KUBERNETES_HOST
    kubernetes_ca_cert: str | None = None
    token_reviewer_jwt: str | None = field(default=None, repr=False)
    disable_local_ca_jwt: bool = False


@dataclass(frozen=True)
class KubernetesRole:
    """A Kubernetes auth role: which service accounts get which policies, for how long."""

    name: str
    bound_service_account_names: tuple[str, ...]
    bound_service_account_namespaces: tuple[str, ...]
    policies: tuple[str, ...]
    ttl: str = "1h"
    """Token TTL as a Go duration (`1h`, `30m`, `90s`) or a number of seconds."""
    audience: str = AUDIENCE


@dataclass(frozen=True)
class BootstrapSpec:
    """What the bootstrap makes true on the server.

    `seal`: `"auto"` for an auto-unseal seal (awskms in the platform): initialisation creates
    `key_shares` recovery keys with threshold `key_threshold` and the server unseals itself.
    `"shamir"`: initialisation creates unseal keys and the bootstrap unseals a sealed server with
    the keys of the previous result.
    """

    seal: SealMode = "auto"
    key_shares: int = 5
    key_threshold: int = 3
    kv_mounts: tuple[KvMount, ...] = (KvMount(),)
    kubernetes: KubernetesAuth | None = None
    policies: Mapping[str, str] = field(default_factory=dict)
    """Policy name -> HCL."""
    roles: tuple[KubernetesRole, ...] = ()
    """Roles of the `kubernetes` auth method."""
    revoke_root: bool = False
    """Once configured, hand over to a scoped `platform-bootstrap` token and revoke the root token
    (`hand_over`): the result's token is then the scoped one, which later runs renew and use."""

    def __post_init__(self) -> None:
        problems = _spec_problems(self)
        if problems:
            raise SpecError(problems)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible form (Pulumi inputs); `from_dict` reverses it."""
        kube = self.kubernetes
        return {
            "seal": self.seal,
            "key_shares": self.key_shares,
            "key_threshold": self.key_threshold,
            "kv_mounts": [{"path": m.path, "description": m.description} for m in self.kv_mounts],
            "kubernetes": None
            if kube is None
            else {
                "mount_path": kube.mount_path,
                "kubernetes_host": kube.kubernetes_host,
                "kubernetes_ca_cert": kube.kubernetes_ca_cert,
                "token_reviewer_jwt": kube.token_reviewer_jwt,
                "disable_local_ca_jwt": kube.disable_local_ca_jwt,
            },
            "policies": dict(sorted(self.policies.items())),
            "roles": [
                {
                    "name": r.name,
                    "bound_service_account_names": list(r.bound_service_account_names),
                    "bound_service_account_namespaces": list(r.bound_service_account_namespaces),
                    "policies": list(r.policies),
                    "ttl": r.ttl,
                    "audience": r.audience,
                }
                for r in self.roles
            ],
            # Only when set, so the inputs of stacks that keep the root token do not change.
            **({"revoke_root": True} if self.revoke_root else {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BootstrapSpec:
        """Build a spec from `to_dict()` output; raises `SpecError` on malformed input."""
        try:
            kube = data.get("kubernetes")
            return cls(
                seal=data.get("seal", "auto"),
                key_shares=int(data.get("key_shares", 5)),
                key_threshold=int(data.get("key_threshold", 3)),
                kv_mounts=tuple(KvMount(**m) for m in data.get("kv_mounts", [{}])),
                kubernetes=None if kube is None else KubernetesAuth(**kube),
                policies=dict(data.get("policies") or {}),
                roles=tuple(
                    KubernetesRole(
                        name=r["name"],
                        bound_service_account_names=tuple(r["bound_service_account_names"]),
                        bound_service_account_namespaces=tuple(
                            r["bound_service_account_namespaces"]
                        ),
                        policies=tuple(r["policies"]),
                        ttl=str(r.get("ttl", "1h")),
                        audience=r.get("audience", AUDIENCE),
                    )
                    for r in data.get("roles") or []
                ),
                revoke_root=bool(data.get("revoke_root", False)),
            )
        except SpecError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise SpecError([f"malformed spec: {exc!r}"]) from None


def duration_seconds(value: str) -> int:
    """`"1h30m"` -> 5400, `"90s"` -> 90, `"3600"` -> 3600; ValueError otherwise."""
    if value.isdigit():
        return int(value)
    match = _DURATION_RE.match(value)
    if not value or match is None:
        raise ValueError(f"{value!r} is not a duration such as 1h, 30m, 90s or 3600")
    hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def _spec_problems(spec: BootstrapSpec) -> list[str]:
    problems: list[str] = []
    if spec.seal not in ("auto", "shamir"):
        problems.append(f"seal must be 'auto' or 'shamir', got {spec.seal!r}")
    shares, threshold = spec.key_shares, spec.key_threshold
    # Shamir splitting needs at least two shares to combine unless there is a single share.
    if not 1 <= shares <= 255:
        problems.append(f"key_shares must be between 1 and 255, got {shares}")
    elif shares == 1 and threshold != 1:
        problems.append(f"key_threshold must be 1 with a single key share, got {threshold}")
    elif shares > 1 and not 2 <= threshold <= shares:
        problems.append(
            f"key_threshold must be between 2 and key_shares ({shares}), got {threshold}"
        )

    paths = [m.path for m in spec.kv_mounts]
    for path in paths:
        if not _MOUNT_PATH_RE.match(path):
            problems.append(f"KV mount path {path!r} must be like 'secret' (no leading/trailing /)")
    if len(set(paths)) != len(paths):
        problems.append(f"KV mount paths repeat: {paths}")

    kube = spec.kubernetes
    if kube is not None:
        if not _MOUNT_PATH_RE.match(kube.mount_path):
            problems.append(f"Kubernetes auth mount path {kube.mount_path!r} is not a mount path")
        if not kube.kubernetes_host.startswith(("https://", "http://")):
            problems.append(f"kubernetes_host {kube.kubernetes_host!r} must be an http(s) URL")
        if kube.kubernetes_ca_cert is not None and _PEM_CERT not in kube.kubernetes_ca_cert:
            problems.append("kubernetes_ca_cert must be a PEM certificate")
        if kube.disable_local_ca_jwt and not kube.kubernetes_ca_cert:
            problems.append(
                "disable_local_ca_jwt needs kubernetes_ca_cert (no local CA to fall back on)"
            )

    for name in spec.policies:
        if not _NAME_RE.match(name) or name == "root":
            problems.append(f"policy name {name!r} is not allowed")

    role_names = [r.name for r in spec.roles]
    if len(set(role_names)) != len(role_names):
        problems.append(f"role names repeat: {role_names}")
    if spec.roles and kube is None:
        problems.append("roles need the Kubernetes auth method (spec.kubernetes)")
    known = set(spec.policies) | {"default"}
    for role in spec.roles:
        where = f"role {role.name!r}"
        if not _NAME_RE.match(role.name):
            problems.append(f"{where}: the name may only hold letters, digits, '_', '-' and '.'")
        if not role.bound_service_account_names or not role.bound_service_account_namespaces:
            problems.append(f"{where}: needs bound service account names and namespaces")
        unknown = sorted(set(role.policies) - known)
        if unknown:
            problems.append(f"{where}: policies {unknown} are not defined in spec.policies")
        try:
            duration_seconds(role.ttl)
        except ValueError as exc:
            problems.append(f"{where}: ttl {exc}")
    return problems


@dataclass(frozen=True)
class BootstrapResult:
    """The credentials of the server and what a run did. repr/str never show the secrets."""

    root_token: str = field(repr=False)
    keys: tuple[str, ...] = field(repr=False)
    """Base64 recovery keys (auto seal) or unseal keys (shamir); empty when never known."""
    key_kind: KeyKind
    changed: tuple[str, ...] = ()
    """Names of the steps that wrote something, in order (`init`, `unseal`, `kv:secret`, ...)."""
    policies: tuple[str, ...] = ()
    """Policies this bootstrap manages; a later run deletes those that left the spec."""
    roles: tuple[str, ...] = ()
    """Kubernetes auth roles this bootstrap manages (same rule as `policies`)."""
    reviewer_jwt_sha256: str = ""
    """Digest of the configured token reviewer JWT: Vault never reads the JWT back."""

    PUBLIC_OUTPUTS: ClassVar[tuple[str, ...]] = (
        "key_kind",
        "changed",
        "policies",
        "roles",
        "reviewer_jwt_sha256",
    )

    def secrets(self) -> dict[str, Any]:
        """The secret values, keyed like `SECRET_OUTPUTS`; the only way they leave this object."""
        return {"root_token": self.root_token, "keys": list(self.keys)}

    def to_outputs(self) -> dict[str, Any]:
        """Plain form (Pulumi outputs): public fields plus `secrets()`."""
        public = {name: getattr(self, name) for name in self.PUBLIC_OUTPUTS}
        public = {k: list(v) if isinstance(v, tuple) else v for k, v in public.items()}
        return public | self.secrets()

    @classmethod
    def from_outputs(cls, outputs: Mapping[str, Any]) -> BootstrapResult:
        """Reverse of `to_outputs()`; extra keys are ignored."""
        return cls(
            root_token=outputs["root_token"],
            keys=tuple(outputs.get("keys") or ()),
            key_kind=outputs["key_kind"],
            changed=tuple(outputs.get("changed") or ()),
            policies=tuple(outputs.get("policies") or ()),
            roles=tuple(outputs.get("roles") or ()),
            reviewer_jwt_sha256=outputs.get("reviewer_jwt_sha256") or "",
        )


@dataclass(frozen=True)
class InitRecord:
    """What an `InitStore` holds: an init request was sent at `started`, and its answer if known."""

    started: str
    """UTC time (ISO 8601) just before the init request went out."""
    answer: BootstrapResult | None = field(default=None, repr=False)
    """Root token and keys; None while the request is under way (or when its answer was lost)."""


class InitStore(Protocol):
    """Durable storage for the init answer until the caller holds it durably.

    `bootstrap` saves a record without answer just before the init request and the answer right
    after it, and deletes the record once `previous` (which the caller keeps durably) opens Vault.
    """

    where: str
    """Where the record lives, for messages (e.g. `Secret vault/vault-bootstrap-init`)."""
    wipe_steps: str
    """How to delete the storage of every Vault replica, for the lost-answer message."""

    def load(self) -> InitRecord | None: ...

    def save(self, record: InitRecord) -> None: ...

    def delete(self) -> None: ...


def key_kind(spec: BootstrapSpec) -> KeyKind:
    """Auto-unseal servers hand out recovery keys; shamir servers unseal keys."""
    return "recovery" if spec.seal == "auto" else "unseal"


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


def wait_until(
    what: str,
    probe: Callable[[], tuple[bool, str]],
    *,
    timeout: float,
    progress: Progress,
    interval: float = 0.05,
    report_every: float = 5.0,
) -> None:
    """Poll `probe` (-> (done, state)) until done; report the state every `report_every` seconds.

    Connection and Vault errors count as "not yet" and become the state. Raises `WaitTimeout`
    naming `what`, the timeout and the last state.
    """
    start = time.monotonic()
    next_report = start + report_every
    state = "no answer yet"
    while True:
        try:
            done, state = probe()
        except (requests.RequestException, hvac_errors.VaultError, ValueError) as exc:
            done, state = False, _describe(exc)
        now = time.monotonic()
        if done:
            if now - start >= report_every:
                progress(f"{what}: done after {now - start:.0f}s")
            return
        if now - start >= timeout:
            raise WaitTimeout(f"timed out after {timeout:g}s waiting for {what} (last: {state})")
        if now >= next_report:
            progress(f"still waiting for {what} ({now - start:.0f}s of {timeout:g}s): {state}")
            next_report = now + report_every
        time.sleep(interval)


def _shown(answer: Any) -> str:
    """A short description of an answer that is not what Vault sends; never values of a dict."""
    if isinstance(answer, dict):
        return f"JSON with the keys {sorted(answer)[:12]}"
    if isinstance(answer, requests.Response):
        kind = answer.headers.get("Content-Type", "no content type")
        return f"HTTP {answer.status_code} ({kind}): {answer.text[:200]!r}"
    return f"{type(answer).__name__} {str(answer)[:200]!r}"


def _refuse_non_json(response: requests.Response, *args: Any, **kwargs: Any) -> None:
    # hvac hands a 200 answer that is not JSON back as a Response object, which callers then index
    # like a dict; a Vault API never sends one, so whatever sent it is not Vault.
    if response.status_code != 200 or not response.content:
        return
    try:
        response.json()
    except ValueError:
        raise UnexpectedAnswer(
            f"{response.url.split('?')[0]} is not a Vault API: it answered {_shown(response)}"
        ) from None


def refuse_foreign_answers(client: hvac.Client) -> hvac.Client:
    """Make every 200 answer that is not JSON raise `UnexpectedAnswer` naming URL and content."""
    hooks = client.session.hooks.setdefault("response", [])
    if _refuse_non_json not in hooks:
        hooks.append(_refuse_non_json)
    return client


def _answer(client: hvac.Client, what: str, answer: Any, *keys: str) -> dict[str, Any]:
    """`answer` if it is a dict holding `keys`; otherwise `UnexpectedAnswer` naming the address."""
    if isinstance(answer, dict) and all(key in answer for key in keys):
        return answer
    raise UnexpectedAnswer(f"Vault at {client.url} answered {what} with {_shown(answer)}")


def read_seal_status(client: hvac.Client) -> dict[str, Any]:
    """`sys/seal-status`, checked to be Vault's answer."""
    try:
        answer = client.sys.read_seal_status()
    except (hvac_errors.VaultError, requests.RequestException) as exc:
        raise BootstrapError(
            f"cannot read the seal status of Vault at {client.url}: {exc}"
        ) from exc
    return _answer(client, "sys/seal-status", answer, "type", "initialized", "sealed")


def read_health(client: hvac.Client) -> dict[str, Any]:
    """`sys/health` in every server state; raises ValueError when the answer is not Vault's."""
    # Every state answers 200 so that any other status means something else answered (for
    # example the Kubernetes API server saying the service has no endpoints yet).
    response = client.sys.read_health_status(
        method="GET",
        standby_ok=True,
        active_code=200,
        standby_code=200,
        dr_secondary_code=200,
        performance_standby_code=200,
        sealed_code=200,
        uninit_code=200,
    )
    if isinstance(response, dict) and "initialized" in response:
        return response
    status = getattr(response, "status_code", "?")
    text = getattr(response, "text", str(response))
    raise ValueError(f"not a Vault health answer (HTTP {status}): {text[:200]}")


def wait_for_api(
    client: hvac.Client, *, timeout: float, progress: Progress, report_every: float = 5.0
) -> None:
    """Wait until a Vault server answers `sys/health` at the client's URL (any state)."""
    wait_until(
        f"the Vault API at {client.url} to answer",
        lambda: (bool(read_health(client)), "answered"),
        timeout=timeout,
        progress=progress,
        report_every=report_every,
    )


def wait_until_active(client: hvac.Client, *, timeout: float, progress: Progress) -> None:
    """Wait until the server is unsealed and a leader serves requests (raft elects one)."""

    def probe() -> tuple[bool, str]:
        health = read_health(client)
        if not health["initialized"]:
            return False, "not initialised"
        if health["sealed"]:
            return False, "sealed"
        leader = _answer(client, "sys/leader", client.sys.read_leader_status(), "ha_enabled")
        if not leader["ha_enabled"] or leader.get("is_self") or leader.get("leader_address"):
            return True, "active"
        return False, "unsealed, no leader elected yet"

    wait_until(
        f"Vault at {client.url} to be unsealed with an active leader",
        probe,
        timeout=timeout,
        progress=progress,
    )


def init_parameters(spec: BootstrapSpec) -> dict[str, int]:
    """The `sys/init` body: recovery_* with an auto-unseal seal, secret_* with shamir."""
    if spec.seal == "auto":
        return {"recovery_shares": spec.key_shares, "recovery_threshold": spec.key_threshold}
    return {"secret_shares": spec.key_shares, "secret_threshold": spec.key_threshold}


def initialise(
    client: hvac.Client,
    spec: BootstrapSpec,
    progress: Progress,
    store: InitStore | None = None,
) -> BootstrapResult:
    """Initialise an uninitialised server and return its root token and keys.

    With a `store`, a record of the request is saved before it goes out and the answer right after
    it arrives, so only a death during the request itself can lose the answer, and the next run
    can tell that it happened. Without one, the result is the only copy: keep it at once.
    """
    params = init_parameters(spec)
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    if store is not None:
        store.save(InitRecord(started))
    progress(f"initialising Vault at {client.url} ({spec.seal} seal, {params})")
    try:
        response = client.sys.initialize(**params)
    except (hvac_errors.VaultError, requests.RequestException) as exc:
        raise BootstrapError(f"initialising Vault at {client.url} failed: {exc}") from exc
    field_name = "recovery_keys_base64" if spec.seal == "auto" else "keys_base64"
    answer = _answer(client, "sys/init", response, "root_token", field_name)
    result = BootstrapResult(
        root_token=answer["root_token"],
        keys=tuple(answer[field_name] or ()),
        key_kind=key_kind(spec),
        changed=("init",),
    )
    if store is not None:
        try:
            store.save(InitRecord(started, result))
        except BootstrapError as exc:
            raise BootstrapError(
                f"Vault at {client.url} is initialised but its answer could not be kept in "
                f"{store.where}: {exc}",
                partial=result,
            ) from exc
        progress(f"kept the init answer in {store.where} until the caller holds it")
    if len(result.keys) != spec.key_shares or not result.root_token:
        raise BootstrapError(
            f"Vault at {client.url} answered sys/init without the expected {spec.key_shares} "
            f"{field_name} and root token (got {len(result.keys)} keys)",
            partial=result,
        )
    return result


def unseal(client: hvac.Client, keys: Sequence[str], progress: Progress) -> None:
    """Submit unseal keys until the server unseals; raises BootstrapError naming only counts."""
    if not keys:
        raise BootstrapError(
            f"Vault at {client.url} is sealed and no unseal keys are available (pass the previous "
            "bootstrap result, or unseal it by hand)"
        )
    progress(f"unsealing Vault at {client.url}")
    # A half-finished unseal by someone else would otherwise mix its key shares with ours.
    client.sys.submit_unseal_key(reset=True)
    for number, key in enumerate(keys, start=1):
        try:
            status = client.sys.submit_unseal_key(key=key)
        except hvac_errors.VaultError as exc:
            raise BootstrapError(
                f"Vault at {client.url} rejected unseal key {number} of {len(keys)} "
                f"({type(exc).__name__}); are these the keys of this server?"
            ) from None
        if not _answer(client, "sys/unseal", status, "sealed")["sealed"]:
            return
    raise BootstrapError(
        f"Vault at {client.url} is still sealed after all {len(keys)} unseal keys; "
        "are these the keys of this server?"
    )


def _verify_token(client: hvac.Client, source: str) -> None:
    try:
        answer = client.auth.token.lookup_self()
    except (hvac_errors.Forbidden, hvac_errors.Unauthorized):
        raise TokenRejected(
            f"Vault at {client.url} rejected {source} (permission denied): it is wrong, expired "
            "or revoked. Supply the current root token (`bao operator generate-root` or "
            "`vault operator generate-root` makes a new one with the unseal/recovery keys)."
        ) from None
    _answer(client, "auth/token/lookup-self", answer, "data")


@dataclass(frozen=True)
class Step:
    """One idempotent configuration step.

    `apply` returns what it wrote: "" for nothing, else `created`, `deleted`, or `repaired ` and
    the fields that differed from the spec.
    """

    name: str
    apply: Callable[[hvac.Client], str]


def _repaired(fields: Iterable[str]) -> str:
    fields = list(fields)
    return f"repaired {', '.join(fields)}" if fields else ""


def _differing(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    """Fields of `wanted` whose value on the server differs (lists compare as sets).

    A field the server does not report is one its version does not have, so it cannot differ.
    """

    def normal(value: Any) -> Any:
        return sorted(value) if isinstance(value, list | tuple) else value

    return [
        key for key, value in wanted.items() if key in current and normal(current[key]) != value
    ]


def _data(client: hvac.Client, what: str, answer: Any) -> dict[str, Any]:
    return _answer(client, what, answer, "data")["data"]


def _ensure_kv_v2(client: hvac.Client, mount: KvMount) -> str:
    mounts = _data(client, "sys/mounts", client.sys.list_mounted_secrets_engines())
    current = mounts.get(f"{mount.path}/")
    if current is None:
        client.sys.enable_secrets_engine(
            "kv", path=mount.path, description=mount.description, options={"version": "2"}
        )
        return "created"
    if current["type"] != "kv":
        raise BootstrapError(f"{mount.path}/ is mounted as {current['type']!r}, not as KV")
    tune: dict[str, Any] = {}
    if (current.get("options") or {}).get("version") != "2":
        # KV v1 upgrades in place to v2 by tuning the version option.
        tune["options"] = {"version": "2"}
    if (current.get("description") or "") != mount.description:
        tune["description"] = mount.description
    if tune:
        client.sys.tune_mount_configuration(mount.path, **tune)
    return _repaired("version" if key == "options" else key for key in tune)


def _ensure_auth_method(client: hvac.Client, path: str, method_type: str) -> str:
    current = _data(client, "sys/auth", client.sys.list_auth_methods()).get(f"{path}/")
    if current is None:
        client.sys.enable_auth_method(method_type, path=path)
        return "created"
    if current["type"] != method_type:
        raise BootstrapError(f"auth/{path}/ is a {current['type']!r} method, not {method_type!r}")
    return ""


def _sha256(text: str | None) -> str:
    return hashlib.sha256(text.encode()).hexdigest() if text else ""


def kubernetes_config(auth: KubernetesAuth) -> dict[str, Any]:
    """The whole `auth/<mount>/config` object the spec owns, as written.

    Fields the spec does not set get their defaults, so a foreign `pem_keys` or `issuer` goes.
    """
    return {
        "kubernetes_host": auth.kubernetes_host,
        "kubernetes_ca_cert": auth.kubernetes_ca_cert or "",
        "token_reviewer_jwt": auth.token_reviewer_jwt or "",
        "pem_keys": [],
        "issuer": "",
        "disable_iss_validation": True,
        "disable_local_ca_jwt": auth.disable_local_ca_jwt,
    }


def _ensure_kubernetes_config(
    client: hvac.Client, auth: KubernetesAuth, previous_jwt_sha256: str
) -> str:
    try:
        current = client.auth.kubernetes.read_config(mount_point=auth.mount_path)
    except hvac_errors.InvalidPath:
        current = None
    wanted = kubernetes_config(auth)
    body_path = f"/v1/auth/{auth.mount_path}/config"
    if not current:
        client.adapter.post(body_path, json=wanted)
        return "created"
    current = _answer(client, f"auth/{auth.mount_path}/config", current, "kubernetes_host")
    readable = {
        k: v for k, v in wanted.items() if k not in ("kubernetes_ca_cert", "token_reviewer_jwt")
    }
    fields = _differing(current, readable)
    if (current.get("kubernetes_ca_cert") or "").strip() != wanted["kubernetes_ca_cert"].strip():
        fields.append("kubernetes_ca_cert")
    # Vault never reads the reviewer JWT back: compare whether one is set, and its digest.
    jwt = auth.token_reviewer_jwt
    if bool(current.get("token_reviewer_jwt_set")) != bool(jwt) or (
        jwt and previous_jwt_sha256 != _sha256(jwt)
    ):
        fields.append("token_reviewer_jwt")
    if fields:
        client.adapter.post(body_path, json=wanted)
    return _repaired(fields)


def _ensure_policy(client: hvac.Client, name: str, hcl: str, auth_mount: str) -> str:
    if ACCESSOR_PLACEHOLDER in hcl:
        accessor = _data(client, "sys/auth", client.sys.list_auth_methods())[f"{auth_mount}/"]
        hcl = hcl.replace(ACCESSOR_PLACEHOLDER, accessor["accessor"])
    try:
        answer = client.sys.read_policy(name)
    except hvac_errors.InvalidPath:
        client.sys.create_or_update_policy(name, hcl)
        return "created"
    current = _answer(client, f"sys/policy/{name}", _data(client, "sys/policy", answer), "rules")
    if current["rules"].strip() == hcl.strip():
        return ""
    client.sys.create_or_update_policy(name, hcl)
    return "repaired rules"


def role_body(role: KubernetesRole) -> dict[str, Any]:
    """The whole role object the spec owns, as written: Vault merges role writes, so every field
    the spec does not set is written with its default (no period, no explicit max TTL, ...)."""
    return {
        "bound_service_account_names": sorted(role.bound_service_account_names),
        "bound_service_account_namespaces": sorted(role.bound_service_account_namespaces),
        "bound_service_account_namespace_selector": "",
        "audience": role.audience,
        "alias_name_source": "serviceaccount_uid",
        "token_policies": sorted(role.policies),
        "token_ttl": duration_seconds(role.ttl),
        "token_max_ttl": 0,
        "token_explicit_max_ttl": 0,
        "token_period": 0,
        "token_no_default_policy": False,
        "token_num_uses": 0,
        "token_bound_cidrs": [],
        "token_strictly_bind_ip": False,
        "token_type": "default",
    }


def _ensure_role(client: hvac.Client, role: KubernetesRole, mount_path: str) -> str:
    wanted = role_body(role)
    role_path = f"/v1/auth/{mount_path}/role/{role.name}"
    try:
        current = client.auth.kubernetes.read_role(role.name, mount_point=mount_path)
    except hvac_errors.InvalidPath:
        client.adapter.post(role_path, json=wanted)
        return "created"
    fields = _differing(_answer(client, f"auth/{mount_path}/role/{role.name}", current), wanted)
    if fields:
        client.adapter.post(role_path, json=wanted)
    return _repaired(fields)


def _delete_role(client: hvac.Client, name: str, mount_path: str) -> str:
    try:
        client.auth.kubernetes.read_role(name, mount_point=mount_path)
    except hvac_errors.InvalidPath:
        return ""
    client.auth.kubernetes.delete_role(name, mount_point=mount_path)
    return "deleted"


def _delete_policy(client: hvac.Client, name: str) -> str:
    try:
        client.sys.read_policy(name)
    except hvac_errors.InvalidPath:
        return ""
    client.sys.delete_policy(name)
    return "deleted"


BOOTSTRAP_POLICY = "platform-bootstrap"
"""The policy of the token that replaces the root token (`hand_over`)."""
BOOTSTRAP_TOKEN_PERIOD = "768h"
"""The scoped token lives as long as runs renew it within this period (Vault's default max TTL)."""


def bootstrap_policy(spec: BootstrapSpec) -> str:
    """What `configuration_steps` need and no more: the spec's KV mounts and auth mount, the
    policies and roles it manages. It may not change its own policy or the root policy, nor make
    tokens; writing an app policy cannot grant it anything, as only logins get those."""
    rules: list[tuple[str, list[str]]] = [("sys/mounts", ["read"]), ("sys/auth", ["read"])]
    for mount in spec.kv_mounts:
        rules.append((f"sys/mounts/{mount.path}", ["create", "read", "update"]))
        rules.append((f"sys/mounts/{mount.path}/tune", ["create", "read", "update"]))
    auth = spec.kubernetes.mount_path if spec.kubernetes is not None else "kubernetes"
    rules += [
        # Enabling an auth method needs sudo on its path.
        (f"sys/auth/{auth}", ["create", "read", "update", "sudo"]),
        (f"auth/{auth}/config", ["create", "read", "update"]),
        (f"auth/{auth}/role/*", ["create", "read", "update", "delete", "list"]),
    ]
    for prefix in ("sys/policy", "sys/policies/acl"):
        rules.append((f"{prefix}/*", ["create", "read", "update", "delete"]))
        rules += [(f"{prefix}/{name}", ["deny"]) for name in (BOOTSTRAP_POLICY, "root")]
    return "\n".join(
        f'path "{path}" {{\n  capabilities = {json.dumps(caps)}\n}}\n' for path, caps in rules
    )


def _token_policies(client: hvac.Client) -> list[str]:
    return list(client.auth.token.lookup_self()["data"].get("policies") or [])


def hand_over(client: hvac.Client, spec: BootstrapSpec, progress: Progress) -> str:
    """With the root token on `client`: create the `platform-bootstrap` policy and an orphan,
    periodic token holding only it, check that the new token answers, then revoke the root token.
    Returns the new token; the client keeps it."""
    client.sys.create_or_update_policy(name=BOOTSTRAP_POLICY, policy=bootstrap_policy(spec))
    created = client.auth.token.create_orphan(
        policies=[BOOTSTRAP_POLICY],
        period=BOOTSTRAP_TOKEN_PERIOD,
        display_name=BOOTSTRAP_POLICY,
        renewable=True,
    )
    scoped = _answer(client, "auth/token/create-orphan", created, "auth")["auth"]["client_token"]
    root = client.token
    client.token = scoped
    if BOOTSTRAP_POLICY not in _token_policies(client):
        raise BootstrapError(f"the {BOOTSTRAP_POLICY} token Vault made lacks its policy")
    client.token = root
    client.auth.token.revoke_self()
    client.token = scoped
    progress(f"revoked the root token; later runs use the {BOOTSTRAP_POLICY} token")
    return scoped


def configuration_steps(spec: BootstrapSpec, previous: BootstrapResult | None = None) -> list[Step]:
    """The configuration steps of `spec` in the order `bootstrap` runs them.

    Writes come first (mounts, auth, policies, roles); then roles and policies that `previous`
    managed but `spec` no longer lists are deleted, so removing an app namespace revokes access.
    Mounts are never removed: that would destroy their data.
    """
    steps = [Step(f"kv:{m.path}", partial(_ensure_kv_v2, mount=m)) for m in spec.kv_mounts]
    kube = spec.kubernetes
    if kube is not None:
        steps.append(
            Step(
                f"auth:{kube.mount_path}",
                partial(_ensure_auth_method, path=kube.mount_path, method_type="kubernetes"),
            )
        )
        steps.append(
            Step(
                f"auth:{kube.mount_path}/config",
                partial(
                    _ensure_kubernetes_config,
                    auth=kube,
                    previous_jwt_sha256=previous.reviewer_jwt_sha256 if previous else "",
                ),
            )
        )
    auth_mount = kube.mount_path if kube is not None else "kubernetes"
    steps += [
        Step(f"policy:{name}", partial(_ensure_policy, name=name, hcl=hcl, auth_mount=auth_mount))
        for name, hcl in sorted(spec.policies.items())
    ]
    if kube is not None:
        steps += [
            Step(f"role:{role.name}", partial(_ensure_role, role=role, mount_path=kube.mount_path))
            for role in spec.roles
        ]
    if previous is not None:
        steps += [
            Step(f"role:{name}:delete", partial(_delete_role, name=name, mount_path=auth_mount))
            for name in sorted(set(previous.roles) - {r.name for r in spec.roles})
        ]
        steps += [
            Step(f"policy:{name}:delete", partial(_delete_policy, name=name))
            for name in sorted(set(previous.policies) - set(spec.policies))
        ]
    return steps


def _log_progress(message: str) -> None:
    _LOG.info("%s", message)


def _check_seal_type(client: hvac.Client, spec: BootstrapSpec, seal_type: str) -> None:
    server_mode = "shamir" if seal_type == "shamir" else "auto"
    if server_mode != spec.seal:
        raise BootstrapError(
            f"the spec says seal {spec.seal!r} but Vault at {client.url} uses the {seal_type!r} "
            "seal"
        )


_FROM_PREVIOUS = "the root token of the previous bootstrap result"


def _kept_in(store: InitStore) -> str:
    return f"the root token kept in {store.where}"


_WIPE_STEPS = "stop every node, delete the Raft data directory of each and start them again"


def lost_answer(
    client: hvac.Client, spec: BootstrapSpec, started: str, wipe_steps: str = _WIPE_STEPS
) -> InitInterrupted:
    """The error for a server whose init answer never arrived, with the way out for its seal."""
    if spec.seal == "shamir":
        consequence = "It stays sealed for good: nobody holds its unseal keys."
    else:
        consequence = (
            "It unseals itself through its seal, but nobody holds a root token or its recovery "
            "keys, so no new root token can be generated either."
        )
    return InitInterrupted(
        f"Vault at {client.url} was initialised by a run that was interrupted during the init "
        f"request (sent {started}): Vault accepted it, but its answer, the root token and the "
        f"{key_kind(spec)} keys, never arrived and exists nowhere. {consequence} Vault holds no "
        f"data yet, so start it over with empty storage: {wipe_steps}. The next run then "
        'initialises it again (docs/vault.md, "Interrupted initialisation").'
    )


def _known_credentials(
    client: hvac.Client,
    spec: BootstrapSpec,
    previous: BootstrapResult | None,
    record: InitRecord | None,
    store: InitStore | None,
) -> tuple[BootstrapResult, str]:
    """The credentials of an initialised server and where they come from (for messages).

    A stored answer that `previous` lacks is newer: the run that initialised Vault died before
    its caller kept the answer.
    """
    stored = record.answer if record is not None else None
    newer = stored is not None and (previous is None or previous.root_token != stored.root_token)
    if newer and store is not None:
        base = replace(previous or stored, root_token=stored.root_token, keys=stored.keys)
        return replace(base, changed=()), _kept_in(store)
    if previous is not None:
        if previous.key_kind != key_kind(spec):
            raise BootstrapError(
                f"the previous result holds {previous.key_kind} keys but the spec says seal "
                f"{spec.seal!r}"
            )
        return replace(previous, changed=()), _FROM_PREVIOUS
    if client.token:
        return (
            BootstrapResult(root_token=client.token, keys=(), key_kind=key_kind(spec)),
            "the client's token",
        )
    if record is not None and store is not None:
        raise lost_answer(client, spec, record.started, store.wipe_steps)
    raise BootstrapError(
        f"Vault at {client.url} is already initialised and neither `previous` nor the client "
        "supplies a token; pass the result of the run that initialised it. If that answer is "
        f"lost, start Vault over with empty storage ({_WIPE_STEPS})."
    )


def bootstrap(
    client: hvac.Client,
    spec: BootstrapSpec,
    previous: BootstrapResult | None = None,
    progress: Progress = _log_progress,
    *,
    timeout: float = 60.0,
    store: InitStore | None = None,
) -> BootstrapResult:
    """Make `spec` true on the server behind `client`; return its credentials and what changed.

    Initialises an uninitialised server (the result then carries the new root token and keys),
    unseals a sealed shamir server with `previous.keys`, waits (at most `timeout` seconds) for an
    active leader, and runs `configuration_steps`. On an initialised server the token comes from
    an answer in `store` that `previous` lacks, else from `previous`, else from `client.token`.
    The client is left authenticated with that token.

    `previous` must be what the caller already keeps durably: once it opens Vault, the record in
    `store` is deleted. With a `store`, an interruption at any point after Vault answered the init
    request is resumed by the next run; one during the request raises `InitInterrupted`.

    Raises `TokenRejected` for a wrong or revoked token, `WaitTimeout` when the server does not
    become active, `UnexpectedAnswer` when something other than Vault answers, and
    `BootstrapError` otherwise; when this run initialised the server or took its credentials from
    `store`, the error's `partial` carries them.
    """
    refuse_foreign_answers(client)
    status = read_seal_status(client)
    _check_seal_type(client, spec, status["type"])
    record = store.load() if store is not None else None
    progress(
        f"Vault at {client.url} is {'' if status['initialized'] else 'not '}initialised and "
        f"{'sealed' if status['sealed'] else 'unsealed'}"
    )

    if status["initialized"]:
        result, token_source = _known_credentials(client, spec, previous, record, store)
    else:
        if previous is not None:
            progress(f"Vault at {client.url} is not initialised: the previous credentials are void")
        result, token_source = initialise(client, spec, progress, store), "the new root token"
    changed = list(result.changed)
    client.token = result.root_token
    step_name = "unseal"
    # The init answer that the caller does not hold yet: hand it over even if a later step fails.
    fresh = "init" in changed or (store is not None and token_source == _kept_in(store))

    def partial_result() -> BootstrapResult | None:
        if not fresh:
            return None
        managed_policies = set(result.policies) | set(spec.policies)
        managed_roles = set(result.roles) | {r.name for r in spec.roles}
        return replace(
            result,
            changed=tuple(changed),
            policies=tuple(sorted(managed_policies)),
            roles=tuple(sorted(managed_roles)),
        )

    try:
        try:
            if read_seal_status(client)["sealed"] and spec.seal == "shamir":
                unseal(client, result.keys, progress)
                changed.append("unseal")
            wait_until_active(client, timeout=timeout, progress=progress)
            _verify_token(client, token_source)
            root = "root" in _token_policies(client)
            if not root:
                # The scoped token of an earlier hand-over lives while runs renew it.
                client.auth.token.renew_self()
        except BootstrapError as exc:
            # The record of an init whose answer never arrived, and credentials that do not open
            # Vault: that init is what initialised it.
            lost = record is not None and record.answer is None
            if lost and store is not None and token_source == _FROM_PREVIOUS:
                raise lost_answer(client, spec, record.started, store.wipe_steps) from exc
            raise
        if store is not None and record is not None and token_source == _FROM_PREVIOUS:
            store.delete()
            progress(f"removed {store.where}: the previous result holds the init answer")
        for step in configuration_steps(spec, previous):
            step_name = step.name
            wrote = step.apply(client)
            progress(f"{step.name}: {wrote or 'unchanged'}")
            if wrote:
                changed.append(step.name)
        if spec.revoke_root and root:
            step_name = "revoke-root"
            result = replace(result, root_token=hand_over(client, spec, progress))
            changed.append(step_name)
    except BootstrapError as exc:
        exc.partial = exc.partial or partial_result()
        raise
    except (hvac_errors.VaultError, requests.RequestException, KeyError, TypeError) as exc:
        raise BootstrapError(
            f"{step_name} failed on Vault at {client.url}: {_describe(exc)}",
            partial=partial_result(),
        ) from exc

    return replace(
        result,
        changed=tuple(changed),
        policies=tuple(sorted(spec.policies)),
        roles=tuple(r.name for r in spec.roles),
        reviewer_jwt_sha256=_sha256(
            spec.kubernetes.token_reviewer_jwt if spec.kubernetes else None
        ),
    )


def app_policy_name(namespace: str) -> str:
    """Policy and role name of an app namespace: `apps-<namespace>`."""
    return f"{APPS_PREFIX}-{namespace}"


def external_secrets_policy(kv_mount: str = KV_MOUNT) -> str:
    """Read-only access to the secrets of the namespace that logged in, and nothing else.

    External Secrets logs in as `external-secrets-reader` of the ExternalSecret's own namespace,
    so the namespace in the token's identity, not the store, decides what can be read: an
    ExternalSecret in `team-a` cannot fetch `apps/team-b/...`.
    """
    namespace = (
        f"{{{{identity.entity.aliases.{ACCESSOR_PLACEHOLDER}.metadata.service_account_namespace}}}}"
    )
    return (
        f'path "{kv_mount}/data/{APPS_PREFIX}/{namespace}/*" {{\n  capabilities = ["read"]\n}}\n\n'
        f'path "{kv_mount}/metadata/{APPS_PREFIX}/{namespace}/*" {{\n'
        '  capabilities = ["read", "list"]\n}\n'
    )


def app_policy(namespace: str, kv_mount: str = KV_MOUNT) -> str:
    """Read/write access to one namespace's secrets only (`<kv>/data/apps/<namespace>/*`)."""
    return (
        f'path "{kv_mount}/data/{APPS_PREFIX}/{namespace}/*" {{\n'
        '  capabilities = ["create", "read", "update", "patch"]\n}\n'
    )


def snapshot_policy() -> str:
    """Taking (not restoring) Raft snapshots, for the snapshot CronJob."""
    return 'path "sys/storage/raft/snapshot" {\n  capabilities = ["read"]\n}\n'


def platform_spec(
    app_namespaces: Iterable[str] = (),
    *,
    seal: SealMode = "auto",
    key_shares: int = 5,
    key_threshold: int = 3,
    kubernetes_host: str = IN_CLUSTER_KUBERNETES_HOST,
    kubernetes_ca_cert: str | None = None,
    token_reviewer_jwt: str | None = None,
    vault_namespace: str = "vault",
    token_ttl: str = "1h",
    revoke_root: bool = False,
) -> BootstrapSpec:
    """The platform's spec: KV v2 at `secret/`, Kubernetes auth, and these policies and roles.

    - `external-secrets` policy: read `secret/data/apps/<ns>/*`, read/list its metadata, where
      `<ns>` is the namespace of the logged-in account (a templated policy); role
      `external-secrets` for service account `external-secrets-reader` of any namespace (the
      ClusterSecretStore logs in as that account of each ExternalSecret's namespace).
    - `apps-<ns>` policy per app namespace: create/read/update/patch `secret/data/apps/<ns>/*`
      and nothing else; role `apps-<ns>` for every service account of namespace `<ns>`.
    - `raft-snapshot` policy: read `sys/storage/raft/snapshot`; role `raft-snapshot` for service
      account `vault-snapshot` in `vault_namespace` (the snapshot CronJob, `snapshot.py`).

    With `revoke_root`, the root token is revoked once the rest holds (`hand_over`).

    Roles bind audience `vault` and issue tokens for `token_ttl`. Vault in the cluster needs no
    `kubernetes_ca_cert`/`token_reviewer_jwt`; given a CA, the local CA and token are disabled.
    """
    namespaces = sorted(set(app_namespaces))
    bad = [ns for ns in namespaces + [vault_namespace] if not K8S_NAME_RE.match(ns)]
    if bad:
        raise SpecError([f"{ns!r} is not a Kubernetes namespace name" for ns in bad])
    policies = {
        EXTERNAL_SECRETS_POLICY: external_secrets_policy(),
        SNAPSHOT_POLICY: snapshot_policy(),
    } | {app_policy_name(ns): app_policy(ns) for ns in namespaces}
    roles = [
        KubernetesRole(
            name=EXTERNAL_SECRETS_ROLE,
            bound_service_account_names=(SECRETS_READER_SERVICE_ACCOUNT,),
            # Any namespace may log in: the templated policy confines it to its own secrets.
            bound_service_account_namespaces=("*",),
            policies=(EXTERNAL_SECRETS_POLICY,),
            ttl=token_ttl,
        ),
        KubernetesRole(
            name=SNAPSHOT_ROLE,
            bound_service_account_names=(SNAPSHOT_SERVICE_ACCOUNT,),
            bound_service_account_namespaces=(vault_namespace,),
            policies=(SNAPSHOT_POLICY,),
            ttl="15m",
        ),
    ] + [
        KubernetesRole(
            name=app_policy_name(ns),
            bound_service_account_names=("*",),
            bound_service_account_namespaces=(ns,),
            policies=(app_policy_name(ns),),
            ttl=token_ttl,
        )
        for ns in namespaces
    ]
    return BootstrapSpec(
        seal=seal,
        key_shares=key_shares,
        key_threshold=key_threshold,
        kv_mounts=(KvMount(KV_MOUNT, "Platform and application secrets"),),
        kubernetes=KubernetesAuth(
            kubernetes_host=kubernetes_host,
            kubernetes_ca_cert=kubernetes_ca_cert,
            token_reviewer_jwt=token_reviewer_jwt,
            disable_local_ca_jwt=kubernetes_ca_cert is not None,
        ),
        policies=policies,
        roles=tuple(roles),
        revoke_root=revoke_root,
    )
