"""Kill the provider during a first `pulumi up` against a fresh OpenBao, then run it again the way
the engine would: every case converges, or, for a kill during the init request itself, ends with
the documented recovery message.

The provider runs in a forked child that reports each progress message and waits for a go-ahead,
so a kill lands exactly at a chosen message (or a set time after it). A create that never returned
left nothing in state, so the engine's next `up` calls create again without previous outputs, then
diffs against what that create returned. Both seal modes run their kill points concurrently: each
case has its own server, and OpenBao's Raft init mostly waits on election timers.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest

import components.vault.provider as provider_module
from components.vault.bootstrap import platform_spec, wait_until
from components.vault.provider import VaultBootstrapProvider
from tests.vault.test_vault_provider import provider_inputs

RETURNED = "create returned"
SIGNALS = (signal.SIGKILL, signal.SIGINT, signal.SIGTERM)
_FORK = multiprocessing.get_context("fork")


@dataclass(frozen=True)
class KillPoint:
    name: str
    message: str
    """The kill follows the first progress message that contains this."""
    delay: float = 0.0
    """Seconds the child runs on after that message before the kill."""


KILL_POINTS = (
    KillPoint("status-read", "is not initialised and"),
    KillPoint("before-init-request", "initialising Vault at"),
    # Raft init takes over a second: 0.3 s in, the request is under way.
    KillPoint("during-init-request", "initialising Vault at", delay=0.3),
    KillPoint("answer-kept", "kept the init answer in"),
    KillPoint("unsealing", "unsealing Vault at"),
    KillPoint("first-step", "kv:secret: created"),
    KillPoint("mid-configuration", "policy:apps-team-a: created"),
    KillPoint("create-returned", RETURNED),
)


def _child(conn: Any, props: dict[str, Any]) -> None:
    # Python's own SIGINT behaviour, as in the provider host the engine starts: a test run
    # started in the background by a non-interactive shell inherits SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    def report(message: str) -> None:
        conn.send(message)
        conn.recv()

    provider_module._report = report
    try:
        outs = VaultBootstrapProvider().create(props).outs
    except Exception as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    else:
        report(RETURNED)
        conn.send(("outs", outs))
    # Leave at once, as a killed provider would: the forked copy of the test process has
    # nothing of its own to clean up, and its interpreter teardown can stall on a loaded machine.
    os._exit(0)


@dataclass
class Run:
    messages: list[str]
    killed: bool = False
    outs: dict[str, Any] | None = None
    error: str = ""


def create_in_child(
    props: dict[str, Any], kill: KillPoint | None = None, sig: int = signal.SIGKILL
) -> Run:
    """`create(props)` in a forked child; with `kill`, send it `sig` at that point."""
    parent, child = _FORK.Pipe()
    process = _FORK.Process(target=_child, args=(child, props), daemon=True)
    process.start()
    run = Run(messages=[])
    try:
        while True:
            assert parent.poll(60), f"the child went quiet after {run.messages[-3:]}"
            item = parent.recv()
            if isinstance(item, tuple):
                kind, value = item
                run.outs, run.error = (value, "") if kind == "outs" else (None, value)
                return run
            run.messages.append(item)
            if kill is not None and kill.message in item:
                if kill.delay:
                    parent.send("go")
                    time.sleep(kill.delay)
                os.kill(process.pid, sig)
                # A child that survives the signal long enough to report again must not wait
                # for a "go" that never comes: its next receive fails at once.
                parent.close()
                run.killed = True
                return run
            parent.send("go")
    finally:
        process.join(30)
        if process.exitcode is None:
            # What the engine does to a provider that outlives its grace period after an
            # interrupt; the rerun below must converge all the same.
            process.kill()
            process.join()


def _assert_keys_are_the_servers(server, outs: dict[str, Any], spec) -> None:
    """Unseal keys in state unseal the server; recovery keys can only be counted here (OpenBao
    has no unauthenticated generate-root or recovery rekey to prove them with)."""
    assert len(set(outs["keys"])) == spec.key_shares
    if spec.seal == "shamir":
        server.client(outs["root_token"]).sys.seal()
        for key in outs["keys"][: spec.key_threshold]:
            status = server.client().sys.submit_unseal_key(key)
        assert not status["sealed"], "the keys in state did not unseal the server"


def _run_case(server, kube_api, spec, point: KillPoint, sig: int, assert_configured) -> str:
    props = provider_inputs(server, spec, kube_api)
    killed = create_in_child(props, point, sig)
    assert killed.killed, f"finished without reaching {point.message!r}: {killed.messages}"
    if point.delay:
        # The server finishes an init whose client died; the engine's next run comes later.
        with contextlib.suppress(TimeoutError):
            wait_until(
                "the interrupted init to finish",
                lambda: (server.client().sys.read_seal_status()["initialized"], "not yet"),
                timeout=5,
                progress=print,
            )

    again = create_in_child(props)
    if again.error:
        assert point.delay, f"only a kill during the init request may lose the answer: {again}"
        return again.error
    assert again.outs is not None and again.outs["converged"], again
    outs = again.outs

    assert not VaultBootstrapProvider().diff("id", outs, props).changes
    assert (f"bao-{server.port}", "vault-bootstrap-init") not in kube_api.secrets
    _assert_keys_are_the_servers(server, outs, spec)
    assert_configured(server.client(outs["root_token"]), spec)
    for body in kube_api.bodies:
        assert outs["root_token"].encode() not in body
        assert not any(key.encode() in body for key in outs["keys"])
    return "converged"


@pytest.mark.parametrize("seal", ["shamir", "static"])
def test_a_kill_at_any_point_of_the_first_run_converges(
    seal, start_bao, kube_api, tokenreview, assert_configured
):
    spec = platform_spec(
        ["team-a"],
        seal="shamir" if seal == "shamir" else "auto",
        kubernetes_host=tokenreview.url,
        kubernetes_ca_cert=tokenreview.ca_pem,
    )
    points = [p for p in KILL_POINTS if seal == "shamir" or p.name != "unsealing"]
    servers = [start_bao(seal=seal, tls=True) for _ in points]
    cases = [
        (server, point, SIGNALS[(number + (seal == "static")) % len(SIGNALS)])
        for number, (server, point) in enumerate(zip(servers, points, strict=True))
    ]
    with ThreadPoolExecutor(len(cases)) as pool:
        futures = {
            pool.submit(_run_case, server, kube_api, spec, point, sig, assert_configured): (
                point.name,
                signal.Signals(sig).name,
            )
            for server, point, sig in cases
        }
        outcomes = {case: future.exception() or future.result() for future, case in futures.items()}
    for server in servers:
        server.stop()

    failures = {case: o for case, o in outcomes.items() if isinstance(o, BaseException)}
    assert not failures, "\n".join(f"{case}: {o!r}" for case, o in failures.items())
    for (name, _), outcome in outcomes.items():
        if outcome == "converged":
            continue
        assert name == "during-init-request"
        assert "interrupted during the init request" in outcome, outcome
        assert "kubectl -n bao-" in outcome and "delete pvc" in outcome, outcome
        lost = "unseal keys" if seal == "shamir" else "recovery keys"
        assert lost in outcome, outcome
    print(f"\n{seal}: " + ", ".join(f"{n}/{s}: {o[:9]}" for (n, s), o in outcomes.items()))
