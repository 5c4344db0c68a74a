"""What a compose-backed app's containers are made of, as one flat document: its digest tells whether the spec
changed, and two documents tell which keys changed. Pure.

The document has one entry per setting that reaches a container, keyed by a dotted path named after the
ContainerSpec's fields (`environment.GREETING`, `mounts./var/lib/app.source`, `healthcheck.interval_ns`),
plus the image (`image`, its reference, and `image_id`, what that reference names on this host, so that a
rebuilt or re-pulled tag counts as a change) and trafficshift's own settings that change a container
(`port`, `network`, `publish`).

Left out, because they change no container: the project's and the service's names (they show where they
matter: in volume and network names, and in aliases), `depends_on` (checked, never part of the colour),
`build` (it makes the image, which is in), and how a missing volume or network would be created
(trafficshift never changes one that exists). Settings at their default (empty, zero, false) are left out
too, as the create body leaves them out, so a setting that a later version learns does not change the
digest of a spec that does not use it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable
from typing import Any

from trafficshift.compose.spec import ContainerSpec, Leaf, Mount, NetworkAttachment, SpecDoc, Ulimit
from trafficshift.models import AppSpec

DIGEST_CHARS = 16
# Fields of ContainerSpec that change no container (see the module's docstring).
_LEFT_OUT = frozenset({"project", "service", "depends_on", "volumes", "network_resources", "build_context"})
# Items of these types are keyed by one of their fields (a mount by its target...), not by position.
_ITEM_KEY = {Mount: "target", NetworkAttachment: "name", Ulimit: "name"}


def app_doc(app: AppSpec, *, image: str, image_id: str) -> dict[str, Leaf] | None:
    """The document of a compose-backed app's containers running `image` (id `image_id`); None for an app
    that is not compose-backed (its containers' label hashes their create body instead)."""
    if app.container is None:
        return None
    return spec_doc(
        app.container,
        image=image,
        image_id=image_id,
        port=app.port,
        network=app.network,
        publish=app.publish,
    )


def spec_doc(
    spec: ContainerSpec,
    *,
    image: str,
    image_id: str,
    port: int,
    network: str | None,
    publish: str | None,
) -> dict[str, Leaf]:
    """The flat document of what each container of the app gets (sorted keys, JSON values)."""
    doc: dict[str, Leaf] = {"image": image, "image_id": image_id, "port": port}
    if network is not None:
        doc["network"] = network
    if publish is not None:
        doc["publish"] = publish
    for f in dataclasses.fields(spec):
        if f.name in _LEFT_OUT or f.name == "image":
            continue
        value = getattr(spec, f.name)
        if f.name == "environment":
            # A variable named without a value (Compose passes `NAME`, Docker unsets it) is kept, as null.
            doc.update((f"environment.{name}", v) for name, v in value)
        elif f.name == "init":
            if value is not None:  # false is not the daemon's default when it runs with --init
                doc["init"] = value
        elif f.name == "networks" and len(value) > 1:
            doc["networks"] = [n.name for n in value]  # the order says which is the primary
            _flatten(doc, f.name, value)
        else:
            _flatten(doc, f.name, value)
    return dict(sorted(doc.items()))


def digest(doc: SpecDoc) -> str:
    """A short stable hash of a document (hex): equal documents, equal digests, in any process."""
    text = json.dumps(dict(doc), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:DIGEST_CHARS]


def changed_keys(old: SpecDoc, new: SpecDoc) -> list[str]:
    """The keys whose values differ (set in one only, or set to another value), sorted.

    `image_id` is left out when `image` changed too: a new tag names another image, which says nothing more.
    """
    keys = sorted(k for k in old.keys() | new.keys() if old.get(k, _ABSENT) != new.get(k, _ABSENT))
    return [k for k in keys if k != "image_id" or "image" not in keys]


def describe(keys: Iterable[str], *, limit: int = 6) -> str:
    """Changed keys for people: `environment.GREETING, image`, the first `limit` and how many more."""
    listed = list(keys)
    if not listed:
        return "nothing"
    shown = ", ".join(listed[:limit])
    return shown if len(listed) <= limit else f"{shown} (+{len(listed) - limit} more)"


_ABSENT = object()


def _flatten(doc: dict[str, Leaf], path: str, value: Any) -> None:
    """Add `value` under `path`: mappings and records as dotted keys, lists of words as one leaf."""
    if value is None or value == "" or value is False or (type(value) in (int, float) and value == 0):
        return
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            _flatten(doc, f"{path}.{f.name}", getattr(value, f.name))
    elif isinstance(value, tuple):
        _flatten_tuple(doc, path, value)
    else:
        doc[path] = value


def _flatten_tuple(doc: dict[str, Leaf], path: str, items: tuple[Any, ...]) -> None:
    if not items:
        return
    first = items[0]
    if isinstance(first, tuple) and len(first) == 2:  # a mapping, as sorted (name, value) pairs
        for name, value in items:
            _flatten(doc, f"{path}.{name}", value)
    elif type(first) in _ITEM_KEY:
        key = _ITEM_KEY[type(first)]
        for item in items:
            name = getattr(item, key)
            item_path = f"{path}.{name}"
            if item_path in doc or any(k.startswith(item_path + ".") for k in doc):
                continue  # as the create body: the first mount on a target wins
            before = len(doc)
            for f in dataclasses.fields(item):
                if f.name != key:
                    _flatten(doc, f"{item_path}.{f.name}", getattr(item, f.name))
            if len(doc) == before:
                doc[item_path] = True  # an item with nothing but defaults is still there
    elif dataclasses.is_dataclass(first):
        for i, item in enumerate(items):  # records without a natural key (none today): by position
            _flatten(doc, f"{path}.{i}", item)
    else:
        doc[path] = list(items)
