"""An app's routing document as Traefik's KV providers (Redis) read it: flat keys under a root key.

The file backend writes `render.expected_document(...)` as YAML; the Redis backend writes the SAME document,
flattened here, so the two can never disagree. Traefik's KV layout: a mapping's keys and a list's indexes are
path segments (`traefik/http/services/web/weighted/services/0/weight`), every value is a string, and an empty
mapping (`healthCheck: {}`) is the key set to `true` (measured on Traefik 3.7: "" leaves it unset).
Pure: values in, values out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Segments are names trafficshift or the config chose (apps, colours, middlewares) and Traefik's own field
# names: a `/` would split one, and Traefik reserves `@` for the provider suffix of object names.
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class KeyChange:
    """What one transaction does to the store: keys to set (with their values), keys to delete."""

    set: Mapping[str, str]
    delete: tuple[str, ...]

    @property
    def empty(self) -> bool:
        return not self.set and not self.delete


def flatten(doc: Mapping[str, Any], *, root: str) -> dict[str, str]:
    """Return `doc` as Traefik's KV keys under `root`; ValueError for anything Traefik could not read back."""
    if not _SEGMENT.match(root):
        raise ValueError(f"root key {root!r}: one segment of letters, digits, '.', '_' or '-'")
    out: dict[str, str] = {}
    _walk(doc, root, out)
    return out


def _walk(node: Any, path: str, out: dict[str, str]) -> None:
    if isinstance(node, Mapping):
        if not node:
            out[path] = "true"
            return
        for key, value in node.items():
            if not isinstance(key, str) or not _SEGMENT.match(key):
                raise ValueError(f"{path}: key {key!r} cannot be a KV path segment")
            _walk(value, f"{path}/{key}", out)
    elif isinstance(node, list | tuple):
        if not node:
            raise ValueError(f"{path}: an empty list has no KV form")
        for index, value in enumerate(node):
            _walk(value, f"{path}/{index}", out)
    else:
        out[path] = scalar(node, where=path)


def scalar(value: object, *, where: str) -> str:
    """A leaf as Traefik parses it from a KV string: booleans in lower case, numbers as digits."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        if not value or not value.isprintable():
            raise ValueError(f"{where}: value {value!r} must be non-empty printable text")
        return value
    raise ValueError(f"{where}: no KV form for {type(value).__name__} {value!r}")


def change(old: Mapping[str, str], new: Mapping[str, str]) -> KeyChange:
    """The keys to set (new or changed) and to delete (gone) to turn `old` into `new`."""
    return KeyChange(
        set={k: v for k, v in new.items() if old.get(k) != v},
        delete=tuple(sorted(k for k in old if k not in new)),
    )
