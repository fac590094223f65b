"""Hostile variants of the shipped stack files, for the fuzz tests of every stack-file reader.

`mutants(seed, count)` yields (name, bytes): text-level damage (encodings, control bytes, tabs,
YAML features a stack file has no use for) and value-level damage (a random key replaced by a
random hostile value). Every secret the mutants hold contains MARKER, which must never be printed.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
SEEDS = sorted((REPO / "stacks").glob("Pulumi.*.yaml")) + sorted(
    (REPO / "tests" / "fixtures" / "config" / "valid").glob("*.yaml")
)
MARKER = "S3CR3T-MARK"

BOMB = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, "
    f"*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]\n"
    for i in range(1, 9)
)


def _config(text: str) -> dict[str, Any]:
    return yaml.safe_load(text)["config"]


def _dump(config: dict[str, Any]) -> bytes:
    return yaml.safe_dump({"config": config}, allow_unicode=True, sort_keys=False).encode()


def _paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _paths(item, (*path, i))


def _hostile_value(rng: random.Random) -> Any:
    return rng.choice(
        [
            None,
            True,
            0,
            -1,
            10**30,
            1.5,
            "",
            " ",
            "x" * 100_000,
            "\x1b[31mred\x1b[0m\nnext line",
            "\u202eevil",
            "a" * 254,
            ".".join(["a" * 63] * 4)[:253],
            "::1",
            "2001:db8::/32",
            "10.20.0.1/16",
            "0.0.0.0/0",
            ["10.0.0.0/8"] * 3,
            [f"10.{i // 256}.{i % 256}.0/24" for i in range(3000)],
            [str(i) for i in range(5000)],
            {"secure": f"v1:{MARKER}"},
            {"nested": {"secure": f"v1:{MARKER}"}},
            {"a": {"b": {"c": {"d": {"e": {}}}}}},
            [[[[[[]]]]]],
            "[" * 10_000 + "]" * 10_000,
            json.dumps({"servers": 3}),
            '{"a": 1, "a": 2}',
            "NaN",
            "1" * 5000,
            "2024-01-01",
            "yes",
            "${env:HOME}",
            "../../etc/passwd",
        ]
    )


def _replace(config: dict[str, Any], rng: random.Random) -> bytes:
    path = rng.choice([p for p in _paths(config) if p])
    parent = config
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = _hostile_value(rng)
    return _dump(config)


def _rename(config: dict[str, Any], rng: random.Random) -> bytes:
    key = rng.choice(sorted(config))
    namespace, _, name = key.partition(":")
    spelt = rng.choice(
        [
            namespace.capitalize(),
            namespace.upper(),
            namespace[:1] + namespace[2:],
            namespace + "s",
            "",
            f"{namespace}:{namespace}",
        ]
    )
    config[f"{spelt}:{name}" if spelt else name] = config.pop(key)
    return _dump(config)


def _secret(config: dict[str, Any], rng: random.Random) -> bytes:
    config[rng.choice(sorted(config))] = {"secure": f"v1:{MARKER}{'x' * rng.randint(0, 200)}"}
    return _dump(config)


def _text(rng: random.Random, text: str) -> bytes:
    lines = text.splitlines(keepends=True)
    at = rng.randrange(len(lines))
    choices: list[Callable[[], bytes]] = [
        lambda: "".join(lines[:at] + ["\t" + lines[at]] + lines[at + 1 :]).encode(),
        lambda: text.encode("utf-16"),
        lambda: text.encode("utf-16-le"),
        lambda: text.encode() + b"\xff\xfe\x80",
        lambda: text.replace(":", "\x1b:", 1).encode(),
        lambda: text.encode()[: rng.randrange(len(text))],
        lambda: (text + "\n---\n" + text).encode(),
        lambda: b"- " + text.encode(),
        lambda: b"42\n",
        lambda: b"",
        lambda: b"config: 42\n",
        lambda: b"config: [a, b]\n",
        lambda: (text + "  ? [a, b]\n  : c\n").encode(),
        lambda: (text + "  platform:x: !!python/object/apply:os.system [echo]\n").encode(),
        lambda: (text + "  platform:x: !Ref y\n").encode(),
        lambda: (text + "  platform:x: *missing\n").encode(),
        lambda: (text + "  a: &d 1\n  b: &d 2\n").encode(),
        lambda: (text + "  1: x\n  yes: y\n  ~: z\n").encode(),
        lambda: (text + "".join(lines[at : at + 1]) * 2).encode(),
        lambda: (text + "  platform:environment: dup\n").encode(),
        lambda: (text + "  platform:bomb:\n" + _indent(BOMB, 4)).encode(),
        lambda: (text + "  kubernetes:bomb:\n" + _indent(BOMB, 4)).encode(),
        lambda: (text + "  platform:loop: &l [*l]\n").encode(),
        lambda: (text + "  platform:deep: " + "[" * 10_000 + "]" * 10_000 + "\n").encode(),
        lambda: (text + "  platform:" + "k" * 100_000 + ": 1\n").encode(),
        lambda: (text + '  "platform:\\e[2J\\nx": 1\n').encode(),
        lambda: (text + "  platform:budget: .inf\n  platform:nan: .nan\n").encode(),
        lambda: (text + "  platform:n: " + "9" * 5000 + "\n").encode(),
        lambda: (text + "x" * 300_000).encode(),
        lambda: (text + "  platform:merge:\n    <<: {a: 1}\n    b: 2\n").encode(),
    ]
    return rng.choice(choices)()


def _indent(text: str, spaces: int) -> str:
    return "".join(" " * spaces + line for line in text.splitlines(keepends=True))


def mutants(seed: int, count: int) -> Iterator[tuple[str, bytes]]:
    """`count` hostile stack files, the same ones for the same seed."""
    rng = random.Random(seed)
    texts = [(path.stem, path.read_text()) for path in SEEDS]
    for i in range(count):
        stem, text = rng.choice(texts)
        kind = rng.choice(["text", "replace", "replace", "rename", "secret"])
        if kind == "text":
            data = _text(rng, text)
        else:
            mutate = {"replace": _replace, "rename": _rename, "secret": _secret}[kind]
            data = mutate(_config(text), rng)
        yield f"{i:04d}-{stem}-{kind}", data
