"""Reading Compose's normalised JSON with a record of every key read, so that no key goes unnoticed.

Compose has already checked the types, so a wrong one here is rare (a newer Compose); it is reported
rather than trusted. A key nobody read is refused by name unless its value is empty or a default.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from trafficshift.compose.spec import Pairs

_GO_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_GO_UNIT_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 10**6, "s": 10**9, "m": 60 * 10**9}
_GO_UNIT_NS["h"] = 3600 * 10**9

UNSUPPORTED = "not supported by trafficshift; remove it (or deploy this service with Compose itself)"


def parse_go_duration(text: str) -> int:
    """Nanoseconds of a Go duration as Compose prints it (`1m30s`, `500ms`, `1.5s`); ValueError otherwise."""
    body = text.removeprefix("-")
    pos, total = 0, 0.0
    for match in _GO_PART.finditer(body):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _GO_UNIT_NS[match.group(2)]
        pos = match.end()
    if body == "0":
        return 0
    if not body or pos != len(body) or text.startswith("-"):
        raise ValueError(f"expected a duration like 1m30s, got {text!r}")
    return round(total)


def is_empty(value: Any) -> bool:
    """Nothing set: None, "", false, 0, or a list or mapping of nothing set."""
    if isinstance(value, Mapping):
        return all(is_empty(v) for v in value.values())
    if isinstance(value, list):
        return not value
    return value is None or value == "" or value is False or (type(value) in (int, float) and value == 0)


class Problems:
    """What is wrong with a service, as `path: why` lines; and every mapping read, to find unread keys."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._maps: list[Keys] = []

    def add(self, path: str, why: str) -> None:
        line = f"{path}: {why}"
        if line not in self.lines:
            self.lines.append(line)

    def keys(self, data: Any, path: str) -> Keys:
        if data is not None and not isinstance(data, Mapping):
            self.add(path, f"expected a mapping from Compose, got {data!r}")
            data = None
        keys = Keys(data or {}, path, self)
        self._maps.append(keys)
        return keys

    def refuse_unread(self) -> None:
        for keys in self._maps:
            keys.refuse_unread()


class Keys:
    """One mapping of the JSON at `path`; the typed getters mark a key as read."""

    def __init__(self, data: Mapping[str, Any], path: str, problems: Problems) -> None:
        self.data = data
        self.path = path
        self.problems = problems
        self._read: set[str] = set()
        self._children: dict[str, Keys] = {}

    def __contains__(self, key: str) -> bool:
        return key in self.data

    def at(self, key: str) -> str:
        return f"{self.path}.{key}"

    def fail(self, key: str, why: str) -> None:
        self.problems.add(self.at(key), why)

    def get(self, key: str) -> Any:
        self._read.add(key)
        return self.data.get(key)

    def refuse(self, key: str, why: str) -> None:
        """Refuse `key` with a reason, unless it is absent or empty."""
        if not is_empty(self.get(key)):
            self.fail(key, why)

    def refuse_unread(self) -> None:
        for key, value in self.data.items():
            if key not in self._read and not key.startswith("x-") and not is_empty(value):
                self.fail(key, UNSUPPORTED)

    def keys(self, key: str) -> Keys:
        """The mapping at `key` (the same reader each time: what one caller reads, another need not)."""
        if key not in self._children:
            self._children[key] = self.problems.keys(self.get(key), self.at(key))
        return self._children[key]

    def items(self, key: str) -> list[Keys]:
        return [self.problems.keys(item, f"{self.at(key)}[{i}]") for i, item in enumerate(self._list(key))]

    def text(self, key: str) -> str:
        value = self.get(key)
        if value is None:
            return ""
        if isinstance(value, str):
            return value
        self.fail(key, f"expected a string from Compose, got {value!r}")
        return ""

    def flag(self, key: str) -> bool:
        value = self.get(key)
        if value is None or isinstance(value, bool):
            return bool(value)
        self.fail(key, f"expected true or false from Compose, got {value!r}")
        return False

    def integer(self, key: str) -> int:
        """An integer, also one Compose writes as a string (byte sizes: `"67108864"`)."""
        value = self.get(key)
        if value is None:
            return 0
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and re.fullmatch(r"-?\d+", value):
            return int(value)
        self.fail(key, f"expected a whole number from Compose, got {value!r}")
        return 0

    def number(self, key: str) -> float:
        value = self.get(key)
        if value is None:
            return 0.0
        try:
            if not isinstance(value, bool):
                return float(value)
        except ValueError:
            pass
        self.fail(key, f"expected a number from Compose, got {value!r}")
        return 0.0

    def words(self, key: str) -> tuple[str, ...] | None:
        """A list of strings; None when absent or null (not the same as an empty list for a command)."""
        value = self.get(key)
        if value is None:
            return None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
        self.fail(key, f"expected a list of strings from Compose, got {value!r}")
        return None

    def strings(self, key: str) -> tuple[str, ...]:
        return self.words(key) or ()

    def pairs(self, key: str) -> Pairs:
        """A mapping of names to scalars, as sorted (name, text) pairs."""
        value = self.get(key)
        if value is None:
            return ()
        if not isinstance(value, Mapping):
            self.fail(key, f"expected a mapping from Compose, got {value!r}")
            return ()
        out: list[tuple[str, str]] = []
        for name, item in value.items():
            if isinstance(item, bool):
                out.append((name, "true" if item else "false"))
            elif isinstance(item, str | int | float):
                out.append((name, str(item)))
            else:
                self.problems.add(f"{self.at(key)}.{name}", f"expected a string from Compose, got {item!r}")
        return tuple(sorted(out))

    def duration_ns(self, key: str) -> int:
        value = self.get(key)
        if value is None:
            return 0
        try:
            return parse_go_duration(str(value))
        except ValueError as exc:
            self.fail(key, str(exc))
            return 0

    def _list(self, key: str) -> list[Any]:
        value = self.get(key)
        if value is None:
            return []
        if isinstance(value, list):
            return value
        self.fail(key, f"expected a list from Compose, got {value!r}")
        return []
