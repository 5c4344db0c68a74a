"""YAML composed into nodes, read with a type check at every step; problems become `file:line: path: why`.

PyYAML's object loader loses line numbers, keeps the last of duplicate keys and expands alias bombs, so a
config file is only *composed* here, walked once within a budget, then read through `Node` accessors.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Collection, Iterator
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.reader import ReaderError

from trafficshift.durations import parse_duration

# Far above any real config, far below what an alias bomb expands to.
NODE_BUDGET = 20_000
MAX_DEPTH = 50

_TAG = "tag:yaml.org,2002:"
# Scalars that environment and labels take as written, as compose does (`1.0` stays "1.0", `yes` "yes").
_TEXT_TAGS = ("str", "int", "float", "bool", "timestamp")
_KINDS = {"str": "a string", "int": "an integer", "float": "a number", "bool": "a boolean", "null": "null"}
_KINDS |= {"timestamp": "a date", "binary": "binary data", "seq": "a list", "map": "a mapping"}


class Errors:
    """Collects `file:line: path: why` messages, each once (aliases can lead to one node twice)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.items: dict[str, int] = {}

    def add(self, line: int, path: str, why: str) -> None:
        where = f"{self.source}:{line}: " + (f"{path}: " if path else "")
        self.items.setdefault(where + why, line)

    def messages(self) -> list[str]:
        return sorted(self.items, key=self.items.__getitem__)


def compose(text: str, errors: Errors) -> yaml.Node | None:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 1
        errors.add(line, "", "invalid YAML: " + ", ".join(filter(None, [exc.context, exc.problem])))
        return None
    except ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        errors.add(line, "", f"invalid YAML: {exc.reason}: U+{exc.character:04X}")
        return None
    except RecursionError:  # PyYAML's composer recurses once per nesting level
        errors.add(1, "", "invalid YAML: nested too deeply")
        return None
    if root is None:
        errors.add(1, "", "the file is empty; expected a mapping with traefik and apps")
    elif not isinstance(root, yaml.MappingNode):
        errors.add(root.start_mark.line + 1, "", f"expected a mapping at the top level, got {kind_of(root)}")
        return None
    return root


def check_graph(root: yaml.Node, errors: Errors) -> bool:
    """Walk every node as aliases expand it, within a budget; reject `{{` in any key or value.

    Return False when the budget runs out: an alias bomb becomes an error in milliseconds.
    """
    # Paths are built only when reported, from trails of (parent trail, segment).
    stack: list[tuple[yaml.Node, _Trail, int]] = [(root, None, 0)]
    for _ in range(NODE_BUDGET):
        if not stack:
            return True
        node, trail, depth = stack.pop()
        if depth > MAX_DEPTH:  # a recursive alias, long before the budget is spent
            errors.add(
                node.start_mark.line + 1, _trail_path(trail)[:80], "nested too deeply (recursive alias?)"
            )
            return False
        if isinstance(node, yaml.ScalarNode):
            if "{{" in node.value:  # invariant 8 (docs/ARCHITECTURE.md)
                why = "contains '{{', which Traefik runs as a Go template"
                errors.add(node.start_mark.line + 1, _trail_path(trail), why)
        elif isinstance(node, yaml.SequenceNode):
            stack += ((item, (trail, f"[{i}]"), depth + 1) for i, item in enumerate(node.value))
        else:
            for key, value in node.value:
                sub = (trail, f".{key.value}") if isinstance(key, yaml.ScalarNode) else trail
                stack += [(key, sub, depth + 1), (value, sub, depth + 1)]
    node, trail, _ = stack[-1]
    errors.add(
        node.start_mark.line + 1,
        _trail_path(trail),
        f"over {NODE_BUDGET} values once aliases expand (alias bomb?)",
    )
    return False


_Trail = tuple["_Trail", str] | None


def _trail_path(trail: _Trail) -> str:
    parts = []
    while trail is not None:
        trail, part = trail
        parts.append(part)
    return "".join(reversed(parts)).removeprefix(".")


def join_path(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def kind_of(node: yaml.Node) -> str:
    return _KINDS.get(node.tag.removeprefix(_TAG), f"a value tagged {node.tag}")


class Node:
    """One value of the file and its dotted path; the accessors check its type and report what is wrong."""

    def __init__(self, node: yaml.Node, path: str, key_line: int, errors: Errors) -> None:
        self.node = node
        self.path = path
        self.errors = errors
        self.key_line = key_line
        # A list or mapping is reported on the line of the key that names it, a scalar on its own line.
        self.line = key_line if isinstance(node, yaml.CollectionNode) else node.start_mark.line + 1
        self.tag = node.tag.removeprefix(_TAG)

    def fail(self, why: str) -> None:
        self.errors.add(self.line, self.path, why)

    def expect(self, *tags: str) -> bool:
        if self.tag in tags:
            return True
        got = kind_of(self.node) + (f" ({self.node.value})" if self.tag in ("int", "float", "bool") else "")
        *most, last = (_KINDS[t] for t in tags)
        self.fail(f"expected {', '.join(most)}{' or ' if most else ''}{last}, got {got}")
        return False

    def _scalar(self) -> Any:
        try:
            return SafeConstructor().construct_object(self.node)
        except (yaml.YAMLError, ValueError):  # e.g. `!!int abc`
            self.fail(f"{self.node.value!r} is not valid as {kind_of(self.node)}")
            return None

    def mapping(
        self, known: Collection[str] | None, required: Collection[str] = (), *, extensions: bool = False
    ) -> dict[str, Node] | None:
        """Return the entries by key (`known=None`: any key); report duplicate, unknown and missing keys.

        With `extensions`, keys starting with `x-` are skipped, as compose does: a place for anchors.
        """
        if not self.expect("map"):
            return None
        out: dict[str, Node] = {}
        for key, value, merged in self._pairs(self.node):
            line = key.start_mark.line + 1
            if not isinstance(key, yaml.ScalarNode) or key.tag == _TAG + "null":
                self.errors.add(line, self.path, f"keys must be strings, got {kind_of(key)}")
                continue
            path = join_path(self.path, key.value)
            if key.value in out:
                # As in PyYAML's loader: own keys win over merged ones, earlier merges over later ones.
                if merged:
                    continue
                first = out[key.value].key_line
                self.errors.add(
                    line, path, f"duplicate key (first on line {first}); YAML keeps only the last"
                )
            elif extensions and key.value.startswith("x-"):
                out[key.value] = Node(value, path, line, self.errors)  # for duplicates; never read
            elif known is not None and key.value not in known:
                close = difflib.get_close_matches(key.value, known, n=1)
                hint = (
                    f"did you mean {close[0]!r}?" if close else "expected one of " + ", ".join(sorted(known))
                )
                self.errors.add(line, path, f"unknown key; {hint}")
            else:
                out[key.value] = Node(value, path, line, self.errors)
        for name in required:
            if name not in out:
                self.fail(f"missing required key {name!r}")
        return out

    def _pairs(self, node: yaml.Node) -> Iterator[tuple[yaml.Node, yaml.Node, bool]]:
        """Yield (key, value, merged): the node's own pairs, then those of its merge keys (`<<: *base`)."""
        merges: list[yaml.Node] = []
        for key, value in node.value:
            if key.tag == _TAG + "merge":
                merges += value.value if isinstance(value, yaml.SequenceNode) else [value]
            else:
                yield key, value, False
        for src in merges:
            if not isinstance(src, yaml.MappingNode):
                self.errors.add(
                    src.start_mark.line + 1, self.path, "<< must merge a mapping or a list of them"
                )
                continue
            for key, value, _ in self._pairs(src):
                yield key, value, True

    def items(self) -> list[Node] | None:
        if not self.expect("seq"):
            return None
        return [
            Node(n, f"{self.path}[{i}]", n.start_mark.line + 1, self.errors)
            for i, n in enumerate(self.node.value)
        ]

    def string(self) -> str | None:
        if not self.expect("str"):
            return None
        if not self.node.value.strip():
            self.fail("must not be empty")
            return None
        return str(self.node.value)

    def integer(self, low: int, high: int) -> int | None:
        value = self._scalar() if self.expect("int") else None
        if isinstance(value, int) and low <= value <= high:
            return value
        if value is not None:
            self.fail(f"must be {low}..{high}, got {value}")
        return None

    def boolean(self) -> bool | None:
        return bool(self._scalar()) if self.expect("bool") else None

    def number(self, low: float, high: float) -> float | None:
        value = self._scalar() if self.expect("float", "int") else None
        if isinstance(value, int | float) and math.isfinite(value) and low <= value <= high:
            return float(value)
        if value is not None:
            self.fail(f"must be {low:g}..{high:g}, got {self.node.value}")
        return None

    def duration(self, *, positive: bool = False) -> float | None:
        # Any scalar: `pause: 30` gets parse_duration's "expected a duration like ..., got '30'".
        if not isinstance(self.node, yaml.ScalarNode):
            self.expect("str")
            return None
        try:
            value = parse_duration(self.node.value)
        except ValueError as exc:
            self.fail(str(exc))
            return None
        if positive and value <= 0:
            self.fail(f"must be more than 0, got {self.node.value!r}")
            return None
        return value

    def text_map(self, check_key: Callable[[str], str | None]) -> dict[str, str] | None:
        """A compose-like mapping of names to scalars, each kept as its text."""
        entries = self.mapping(None)
        if entries is None:
            return None
        out: dict[str, str] = {}
        for key, value in entries.items():
            if why := check_key(key):
                self.errors.add(value.key_line, value.path, why)
            elif value.tag == "null":
                value.fail('must not be null; write "" for an empty value')
            elif isinstance(value.node, yaml.ScalarNode) and value.tag in _TEXT_TAGS:
                out[key] = str(value.node.value)
            else:
                value.fail(f"expected a string, number or boolean, got {kind_of(value.node)}")
        return out
