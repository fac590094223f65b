"""Pulumi mocks that record every registered resource: its inputs, options and final state."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pytest
from pulumi.runtime import rpc

from components.cluster_access import AwsFacts, ClusterAccess
from components.config import parse

PASSWORD = "Rnd0mPassw0rdFromMocks"
BCRYPT = "$2a$10$mockedbcrypthashvaluexxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
GITOPS_TOKEN = "ghp_mockedGitopsToken0123456789"
KMS_ARN = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
INGRESS_IP = "203.0.113.10"
CLIENT_KEY = "-----BEGIN PRIVATE KEY-----mock-----END PRIVATE KEY-----"


@dataclass
class Registered:
    type: str
    name: str
    inputs: dict[str, Any]
    """As the engine receives them: secrets stay wrapped (rpc secret sentinel)."""


@dataclass
class Recorder(pulumi.runtime.Mocks):
    resources: dict[str, Registered] = field(default_factory=dict)
    options: dict[str, pulumi.ResourceOptions] = field(default_factory=dict)

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        self.resources[args.name] = Registered(args.typ, args.name, args.inputs)
        state = unwrap(args.inputs)
        if args.typ == "random:index/randomPassword:RandomPassword":
            state |= {"result": PASSWORD, "bcryptHash": BCRYPT}
        if args.typ == "pulumi-python:dynamic:Resource" and "password_length" in state:
            state |= {"result": PASSWORD, "bcrypt_hash": BCRYPT}
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict:
        return {}

    def by_type(self, suffix: str) -> list[Registered]:
        return [r for r in self.resources.values() if r.type.endswith(suffix)]

    def one(self, name: str) -> Registered:
        return self.resources[name]

    def dependencies(self, name: str) -> set[str]:
        """Names `name` waits for: depends_on and parents, transitively."""
        seen: set[str] = set()
        todo = [name]
        while todo:
            opts = self.options.get(todo.pop())
            if opts is None:
                continue
            for dep in [*(opts.depends_on or []), *([opts.parent] if opts.parent else [])]:
                if isinstance(dep, pulumi.Resource) and dep._name not in seen:
                    seen.add(dep._name)
                    todo.append(dep._name)
        return seen


def unwrap(value: Any) -> Any:
    if rpc.is_rpc_secret(value):
        return unwrap(value["value"])
    if isinstance(value, dict):
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    # Protobuf carries every number as a double; the API server sees JSON, where 256.0 is 256.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def plaintext(value: Any) -> Iterator[str]:
    """Every string in `value` outside secret wrappers."""
    if rpc.is_rpc_secret(value):
        return
    if isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from plaintext(v)
    elif isinstance(value, list):
        for v in value:
            yield from plaintext(v)
    elif isinstance(value, str):
        yield value


STACKS = {
    "dev": {
        "platform:environment": "dev",
        "aws:region": "eu-west-1",
        "platform:cluster": {"apiAllowedCidrs": ["203.0.113.0/24"]},
        "platform:gitops": {"repoUrl": "https://github.com/example/platform.git"},
    },
    "prod": {
        "platform:environment": "prod",
        "platform:production": True,
        "aws:region": "eu-west-1",
        "platform:network": {
            "availabilityZones": 3,
            "publicSubnetCidrs": ["10.20.0.0/20", "10.20.16.0/20", "10.20.32.0/20"],
        },
        "platform:cluster": {"servers": 3, "apiAllowedCidrs": ["203.0.113.0/24"]},
        "platform:dns": {"domain": "prod.example.com", "hostedZoneId": "Z0123456789ABC"},
        "platform:gitops": {"repoUrl": "https://github.com/example/platform.git"},
    },
    "local": {
        "platform:environment": "local",
        "platform:target": "existing",
        "platform:local": {"kubeconfig": "~/.kube/config", "ingressIp": "127.0.0.1"},
        "platform:tls": {"letsEncrypt": False},
        "platform:gitops": {"repoUrl": "https://github.com/example/platform.git"},
    },
}


def fake_access(aws: bool, ingress_ip: str) -> ClusterAccess:
    gate = pulumi.CustomResource("test:index:Gate", "gate")
    provider = k8s.Provider(
        "cluster-k8s", kubeconfig="{}", opts=pulumi.ResourceOptions(depends_on=[gate])
    )
    facts = (
        AwsFacts(
            region="eu-west-1",
            kms_key_arn=pulumi.Output.from_input(KMS_ARN),
            snapshot_bucket=pulumi.Output.from_input("snapshots"),
            server_role_name=pulumi.Output.from_input("server"),
            agent_role_name=pulumi.Output.from_input("agent"),
        )
        if aws
        else None
    )
    return ClusterAccess(
        name="cluster",
        provider=provider,
        api_url=pulumi.Output.from_input("https://k3s.example.com:6443"),
        ca_pem=pulumi.Output.from_input(
            "-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n"
        ),
        client_cert_pem=pulumi.Output.from_input("cert"),
        client_key_pem=pulumi.Output.secret(CLIENT_KEY),
        kubeconfig=pulumi.Output.secret("{}"),
        ingress_ip=pulumi.Output.from_input(ingress_ip),
        ingress_ips=pulumi.Output.from_input([ingress_ip]),
        ready=gate,
        aws=facts,
    )


def synthesize(program: Callable[[], Any]) -> Recorder:
    """Run `program` against the mocks; record each resource's options as the program gave them
    (the mock monitor sees inputs but not depends_on)."""
    recorder = Recorder()
    pulumi.runtime.set_mocks(recorder, project="platform", stack="test", preview=False)
    original = pulumi.Resource.__init__

    def recording_init(self, t, name, custom, props=None, opts=None, *args, **kwargs):
        recorder.options[name] = opts or pulumi.ResourceOptions()
        original(self, t, name, custom, props, opts, *args, **kwargs)

    pulumi.Resource.__init__ = recording_init  # type: ignore[method-assign]
    try:
        pulumi.runtime.test(program)()
    finally:
        pulumi.Resource.__init__ = original  # type: ignore[method-assign]
    return recorder


@pytest.fixture(scope="module")
def platforms() -> dict[str, Recorder]:
    """Stack name -> the recorded Platform of that stack (with a GitOps token)."""
    from components.platform import Platform, PlatformArgs

    def build(stack: str) -> Recorder:
        cfg = parse(STACKS[stack])
        ip = "127.0.0.1" if stack == "local" else INGRESS_IP

        def program() -> None:
            access = fake_access(cfg.target == "aws", ip)
            Platform(
                "platform",
                access,
                PlatformArgs(config=cfg, gitops_token=pulumi.Output.secret(GITOPS_TOKEN)),
            )

        return synthesize(program)

    return {stack: build(stack) for stack in STACKS}
