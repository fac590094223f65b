"""The readiness gate: nothing talks to the cluster until its API server answers `/readyz`.

`wait_until_ready` is plain code (tested against a real HTTPS server that requires client
certificates); `ApiReadiness` wraps it as a Pulumi dynamic resource that the kubernetes Provider
depends on. The wait is bounded, reports progress and fails with a message naming what it waited
for.
"""

from __future__ import annotations

import base64
import os
import ssl
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi.dynamic as dyn

from components.dynamic import is_unknown

DEFAULT_TIMEOUT_SECONDS = 900
"""Covers instance boot, the K3s download and etcd bootstrap with margin."""
DEFAULT_INTERVAL_SECONDS = 5


class ClusterNotReady(RuntimeError):
    """The API server did not become ready in time."""


class ClusterTrustError(RuntimeError):
    """The API server answered with a certificate the cluster CA did not sign."""


@dataclass(frozen=True)
class ApiCredentials:
    api_url: str
    ca_pem: str
    client_cert_pem: str = ""
    client_key_pem: str = ""
    token: str = ""

    def __repr__(self) -> str:  # the key and token must never reach a log
        return f"ApiCredentials(api_url={self.api_url!r})"


def ssl_context(creds: ApiCredentials, scratch: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=creds.ca_pem)
    if creds.client_cert_pem:
        cert, key = scratch / "client.crt", scratch / "client.key"
        for path, text in ((cert, creds.client_cert_pem), (key, creds.client_key_pem)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(text)
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


def _probe(url: str, ctx: ssl.SSLContext, token: str, timeout: float) -> str | None:
    """None when ready, otherwise a short description of the answer."""
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, context=ctx, timeout=timeout) as response:
            body = response.read(200).decode(errors="replace").strip()
            return (
                None
                if response.status == 200 and body == "ok"
                else f"HTTP {response.status}: {body}"
            )
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}: {exc.read(200).decode(errors='replace').strip()}"
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, ssl.SSLCertVerificationError):
            raise ClusterTrustError(
                f"{url} presented a certificate that the cluster CA does not verify "
                f"({exc.reason.verify_message}); is the endpoint really this cluster?"
            ) from None
        return str(exc.reason)
    except (TimeoutError, ConnectionError, ssl.SSLError) as exc:
        return f"{type(exc).__name__}: {exc}"


def poll(
    check: Callable[[], str | None],
    *,
    timeout: float,
    interval: float,
    progress: Callable[[str], None],
    waiting: str,
    done: str,
    timed_out: Callable[[int, str], Exception],
) -> float:
    """Run `check` (None when done, else what it still waits for) every `interval` seconds.

    Reports each attempt as `<waiting> (attempt n, ...): <what check said>` and the end as
    `<done> after ...`; returns the seconds waited. Raises `timed_out(attempts, last answer)`
    when the next attempt would end after `timeout` seconds. A connection that fails counts as
    an answer, not as the end.
    """
    start = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        try:
            problem = check()
        except (urllib.error.URLError, TimeoutError, ConnectionError, ssl.SSLError) as exc:
            problem = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
        elapsed = time.monotonic() - start
        if problem is None:
            progress(f"{done} after {elapsed:.0f}s ({attempt} attempts)")
            return elapsed
        if elapsed + interval > timeout:
            raise timed_out(attempt, problem)
        progress(f"{waiting} (attempt {attempt}, {elapsed:.0f}s of {timeout:.0f}s): {problem}")
        time.sleep(interval)


def wait_until_ready(
    creds: ApiCredentials,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    interval: float = DEFAULT_INTERVAL_SECONDS,
    progress: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr),
) -> float:
    """Poll `<api_url>/readyz` with the admin credentials until it answers `ok`.

    Returns the seconds waited. Raises ClusterNotReady after `timeout` seconds, ClusterTrustError
    at once when the server's certificate is not from the cluster CA.
    """
    url = creds.api_url.rstrip("/") + "/readyz"
    deadline = time.monotonic() + timeout
    with tempfile.TemporaryDirectory(prefix="readyz-") as scratch:
        ctx = ssl_context(creds, Path(scratch))

        def check() -> str | None:
            remaining = deadline - time.monotonic()
            return _probe(url, ctx, creds.token, timeout=min(10.0, max(1.0, remaining)))

        return poll(
            check,
            timeout=timeout,
            interval=interval,
            progress=progress,
            waiting=f"waiting for {url}",
            done=f"{url} is ready",
            timed_out=lambda attempts, last: ClusterNotReady(
                f"the Kubernetes API server at {url} was not ready within {timeout:.0f}s "
                f"({attempts} attempts); last answer: {last}"
            ),
        )


def build_kubeconfig(name: str, creds: ApiCredentials) -> str:
    """A kubeconfig with one context and the credentials embedded."""
    import yaml

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    user = (
        {"token": creds.token}
        if creds.token
        else {
            "client-certificate-data": b64(creds.client_cert_pem),
            "client-key-data": b64(creds.client_key_pem),
        }
    )
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": name,
                    "cluster": {
                        "server": creds.api_url,
                        "certificate-authority-data": b64(creds.ca_pem),
                    },
                }
            ],
            "users": [{"name": f"{name}-admin", "user": user}],
            "contexts": [{"name": name, "context": {"cluster": name, "user": f"{name}-admin"}}],
            "current-context": name,
        },
        sort_keys=False,
    )


def _read_ref(entry: dict, data_key: str, file_key: str) -> str:
    if entry.get(data_key):
        return base64.b64decode(entry[data_key]).decode()
    if entry.get(file_key):
        return Path(entry[file_key]).expanduser().read_text()
    return ""


def credentials_from_kubeconfig(text: str, context: str | None) -> ApiCredentials:
    """The API URL and credentials of one kubeconfig context (k3d and kind use client certs)."""
    import yaml

    doc = yaml.safe_load(text) or {}
    name = context or doc.get("current-context")

    def by_name(section: str) -> dict:
        return {e["name"]: e[section[:-1]] for e in doc.get(section) or []}

    contexts = by_name("contexts")
    if name not in contexts:
        raise ValueError(f"context {name!r} is not in the kubeconfig; it has {sorted(contexts)}")
    ctx = contexts[name]
    cluster, user = by_name("clusters")[ctx["cluster"]], by_name("users")[ctx["user"]]
    return ApiCredentials(
        api_url=cluster["server"],
        ca_pem=_read_ref(cluster, "certificate-authority-data", "certificate-authority"),
        client_cert_pem=_read_ref(user, "client-certificate-data", "client-certificate"),
        client_key_pem=_read_ref(user, "client-key-data", "client-key"),
        token=user.get("token", ""),
    )


def progress_log(message: str) -> None:
    """To the engine's log when there is one, else to stderr."""
    try:
        pulumi.log.info(message)
    except Exception:  # noqa: BLE001 - outside an engine connection the message still must show
        print(message, file=sys.stderr)


CREDENTIAL_KEYS = ("api_url", "ca_pem", "client_cert_pem", "client_key_pem")
"""What the gate hands on; a change in any of them is a change of the gate."""


class _ApiReadinessProvider(dyn.ResourceProvider):
    def _wait(self, props: dict[str, Any]) -> dict[str, Any]:
        if props.get("kubeconfig_path"):
            text = Path(props["kubeconfig_path"]).expanduser().read_text()
            creds = credentials_from_kubeconfig(text, props.get("context"))
            # Only the selected context goes to state, not every cluster the file knows.
            outs = {"kubeconfig": build_kubeconfig(props.get("context") or "local", creds)}
        else:
            creds = ApiCredentials(
                props["api_url"], props["ca_pem"], props["client_cert_pem"], props["client_key_pem"]
            )
            outs = {}
        wait_until_ready(creds, timeout=float(props["timeout_seconds"]), progress=progress_log)
        return {
            **props,
            **outs,
            "api_url": creds.api_url,
            "ca_pem": creds.ca_pem,
            "client_cert_pem": creds.client_cert_pem,
            "client_key_pem": creds.client_key_pem,
        }

    def create(self, props: dict[str, Any]) -> dyn.CreateResult:
        return dyn.CreateResult(id_=props["name"], outs=self._wait(props))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dyn.DiffResult:
        # `olds` are the saved outputs: compare what the gate was given (or, with a kubeconfig,
        # what the file says now) with the endpoint and credentials it saved.
        if news.get("kubeconfig_path"):
            # The file can change under the same path (a recreated k3d cluster): re-read it.
            try:
                text = Path(news["kubeconfig_path"]).expanduser().read_text()
                creds = credentials_from_kubeconfig(text, news.get("context"))
                current: dict[str, Any] = {k: getattr(creds, k) for k in CREDENTIAL_KEYS}
            except (OSError, ValueError, KeyError):
                current = {}
            changed = not current or any(
                news.get(k) != olds.get(k) for k in ("kubeconfig_path", "context")
            )
        else:
            current = {k: news.get(k) for k in CREDENTIAL_KEYS}
            changed = any(is_unknown(v) for v in current.values())
        changed = changed or any(current.get(k) != olds.get(k) for k in CREDENTIAL_KEYS)
        return dyn.DiffResult(changes=changed, replaces=[], delete_before_replace=False)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> dyn.UpdateResult:
        return dyn.UpdateResult(outs=self._wait(news))


class ApiReadiness(dyn.Resource):
    """Waits for the API server; its outputs are the credentials to use once it is ready."""

    api_url: pulumi.Output[str]
    ca_pem: pulumi.Output[str]
    client_cert_pem: pulumi.Output[str]
    client_key_pem: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        api_url: pulumi.Input[str] | None = None,
        ca_pem: pulumi.Input[str] | None = None,
        client_cert_pem: pulumi.Input[str] | None = None,
        client_key_pem: pulumi.Input[str] | None = None,
        kubeconfig_path: str | None = None,
        context: str | None = None,
        timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS,
        opts: pulumi.ResourceOptions | None = None,
    ):
        """Give either the API URL and admin credentials, or a kubeconfig path (and context)."""
        if (kubeconfig_path is None) == (api_url is None):
            raise ValueError("ApiReadiness needs either api_url and credentials or kubeconfig_path")
        secret = ["client_key_pem", "kubeconfig"]
        super().__init__(
            _ApiReadinessProvider(),
            name,
            {
                "name": name,
                "api_url": api_url,
                "ca_pem": ca_pem,
                "client_cert_pem": client_cert_pem,
                "client_key_pem": client_key_pem,
                "kubeconfig_path": kubeconfig_path,
                "context": context,
                "timeout_seconds": timeout_seconds,
                "kubeconfig": None,
            },
            pulumi.ResourceOptions.merge(
                opts, pulumi.ResourceOptions(additional_secret_outputs=secret)
            ),
        )
