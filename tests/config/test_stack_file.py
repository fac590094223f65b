"""The one reader of stack files: hostile or malformed input gets one clean line per problem."""

from __future__ import annotations

import json
import time
import tracemalloc
from pathlib import Path

import pulumi
import pytest

from components import config
from policy.stack_file import MAX_BYTES, ConfigError, load, printable
from tests.config.mutations import BOMB

REPO = Path(__file__).resolve().parents[2]
DEV = (REPO / "stacks" / "Pulumi.dev.yaml").read_text()
LOCAL = (REPO / "stacks" / "Pulumi.local.yaml").read_text()


def rejection(tmp_path: Path, content: str | bytes) -> ConfigError:
    path = tmp_path / "Pulumi.test.yaml"
    if isinstance(content, str):
        path.write_text(content)
    else:
        path.write_bytes(content)
    with pytest.raises(ConfigError) as err:
        config.from_stack_file(load(path))
    for line in err.value.lines():
        assert line.startswith(f"{path}"), line
        assert line.isprintable() and len(line) < 500, line
    return err.value


def add(text: str) -> str:
    """The dev stack with `text` appended under `config:`."""
    return DEV + "".join(f"  {line}\n" for line in text.splitlines())


CASES = {
    "tab indentation": (DEV.replace("  platform:dns", "\tplatform:dns"), "", "tabs"),
    "not UTF-8": (DEV.encode() + b"\xff\xfe\x80\n", "", "not UTF-8"),
    "UTF-16": (DEV.encode("utf-16"), "", "UTF-16"),
    "UTF-16 without BOM": (DEV.encode("utf-16-le"), "", "U+0000"),
    "raw control byte": (DEV.replace("dev", "d\x1bev", 1), "", "U+001B"),
    "unhashable key": (add("? [a, b]\n: c"), "config", "a list or mapping, not a string"),
    "python tag": (add("platform:x: !!python/object/apply:os.system [id]"), "", "tags"),
    "local tag": (add("platform:x: !Ref y"), "", "tags"),
    "undefined alias": (add("platform:x: *nowhere"), "", "undefined alias"),
    "duplicate anchor": (add("a:x: &d 1\nb:x: &d 2"), "", "duplicate anchor"),
    "two documents": (DEV + "---\n" + DEV, "", "single document"),
    "scalar document": ("42\n", "", "a mapping with a `config:`"),
    "list document": ("- config\n", "", "a mapping with a `config:`"),
    "scalar config": ("config: 42\n", "config", "got int"),
    "list config": ("config: [a]\n", "config", "got list"),
    "number key": (add("1: x"), "config", "`1` on line"),
    "boolean key": (add("yes: x"), "config", "true/false"),
    "null key": (add("~: x"), "config", "null"),
    "nested number key": (add("platform:services: {1: x}"), "platform:services", "a number"),
    "duplicate key": (add("platform:environment: other"), "platform:environment", "twice"),
    "duplicate nested key": (
        DEV.replace("    servers: 1\n", "    servers: 1\n    servers: 3\n"),
        "platform:cluster.servers",
        "written twice (first on line",
    ),
    "deep JSON text": (
        add("platform:services: '" + "[" * 10_000 + "]" * 10_000 + "'"),
        "platform:services",
        "deeper",
    ),
    "deep YAML": (add("platform:cluster: " + "[" * 10_000 + "]" * 10_000), "", "deeper"),
    "duplicate JSON key": (
        add("""platform:dns: '{"domain": "a.io", "domain": "b.io"}'"""),
        "platform:dns",
        "twice",
    ),
    "alias bomb": (
        add("platform:bomb:\n" + "".join(f"  {line}\n" for line in BOMB.splitlines())),
        "",
        "aliases",
    ),
    "alias bomb elsewhere": (
        add("kubernetes:bomb:\n" + "".join(f"  {line}\n" for line in BOMB.splitlines())),
        "",
        "aliases",
    ),
    "self alias": (add("platform:loop: &l [*l]"), "", "refers to a value containing it"),
    "infinite number": (add("kubernetes:x: .inf"), "", "finite"),
    "huge integer": (add("kubernetes:x: " + "9" * 5000), "", "digits"),
    "too big": (DEV + "#" * MAX_BYTES, "", "KiB"),
    "empty file": ("", "platform:environment", "required"),
    "ipv6 vpc, ipv4 subnets": (
        DEV.replace("vpcCidr: 10.20.0.0/16", "vpcCidr: '2001:db8::/56'"),
        "platform:network.vpcCidr",
        "IPv6",
    ),
    "no namespace": (add("environment: dev"), "environment", "<namespace>:<name>"),
    "thousands of CIDRs": (
        DEV.replace(
            "apiAllowedCidrs: [198.51.100.0/24]",
            "apiAllowedCidrs: "
            + json.dumps([f"10.{i // 256}.{i % 256}.0/24" for i in range(5000)]),
        ),
        "platform:cluster.apiAllowedCidrs",
        "at most 50",
    ),
    "duplicate CIDRs": (
        DEV.replace("[198.51.100.0/24]", "[198.51.100.0/24, 198.51.100.0/24]"),
        "platform:cluster.apiAllowedCidrs",
        "more than once",
    ),
    "ipv6 ingress": (
        LOCAL.replace("  platform:local:\n", "  platform:local:\n    ingressIp: '::1'\n"),
        "platform:local.ingressIp",
        "IPv4",
    ),
}


@pytest.mark.parametrize(("content", "key", "fragment"), CASES.values(), ids=CASES.keys())
def test_rejected_in_one_line_per_problem(tmp_path: Path, content, key: str, fragment: str):
    tracemalloc.start()
    start = time.monotonic()
    try:
        error = rejection(tmp_path, content)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert time.monotonic() - start < 5, "the issue allows no command more than 5 s"
    assert peak < 100 * 2**20
    assert any(i.key == key and fragment in i.message for i in error.issues), "\n".join(
        error.lines()
    )


@pytest.mark.parametrize(
    ("written", "meant"),
    [
        ("pltform:dns", "platform:dns"),
        ("Platform:registry", "platform:registry"),
        ("AWS:region", "aws:region"),
        ("aws:regoin", "aws:region"),
        ("platform:clustr", "platform:cluster"),
    ],
)
def test_misspelt_keys_are_errors_with_a_suggestion(tmp_path: Path, written: str, meant: str):
    (issue,) = rejection(tmp_path, add(f"{written}: x")).issues
    assert issue.key == written and f"did you mean {meant}?" in issue.message


def test_the_line_is_where_the_key_is_written(tmp_path: Path):
    error = rejection(tmp_path, DEV.replace("servers: 1", "servers: 2"))
    (issue,) = error.issues
    assert issue.key == "platform:cluster.servers"
    assert DEV.splitlines()[issue.line - 1].strip() == "servers: 1"
    error = rejection(
        tmp_path, DEV.replace("[198.51.100.0/24]", "[198.51.100.0/24, 2001:db8::/32]")
    )
    assert (
        error.issues[0].line == DEV.splitlines().index("    apiAllowedCidrs: [198.51.100.0/24]") + 1
    )


def test_long_and_control_keys_are_clipped_and_escaped(tmp_path: Path):
    error = rejection(
        tmp_path, add(f"? platform:{'k' * 100_000}\n: 1\n" + r'"platform:\e[2J\nx": 1')
    )
    lines = error.lines()
    assert len(lines) == 2
    assert all(len(line) < 600 for line in lines)
    assert "\\x1b[2J\\nx" in lines[1]
    assert printable("a\x1bb" + "c" * 200) == "a\\x1bb" + "c" * 73 + "…"


def test_secrets_are_never_shown(tmp_path: Path):
    cipher = "v1:AAAAc2VjcmV0LWNpcGhlcg=="
    error = rejection(
        tmp_path,
        DEV.replace("platform:environment: dev", f"platform:environment: {{secure: {cipher}}}")
        + f"  platform:cluster2: {{nested: {{secure: {cipher}}}}}\n",
    )
    text = "\n".join(error.lines())
    assert cipher not in text and "secure" not in text
    assert "platform:environment: set as a secret" in text


def test_decrypted_secrets_from_the_engine_are_never_shown():
    values = config.decode(
        {
            "platform:environment": "Plaintext Secret!",
            "platform:gitops": '{"repoUrl": "not a url with Plaintext Secret!"}',
            "platform:gitopsToken": "Plaintext Secret!",
        },
        secret_keys={"platform:environment", "platform:gitops", "platform:gitopsToken"},
    )
    with pytest.raises(ConfigError) as err:
        config.parse(values, secret_keys={"platform:environment", "platform:gitops"})
    assert "Plaintext" not in str(err.value)
    assert {i.key for i in err.value.issues} == {"platform:environment", "platform:gitops"}


def test_from_pulumi_reads_the_engines_secret_keys(monkeypatch: pytest.MonkeyPatch):
    values = dict(load(REPO / "stacks" / "Pulumi.dev.yaml").values)
    values["platform:tls"] = {"acmeEmail": "Plaintext Secret!", "letsEncrypt": True}
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps({k: json.dumps(v) for k, v in values.items()}))
    monkeypatch.setenv("PULUMI_CONFIG_SECRET_KEYS", json.dumps(["platform:tls"]))
    with pytest.raises(pulumi.RunError) as err:
        config.from_pulumi()
    lines = str(err.value).splitlines()[1:]
    assert [line.split(":", 2)[:2] for line in lines] == [["  platform", "tls"]]
    assert "Plaintext" not in str(err.value)


def test_not_a_regular_file(tmp_path: Path):
    for path, message in [(tmp_path, "not a regular file"), (tmp_path / "nope", "no such file")]:
        with pytest.raises(ConfigError, match=message):
            load(path)
