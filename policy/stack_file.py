"""Reading a stack file (`stacks/Pulumi.<stack>.yaml`) safely, and reporting what is wrong with it.

Every command that reads a stack file (the synth, `make cost`, `policy.check --stack`) reads it
here. A stack file is a few kilobytes of plain YAML, so anything beyond that is refused before it
can cost time or memory: more than MAX_BYTES, text that is not UTF-8, nesting deeper than
MAX_DEPTH, aliases that expand past MAX_NODES values or into themselves, explicit tags, keys that
are not strings or appear twice. Problems are `ConfigIssue`s naming the key as written and,
when the file is known, the file and line; values are shown clipped and escaped, and never when
they are secrets.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_BYTES = 256 * 1024
MAX_DEPTH = 20
MAX_NODES = 10_000
"""Values in the document with every alias expanded: shipped stack files hold about 150."""
SHOWN_CHARS = 80

_STR = "tag:yaml.org,2002:str"
_MERGE = "tag:yaml.org,2002:merge"
_KINDS = {
    "tag:yaml.org,2002:int": "a number",
    "tag:yaml.org,2002:float": "a number",
    "tag:yaml.org,2002:bool": "true/false",
    "tag:yaml.org,2002:null": "null",
}


def printable(text: str, limit: int = SHOWN_CHARS) -> str:
    """`text` for one terminal line: control and format characters escaped, at most `limit`
    characters (cut with `…`)."""
    escaped = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[: limit + 1])
    return escaped if len(escaped) <= limit else escaped[: limit - 1] + "…"


def shown(value: Any) -> str:
    """A value quoted for an error message, clipped like `printable`."""
    return printable(repr(value))


def key_path(key: str, loc: Iterable[Any]) -> str:
    """`key` followed by a pydantic error location, as a stack file writes it (`key.a[0].b`)."""
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else f".{part}"
    return key


def is_secure(value: Any) -> bool:
    """A value that is, or holds, an encrypted `{secure: <ciphertext>}` entry."""
    if isinstance(value, Mapping):
        return set(value) == {"secure"} or any(is_secure(v) for v in value.values())
    if isinstance(value, list):
        return any(is_secure(v) for v in value)
    return False


@dataclass(frozen=True)
class ConfigIssue:
    key: str
    """The key as written in the stack file, e.g. `platform:cluster.agents.min`; empty for the
    file as a whole (not YAML, not UTF-8...)."""
    message: str
    line: int | None = None

    def __str__(self) -> str:
        return f"{printable(self.key)}: {self.message}" if self.key else self.message


class ConfigError(ValueError):
    """The stack configuration is invalid; `issues` lists every problem found."""

    def __init__(self, issues: list[ConfigIssue], source: str | None = None):
        self.issues = issues
        self.source = source
        super().__init__("invalid stack configuration:\n" + "\n".join(f"  {i}" for i in issues))

    def lines(self) -> list[str]:
        """One line per problem: `<file>:<line>: <key>: <message>`."""
        if not self.source:
            return [str(issue) for issue in self.issues]
        where = printable(self.source, 240)
        return [
            f"{where}:{issue.line}: {issue}" if issue.line else f"{where}: {issue}"
            for issue in self.issues
        ]


class JsonRefused(ValueError):
    """JSON text that parses but is refused; the message never holds the text."""


def json_value(text: str) -> Any:
    """JSON text (how `pulumi new` and the engine store objects) under the same limits as YAML:
    `JsonRefused` beyond them, another `ValueError` when the text is not JSON."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        mapping: dict[str, Any] = {}
        for key, value in items:
            if key in mapping:
                raise JsonRefused(f"JSON text has the key {shown(key)} twice")
            mapping[key] = value
        return mapping

    def no_constant(name: str) -> Any:
        raise JsonRefused(f"JSON text holds {name}, which is not a number a stack file can hold")

    if len(text) > MAX_BYTES:
        raise JsonRefused(f"JSON text longer than {MAX_BYTES // 1024} KiB")
    try:
        value = json.loads(text, object_pairs_hook=pairs, parse_constant=no_constant)
    except RecursionError:
        raise JsonRefused(f"JSON text nested deeper than {MAX_DEPTH} levels") from None
    if _too_big(value):
        raise JsonRefused(
            f"JSON text nested deeper than {MAX_DEPTH} levels or holding more than "
            f"{MAX_NODES} values"
        )
    return value


def _too_big(value: Any) -> bool:
    count, pending = 0, [(value, 1)]
    while pending:
        item, depth = pending.pop()
        count += 1
        if depth > MAX_DEPTH or count > MAX_NODES:
            return True
        children = (
            item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        )
        pending.extend((child, depth + 1) for child in children)
    return False


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with the limits of the module docstring enforced while composing.

    Dates stay strings (`revision: 2024-01-01` is a tag name, and every value must survive the
    JSON the engine hands the program)."""

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def __init__(self, text: str):
        super().__init__(text)
        self._depth = 0
        self._open: set[str] = set()
        self._sizes: dict[Node, int] = {}
        self._count = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        event = self.peek_event()
        mark = event.start_mark
        anchor = event.anchor
        if isinstance(event, yaml.AliasEvent):
            if anchor in self._open:
                raise _problem(mark, f"alias *{printable(anchor)} refers to a value containing it")
            target = super().compose_node(parent, index)
            self._counted(self._sizes[target], mark)
            return target
        if event.tag not in (None, "!"):
            raise _problem(
                mark, f"tag {printable(event.tag)}: tags are not allowed; write plain YAML"
            )
        self._counted(1, mark)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _problem(mark, f"nested deeper than {MAX_DEPTH} levels")
        if anchor is not None:
            self._open.add(anchor)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
            self._open.discard(anchor)
        self._sizes[node] = 1 + sum(self._sizes[child] for child in _children(node))
        return node

    def _counted(self, values: int, mark: yaml.Mark) -> None:
        """Count values as they are composed, so a huge or alias-bombed document stops early."""
        self._count += values
        if self._count > MAX_NODES:
            raise _problem(
                mark,
                f"more than {MAX_NODES} values with aliases expanded; a stack file holds "
                "a few hundred",
            )

    def construct_yaml_int(self, node: ScalarNode) -> int:
        try:
            return super().construct_yaml_int(node)
        except ValueError:
            raise _problem(node.start_mark, "a number with too many digits") from None

    def construct_yaml_float(self, node: ScalarNode) -> float:
        value = super().construct_yaml_float(node)
        if not math.isfinite(value):
            raise _problem(node.start_mark, "not a finite number (JSON has no .inf or .nan)")
        return value


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)
_Loader.add_constructor("tag:yaml.org,2002:float", _Loader.construct_yaml_float)


class _Refused(yaml.MarkedYAMLError):
    """Valid YAML that a stack file may not hold."""


def _problem(mark: yaml.Mark, message: str) -> _Refused:
    return _Refused(None, None, message, mark)


def _children(node: Node) -> Iterator[Node]:
    if isinstance(node, SequenceNode):
        yield from node.value
    elif isinstance(node, MappingNode):
        for key, value in node.value:
            yield key
            yield value


@dataclass
class StackFile:
    """A stack file's `config:` as written, where each key is, and which keys hold secrets."""

    path: Path
    values: dict[str, Any]
    secret_keys: list[str]
    lines: dict[str, int] = field(default_factory=dict)
    """Line of each key as written (`platform:cluster.apiAllowedCidrs[0]`)."""

    def line_of(self, key: str) -> int | None:
        """The line of `key`, or of the nearest enclosing key the file spells out."""
        while key:
            if key in self.lines:
                return self.lines[key]
            cut = max(key.rfind("."), key.rfind("["))
            if cut <= key.find(":"):
                return None
            key = key[:cut]
        return None

    def located(self, error: ConfigError) -> ConfigError:
        """`error` with this file as the source and each issue's line."""
        return ConfigError(
            [ConfigIssue(i.key, i.message, i.line or self.line_of(i.key)) for i in error.issues],
            str(self.path),
        )


def load(path: Path) -> StackFile:
    """Read and check a stack file; `ConfigError` (with the file and lines) when it can't be used.

    Only the file's own shape is checked here: `components.config` validates what the keys mean.
    """
    source = str(path)
    document, node = _document(path, source)
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise ConfigError(
            [ConfigIssue("", "expected a mapping with a `config:` section", 1)], source
        )
    config = document.get("config")
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise ConfigError(
            [
                ConfigIssue(
                    "config",
                    "expected a mapping of `<namespace>:<key>: <value>` entries "
                    f"(got {type(config).__name__})",
                    _line_of_top_key(node, "config"),
                )
            ],
            source,
        )
    secret_keys = [key for key, value in config.items() if is_secure(value)]
    return StackFile(path, config, secret_keys, _key_lines(node))


def load_mapping(path: Path) -> dict[str, Any]:
    """A small YAML or JSON file holding one mapping (a policy config), read like a stack file."""
    document, _ = _document(path, str(path))
    if not isinstance(document, dict):
        raise ConfigError([ConfigIssue("", "expected one YAML/JSON mapping", 1)], str(path))
    return document


def _document(path: Path, source: str) -> tuple[Any, Node | None]:
    text = _text(path, source)
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as exc:
        raise _reader_error(exc, text, source) from None
    try:
        node = loader.get_single_node()
        issues = [] if node is None else list(_shape_issues(node))
        if issues:
            raise ConfigError(issues, source)
        return (None if node is None else loader.construct_document(node)), node
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise ConfigError(
            [ConfigIssue("", _yaml_message(exc), mark.line + 1 if mark else None)], source
        ) from None
    finally:
        loader.dispose()


def _reader_error(exc: yaml.reader.ReaderError, text: str, source: str) -> ConfigError:
    line = text.count("\n", 0, exc.position) + 1
    hint = " (UTF-16 text? save the file as UTF-8)" if exc.character == 0 else ""
    message = f"character U+{exc.character:04X} is not allowed in YAML{hint}"
    return ConfigError([ConfigIssue("", message, line)], source)


def _text(path: Path, source: str) -> str:
    def refuse(message: str, line: int | None = None) -> ConfigError:
        return ConfigError([ConfigIssue("", message, line)], source)

    if not path.is_file():
        raise refuse("no such file" if not path.exists() else "not a regular file")
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise refuse(f"cannot read: {printable(exc.strerror or type(exc).__name__)}") from None
    if len(data) > MAX_BYTES:
        raise refuse(f"larger than {MAX_BYTES // 1024} KiB; a stack file holds a few KB")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise refuse("UTF-16 text; save the file as UTF-8", 1)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise refuse(
            f"not UTF-8 text (byte 0x{data[exc.start]:02x}); save it as UTF-8", line
        ) from None


def _yaml_message(exc: yaml.MarkedYAMLError) -> str:
    problem = printable(", ".join(filter(None, [exc.context, exc.problem])), 160)
    hint = " (indent with spaces, not tabs)" if "'\\t'" in problem else ""
    column = f" (column {exc.problem_mark.column + 1})" if exc.problem_mark else ""
    return f"{'' if isinstance(exc, _Refused) else 'not valid YAML: '}{problem}{hint}{column}"


def _shape_issues(root: Node) -> Iterator[ConfigIssue]:
    """Keys that are not strings, or appear twice in one mapping, anywhere in the document."""
    pending: list[tuple[Node, str]] = [(root, "")]
    seen: set[Node] = set()
    while pending:
        node, path = pending.pop()
        if node in seen:
            continue
        seen.add(node)
        if isinstance(node, SequenceNode):
            pending.extend((item, f"{path}[{i}]") for i, item in enumerate(node.value))
        if not isinstance(node, MappingNode):
            continue
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if isinstance(key_node, ScalarNode) and key_node.tag == _MERGE:
                pending.append((value_node, path))
                continue
            if not isinstance(key_node, ScalarNode) or key_node.tag != _STR:
                kind = (
                    _KINDS.get(key_node.tag, "a scalar")
                    if isinstance(key_node, ScalarNode)
                    else "a list or mapping"
                )
                written = (
                    f"`{printable(key_node.value)}` " if isinstance(key_node, ScalarNode) else ""
                )
                yield ConfigIssue(
                    path,
                    f"the key {written}on line {line} is {kind}, not a string; quote it",
                    line,
                )
                continue
            key = _join(path, key_node.value)
            if key_node.value in first_line:
                yield ConfigIssue(
                    key, f"written twice (first on line {first_line[key_node.value]})", line
                )
                continue
            first_line[key_node.value] = line
            pending.append((value_node, key))


def _join(path: str, key: str) -> str:
    if not path:
        return key
    # Under `config:` keys are `namespace:key`; below them, nested keys join with a dot.
    return key if path == "config" else f"{path}.{key}"


def _key_lines(root: Node) -> dict[str, int]:
    """The line of every key under `config:` as written (lists as `key[i]`)."""
    lines: dict[str, int] = {}
    config = _top_value(root, "config")
    pending = [(config, "")] if config is not None else []
    while pending:
        node, path = pending.pop()
        if isinstance(node, SequenceNode):
            for i, item in enumerate(node.value):
                lines.setdefault(f"{path}[{i}]", item.start_mark.line + 1)
                pending.append((item, f"{path}[{i}]"))
        elif isinstance(node, MappingNode):
            for key_node, value_node in node.value:
                key = f"{path}.{key_node.value}" if path else str(key_node.value)
                if key_node.tag == _MERGE:
                    continue
                lines.setdefault(key, key_node.start_mark.line + 1)
                pending.append((value_node, key))
    return lines


def _top_value(root: Node, key: str) -> Node | None:
    if isinstance(root, MappingNode):
        for key_node, value_node in root.value:
            if key_node.value == key:
                return value_node
    return None


def _line_of_top_key(root: Node | None, key: str) -> int | None:
    value = None if root is None else _top_value(root, key)
    return None if value is None else value.start_mark.line + 1
