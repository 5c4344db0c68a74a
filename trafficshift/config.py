"""Load `trafficshift.yml` into the frozen models; every problem becomes `file:line: path: why`.

The schema, one section at a time, over the checked YAML nodes of `yamlnodes`.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from trafficshift import smoke, stepping
from trafficshift.compose.resolve import resolve_compose
from trafficshift.compose.spec import ComposeRef
from trafficshift.errors import ConfigError, UnknownApp
from trafficshift.models import (
    MIRROR_METHODS,
    POST_DEPLOY_TIMEOUT,
    PRE_DEPLOY_TIMEOUT,
    PRE_STOP_TIMEOUT,
    AnalysisSpec,
    AppSpec,
    CanarySpec,
    Config,
    ConfirmSpec,
    DockerHost,
    DockerSpec,
    DockerTls,
    HealthSpec,
    HookSpec,
    MirrorSpec,
    Phase,
    RedisSpec,
    ReleaseHooks,
    RetrySpec,
    RolloutPolicy,
    ServiceSpec,
    SmokeCheck,
    StickySpec,
    TlsDomain,
    TlsSpec,
    TraefikSpec,
    WebhookSpec,
)
from trafficshift.traefik import names, rules
from trafficshift.yamlnodes import NODE_BUDGET, Errors, Node, check_graph, compose

__all__ = [
    "NODE_BUDGET",
    "load_config",
    "parse_config_text",
    "require_app",
    "resolve_config_path",
    "validate_app_name",
    "validate_listen",
]

DEFAULT_CONFIG = "trafficshift.yml"
CONFIG_ENV = "TRAFFICSHIFT_CONFIG"
# More heavy Docker calls at once than this only queue in the daemon.
MAX_DOCKER_CONCURRENCY = 64

_APP_NAME = re.compile(r"[a-z][a-z0-9-]{0,39}")
# Host names follow the app names' rule: they go into a container label and into messages.
_HOST_NAME = _APP_NAME
_DNS_NAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
_NETWORK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_ENTRYPOINT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
# A Traefik object name, optionally with its provider (`auth@file`, `secure-headers@docker`).
_TRAEFIK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*(@[A-Za-z0-9][A-Za-z0-9_-]*)?")
_DOMAIN = re.compile(r"(\*\.)?[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?")
_SAME_SITE = ("none", "lax", "strict")
# The default confirm timeout is the longest: the lock waits are sized on it (engine.PROVIDER_WAIT).
MAX_CONFIRM_TIMEOUT = 30.0
# Traefik's `rootKey`: one KV path segment (traefik/kv.py writes every key under it).
_ROOT_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# Compose's rule for project names.
_PROJECT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
# With `compose:`, the compose service says these; trafficshift.yml must not say them too.
_COMPOSE_SAYS = ("image", "environment", "command", "labels")


def resolve_config_path(cli_value: str | None) -> Path:
    """Return the config path: `-c/--config`, else `$TRAFFICSHIFT_CONFIG`, else `./trafficshift.yml`."""
    if cli_value is not None:
        return Path(cli_value)
    return Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


def require_app(config: Config, name: str) -> AppSpec:
    """The app called `name`; UnknownApp (exit 2, HTTP 404) when the config has none by that name."""
    try:
        return config.apps[name]
    except KeyError:
        raise UnknownApp(name, known=config.apps, source=config.path.name) from None


def validate_app_name(name: str) -> str | None:
    """Return why `name` is not a valid app name, or None when it is."""
    # fullmatch, not `^...$`: `$` also matches before a trailing newline.
    if _APP_NAME.fullmatch(name):
        return None
    return f"app names must match ^[a-z][a-z0-9-]{{0,39}}$, got {name!r}"


def validate_listen(value: str) -> str | None:
    """Return why `value` is not a `host:port` to listen on (`[::1]:8700` for IPv6), or None when it is."""
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535 or any(c.isspace() for c in host):
        return f"expected host:port like 127.0.0.1:8700, got {value!r}"
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host.removeprefix("[").removesuffix("]"))
        except ValueError:
            return f"expected an IPv6 address in brackets, got {host!r}"
    elif ":" in host:
        return f"write an IPv6 address in brackets, like [::1]:8700, got {value!r}"
    return None


def load_config(path: Path, *, read_compose: bool = True) -> Config:
    """Read, validate and return the config at `path`; raise ConfigError listing every problem found.

    With `read_compose`, each compose-backed app's service is read through Compose too (commands that
    start containers need it; `status` or `history` do not, and should work while a compose file is broken).
    """
    source = _display(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError([f"{source}: cannot read the config: {exc.strerror or exc}"]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError([f"{source}:{line}: not UTF-8 (bad byte at offset {exc.start})"]) from None
    config = parse_config_text(text, source=source, base_dir=path.absolute().parent)
    return resolve_compose(config) if read_compose else config


def parse_config_text(text: str, *, source: str, base_dir: Path) -> Config:
    """Validate config `text`, named `source` in messages; relative paths in it start at `base_dir`."""
    errors = Errors(source)
    root = compose(text, errors)
    # The budgeted walk runs first: it bounds everything the schema walk below can visit.
    if root is not None and check_graph(root, errors):
        config = _config(Node(root, "", root.start_mark.line + 1, errors), base_dir, Path(source).name)
        if config is not None and not errors.items:
            return config
    raise ConfigError(errors.messages())


def _display(path: Path) -> str:
    if path.is_absolute():
        try:
            return str(path.relative_to(Path.cwd()))
        except ValueError:
            pass
    return str(path)


# ---------------------------------------------------------------- the schema, one section at a time

_Convert = Callable[[Node], Any]


def _section(
    node: Node, fields: Mapping[str, _Convert], required: Collection[str] = ()
) -> tuple[dict[str, Node], dict[str, Any]] | None:
    """Convert each present field; return the entries and the valid values (keyword arguments of a model)."""
    entries = node.mapping(fields, required)
    if entries is None:
        return None
    values = {key: fields[key](value) for key, value in entries.items()}
    return entries, {key: value for key, value in values.items() if value is not None}


def _config(root: Node, base_dir: Path, name: str) -> Config | None:
    def path(node: Node) -> Path | None:
        value = node.string()
        return None if value is None else base_dir / value

    known = ("traefik", "state_dir", "apps", "service", "docker", "webhooks", "confirm", "hosts")
    top = root.mapping(known, required=("traefik", "apps"), extensions=True)
    if top is None:
        return None
    traefik = _traefik(top["traefik"], path) if "traefik" in top else None
    # When the traefik section itself is broken, do not pile "needs metrics_url" errors on top.
    has_metrics = traefik is None or "metrics_url" in traefik[0] or "metrics_urls" in traefik[0]
    has_entrypoint = traefik is None or "entrypoint_url" in traefik[0]
    fields: dict[str, _Convert] = {
        "listen": _listen,
        "token_file": path,
        "schedule_grace": Node.duration,
        "retention": lambda n: n.duration(positive=True),
        "max_connections": lambda n: n.integer(1, 1_000_000),
        "header_timeout": lambda n: n.duration(positive=True),
        "keepalive_timeout": lambda n: n.duration(positive=True),
    }
    service = _section(top["service"], fields) if "service" in top else ({}, {})
    fields = {"concurrency": lambda n: n.integer(1, MAX_DOCKER_CONCURRENCY)}
    docker = _section(top["docker"], fields) if "docker" in top else ({}, {})
    state_dir = path(top["state_dir"]) if "state_dir" in top else base_dir / ".trafficshift"
    hosts = _hosts(top["hosts"], base_dir) if "hosts" in top else ()
    host_names = None if hosts is None else tuple(h.name for h in hosts)
    apps: dict[str, AppSpec] = {}
    entries = (top["apps"].mapping(None) if "apps" in top else None) or {}
    for app_name, node in entries.items():
        if why := validate_app_name(app_name):
            root.errors.add(node.key_line, node.path, why)
        elif app := _app(
            app_name,
            node,
            has_metrics=has_metrics,
            has_entrypoint=has_entrypoint,
            base_dir=base_dir,
            hosts=host_names,
        ):
            apps[app_name] = app
        # App `web` owns the Traefik services `web-blue`/`web-green`: an app by such a name would define
        # the same service in another file, and Traefik drops both.
        owner = next((o for o in entries if names.owns(o, app_name)), None)
        if owner is not None:
            root.errors.add(node.key_line, node.path, f"collides with Traefik object {app_name} of {owner}")
    # An app with a mirror phase defines the router and service `<app>-mirror` for its duration.
    for owner, app in apps.items():
        other = names.mirror_service(owner)
        if app.rollout.mirror is not None and other in entries:
            root.errors.add(
                entries[other].key_line, entries[other].path, f"collides with the mirror of {owner}"
            )
    if traefik is not None and traefik[1].get("provider") == "redis":
        for app_name, app in apps.items():
            if app.rollout.mirror is not None:  # the mirror's router and service are written as a file only
                node = entries[app_name]
                root.errors.add(node.key_line, node.path, "rollout.mirror needs traefik.provider: file")
    webhooks = _webhooks(top["webhooks"], base_dir) if "webhooks" in top else ()
    confirm = _confirm(top["confirm"], base_dir) if "confirm" in top else None
    if traefik is None or service is None or docker is None or state_dir is None or hosts is None:
        return None
    return Config(
        path=base_dir / name,
        traefik=TraefikSpec(**traefik[1]),
        state_dir=state_dir,
        apps=apps,
        service=ServiceSpec(**service[1]),
        docker=DockerSpec(**docker[1]),
        webhooks=webhooks or (),
        confirm=confirm,
        hosts=hosts,
    )


def _traefik(
    node: Node, path: Callable[[Node], Path | None]
) -> tuple[dict[str, Node], dict[str, Any]] | None:
    """The `traefik` section: the file provider's folder, or Redis; one API URL, or a fleet's."""
    fields: dict[str, _Convert] = {
        "dynamic_dir": path,
        "api_url": _api_url,
        "api_urls": lambda n: _url_list(n, _api_url),
        "metrics_url": _url,
        "metrics_urls": lambda n: _url_list(n, _url),
        "entrypoints": _entrypoints,
        "provider": _provider,
        "redis": _redis,
        "confirm_timeout": _confirm_timeout,
        "entrypoint_url": lambda n: url.rstrip("/") if (url := _url(n)) else None,
    }
    got = _section(node, fields)
    if got is None:
        return None
    entries, values = got
    ok = all(key in values for key in entries)
    if "provider" in entries and "provider" not in values:
        return None  # said already; what else it requires depends on it
    provider = values.get("provider", "file")
    for one, many in (("api_url", "api_urls"), ("metrics_url", "metrics_urls")):
        if one in entries and many in entries:
            entries[many].fail(f"give {one} (one Traefik) or {many} (several), not both")
            ok = False
    if provider == "file" and "dynamic_dir" not in entries:
        node.fail("missing required key 'dynamic_dir' (where the file provider reads; or provider: redis)")
        ok = False
    if provider == "redis" and "redis" not in entries:
        node.fail("missing required key 'redis' (provider: redis writes there)")
        ok = False
    if "redis" in entries and provider != "redis":
        entries["redis"].fail("set provider: redis to use it (the routing goes to dynamic_dir otherwise)")
        ok = False
    return (entries, values) if ok else None


def _confirm_timeout(node: Node) -> float | None:
    value = node.duration(positive=True)
    if value is not None and value > MAX_CONFIRM_TIMEOUT:
        node.fail(f"must be at most {MAX_CONFIRM_TIMEOUT:g}s, got {node.node.value!r}")
        return None
    return value


def _provider(node: Node) -> str | None:
    value = node.string()
    if value is not None and value not in ("file", "redis"):
        node.fail(f"expected file or redis, got {value!r}")
        return None
    return value


def _redis(node: Node) -> RedisSpec | None:
    entries = node.mapping(("url", "root_key"), required=("url",))
    if entries is None:
        return None
    url = entries["url"].string() if "url" in entries else None
    if url is not None:
        parts = urlsplit(url)
        try:
            _ = parts.port
            valid = parts.scheme in ("redis", "rediss", "unix") and bool(parts.hostname or parts.path)
        except ValueError:
            valid = False
        if valid and parts.scheme != "unix" and parts.path.strip("/") and not parts.path.strip("/").isdigit():
            valid = False
        if not valid:
            entries["url"].fail(f"expected redis://host:port/<db> (or rediss://, unix://), got {url!r}")
            url = None
    root = entries["root_key"].string() if "root_key" in entries else "traefik"
    if root is not None and not _ROOT_KEY.fullmatch(root):
        entries["root_key"].fail(
            f"expected one key segment (letters, digits, . _ -) like traefik, got {root!r}"
        )
        root = None
    if url is None or root is None:
        return None
    return RedisSpec(url=url, root_key=root)


def _url_list(node: Node, convert: Callable[[Node], str | None]) -> tuple[str, ...] | None:
    items = node.items()
    if items is None:
        return None
    if not items:
        node.fail("must list at least one URL")
        return None
    urls = [convert(item) for item in items]
    seen: set[str] = set()
    for item, url in zip(items, urls, strict=True):
        if url is not None and url in seen:
            item.fail(f"{url} is listed twice")
            return None
        seen.add(url or "")
    return None if None in urls else tuple(u for u in urls if u)


def _url(node: Node) -> str | None:
    value = node.string()
    try:
        parts = urlsplit(value or "")
        _ = parts.port  # raises ValueError for a bad port
        if parts.scheme in ("http", "https") and parts.hostname:
            return value
    except ValueError:
        pass
    if value is not None:
        node.fail(f"expected an http:// or https:// URL, got {value!r}")
    return None


def _api_url(node: Node) -> str | None:
    url = _url(node)
    return None if url is None else url.rstrip("/")  # later joined with /api/...


def _entrypoints(node: Node) -> tuple[str, ...] | None:
    items = node.items()
    if items is not None and not items:
        node.fail("must list at least one entrypoint")
    names = [(item, item.string()) for item in items or []]
    for item, name in names:
        if name is not None and not _ENTRYPOINT_NAME.fullmatch(name):
            item.fail(f"expected an entrypoint name like web, got {name!r}")
    return tuple(name for _, name in names if name) or None


def _listen(node: Node) -> str | None:
    value = node.string()
    if value is not None and (why := validate_listen(value)):
        node.fail(why)
        return None
    return value


def _app(
    name: str,
    node: Node,
    *,
    has_metrics: bool,
    has_entrypoint: bool,
    base_dir: Path,
    hosts: tuple[str, ...] | None,
) -> AppSpec | None:
    fields: dict[str, _Convert] = {
        "image": _image,
        "port": lambda n: n.integer(1, 65535),
        "replicas": lambda n: n.integer(1, 100),
        "rule": Node.string,
        "network": _network,
        "publish": _publish,
        "environment": lambda n: n.text_map(_check_env_name),
        "command": _command,
        "labels": lambda n: n.text_map(_check_label_name),
        "health": _health,
        "rollout": _rollout,
        "analysis": _analysis,
        "webhooks": lambda n: _webhooks(n, base_dir),
        "confirm": lambda n: _confirm(n, base_dir),
        "compose": lambda n: _compose(n, base_dir),
        "hooks": _release_hooks,
        "hosts": lambda n: _app_hosts(n, hosts),
        "entrypoints": _entrypoints,
        "tls": _tls,
        "middlewares": _middlewares,
        "priority": lambda n: n.integer(1, 1_000_000_000),
        "retry": _retry,
        "canary": _canary,
        "smoke": _smoke,
    }
    got = _section(node, fields, ("port", "rule"))
    if got is None:
        return None
    entries, values = got
    required: tuple[str, ...] = ("port", "rule")
    if "compose" in entries:
        _check_compose_alone(entries)
        values["image"] = ""  # the compose service's, once Compose has read it
        required += ("compose",)
    else:
        required += ("image",)
        if "image" not in entries:
            node.fail("missing required key 'image'")
    if "network" in entries and "publish" in entries:
        entries["publish"].fail("set exactly one of network and publish, not both")
    elif "network" not in entries and "publish" not in entries:
        node.fail("set exactly one of network and publish")
    if hosts and "network" in entries:
        # A Docker network does not span engines: Traefik reaches each replica at its host's address.
        entries["network"].fail(
            "not with hosts: replicas on several Docker hosts are reached at <address>:<published port>;"
            " set publish instead (e.g. 0.0.0.0)"
        )
    if hosts and "hosts" not in entries:
        values["hosts"] = hosts  # every host, in the config's order
    if "analysis" in entries and not has_metrics:
        entries["analysis"].fail("needs traefik.metrics_url, where analysis reads Traefik's metrics")
    if "smoke" in entries and not has_entrypoint:
        entries["smoke"].fail("needs traefik.entrypoint_url, where smoke checks reach Traefik's entrypoint")
    if "smoke" in entries and "rule" in values and smoke.host_of(values["rule"]) is None:
        entries["smoke"].fail("needs a Host(`...`) in the app's rule: the Host header of the checks")
    return AppSpec(name=name, **values) if all(key in values for key in required) else None


def _hosts(node: Node, base_dir: Path) -> tuple[DockerHost, ...] | None:
    """The top-level `hosts`: the Docker engines the apps' replicas are spread over."""
    items = node.items()
    if items is None:
        return None
    if not items:
        node.fail("must list at least one host; leave hosts out to use the local Docker engine")
        return None
    hosts = [_host(item, base_dir) for item in items]
    names: set[str] = set()
    endpoints: dict[str, str] = {}  # docker URL -> the host that has it
    for item, host in zip(items, hosts, strict=True):
        if host is None:
            continue
        if host.name in names:
            item.fail(f"host {host.name} is listed twice")
            return None
        if host.docker in endpoints:
            item.fail(f"docker {host.docker!r} is host {endpoints[host.docker]}'s already")
            return None
        names.add(host.name)
        endpoints[host.docker] = host.name
    return tuple(h for h in hosts if h is not None) if all(hosts) else None


def _host(node: Node, base_dir: Path) -> DockerHost | None:
    fields: dict[str, _Convert] = {
        "name": _host_name,
        "docker": _docker_url,
        "address": _address,
        "tls": lambda n: _docker_tls(n, base_dir),
    }
    got = _section(node, fields, required=("name", "docker", "address"))
    if got is None:
        return None
    entries, values = got
    if "tls" in entries and "docker" in values and not values["docker"].startswith("tcp://"):
        entries["tls"].fail("applies to a tcp:// endpoint only")
        return None
    # Every key present and valid, the required ones among them.
    if any(key not in values for key in entries) or any(
        k not in values for k in ("name", "docker", "address")
    ):
        return None
    return DockerHost(**values)


def _host_name(node: Node) -> str | None:
    value = node.string()
    if value is not None and not _HOST_NAME.fullmatch(value):
        node.fail(f"host names must match ^[a-z][a-z0-9-]{{0,39}}$, got {value!r}")
        return None
    return value


_HTTP_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def _smoke(node: Node) -> tuple[SmokeCheck, ...] | None:
    """`smoke:`, a list of checks; every item is checked, so each bad one is reported."""
    checks: list[SmokeCheck | None] = [_smoke_check(item) for item in node.items() or []]
    if node.tag == "seq" and not checks:
        node.fail("must list at least one check; leave smoke out for none")
    return tuple(c for c in checks if c is not None) if checks and all(checks) else None


def _smoke_check(node: Node) -> SmokeCheck | None:
    fields: dict[str, _Convert] = {
        "path": _smoke_path,
        "method": _smoke_method,
        "status": _smoke_status,
        "body": Node.string,
        "headers": _smoke_headers,
        "timeout": lambda n: n.duration(positive=True),
        "count": lambda n: n.integer(1, 100),
    }
    got = _section(node, fields, required=("path",))
    if got is None or len(got[1]) != len(got[0]) or "path" not in got[1]:
        return None
    return SmokeCheck(**got[1])


def _smoke_path(node: Node) -> str | None:
    value = node.string()
    if value is not None and (not value.startswith("/") or any(c.isspace() for c in value)):
        node.fail(f"expected a path like /healthz (starting with /, no spaces), got {value!r}")
        return None
    return value


def _docker_url(node: Node) -> str | None:
    """A Docker endpoint as Docker's own clients write it (DOCKER_HOST)."""
    value = node.string()
    if value is None:
        return None
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        parts, port = None, None
    if parts is not None and not parts.query and not parts.fragment:
        if parts.scheme == "unix" and not parts.netloc and parts.path.startswith("/"):
            return value
        if parts.scheme == "tcp" and parts.hostname and port and parts.path in ("", "/"):
            return value.rstrip("/")
        if parts.scheme == "ssh" and parts.hostname and parts.path in ("", "/"):
            return value.rstrip("/")
    node.fail(f"expected unix:///path, tcp://host:port or ssh://[user@]host[:port], got {value!r}")
    return None


def _address(node: Node) -> str | None:
    """Where Traefik reaches a host's published ports: an IP address or a DNS name."""
    value = node.string()
    if value is None:
        return None
    try:
        return str(ipaddress.ip_address(value.removeprefix("[").removesuffix("]")))
    except ValueError:
        pass
    if _DNS_NAME.fullmatch(value):
        return value
    node.fail(f"expected a host name or IP address that Traefik reaches the host at, got {value!r}")
    return None


def _docker_tls(node: Node, base_dir: Path) -> DockerTls | None:
    """Docker's TLS files (`ca.pem`, `cert.pem`, `key.pem`), checked now so that `check` reports them."""

    def readable(n: Node) -> Path | None:
        name = n.string()
        if name is None:
            return None
        path = base_dir / name
        if not path.is_file():
            n.fail(f"cannot read {name}: no such file")
            return None
        return path

    fields: dict[str, _Convert] = {"ca": readable, "cert": readable, "key": readable}
    got = _section(node, fields, required=("ca", "cert", "key"))
    if got is None or any(key not in got[1] for key in fields):
        return None
    return DockerTls(**got[1])


def _app_hosts(node: Node, hosts: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """An app's `hosts`: names from the top-level list, each once, in the order replicas are spread."""
    items = node.items()
    if items is None:
        return None
    if hosts is None:
        return None  # the top-level list is broken: reported there
    if not hosts:
        node.fail(
            "there are no top-level hosts to choose from; leave hosts out to use the local Docker engine"
        )
        return None
    if not items:
        node.fail("must list at least one host; leave hosts out to spread over all of them")
        return None
    names: list[str] = []
    for item in items:
        name = item.string()
        if name is None:
            return None
        if name not in hosts:
            item.fail(f"unknown host {name!r}; hosts: {', '.join(hosts)}")
            return None
        if name in names:
            item.fail(f"host {name} is listed twice")
            return None
        names.append(name)
    return tuple(names)


def _smoke_method(node: Node) -> str | None:
    value = node.string()
    if value is not None and value.upper() not in _HTTP_METHODS:
        node.fail(f"expected an HTTP method, one of {', '.join(_HTTP_METHODS)}; got {value!r}")
        return None
    return None if value is None else value.upper()


def _smoke_status(node: Node) -> tuple[int, int] | None:
    if node.tag == "int":
        code = node.integer(100, 599)
        return None if code is None else (code, code)
    text = node.string()
    status = None if text is None else smoke.parse_status(text)
    if text is not None and status is None:
        node.fail(f"expected a status like 200, a class like 2xx or a range like 200-299, got {text!r}")
    return status


def _smoke_headers(node: Node) -> tuple[tuple[str, str], ...] | None:
    entries = node.mapping(None)
    if entries is None:
        return None
    headers: list[tuple[str, str]] = []
    for name, value_node in entries.items():
        if not _HTTP_TOKEN.fullmatch(name) or name.lower() == "host":
            value_node.errors.add(
                value_node.key_line, value_node.path, f"expected a header name (not Host), got {name!r}"
            )
            return None
        value = value_node.string()
        if value is None:
            return None
        headers.append((name, value))
    return tuple(headers)


def _check_compose_alone(entries: Mapping[str, Node]) -> None:
    for key in _COMPOSE_SAYS:
        if key in entries:
            where = entries[key]
            where.errors.add(where.key_line, where.path, f"not with compose: the compose service sets {key}")
    rollout = entries["rollout"].mapping(None) if "rollout" in entries else None
    if rollout and "stop_timeout" in rollout:
        where = rollout["stop_timeout"]
        why = "not with compose: the compose service's stop_grace_period applies"
        where.errors.add(where.key_line, where.path, why)


def _compose(node: Node, base_dir: Path) -> ComposeRef | None:
    fields: dict[str, _Convert] = {"file": _compose_files, "service": Node.string, "project": _project}
    got = _section(node, fields, required=("file", "service"))
    if got is None or "file" not in got[1] or "service" not in got[1]:
        return None
    values = got[1]
    return ComposeRef(
        files=tuple(base_dir / name for name in values["file"]),
        service=values["service"],
        project=values.get("project"),
        where=f"{node.errors.source}:{node.key_line}: {node.path}",
    )


def _compose_files(node: Node) -> tuple[str, ...] | None:
    """One file, or a list: Compose merges them in order (as repeated `-f`), overrides last."""
    if node.tag != "seq":
        name = node.string()
        return None if name is None else (name,)
    items = node.items() or []
    if not items:
        node.fail("must list at least one compose file")
    names = [item.string() for item in items]
    return tuple(n for n in names if n) if names and all(names) else None


def _project(node: Node) -> str | None:
    value = node.string()
    if value is not None and not _PROJECT_NAME.fullmatch(value):
        node.fail(f"a Compose project name is lowercase letters, digits, - and _, got {value!r}")
        return None
    return value


def _image(node: Node) -> str | None:
    value = node.string()
    if value is not None and any(c.isspace() for c in value):
        node.fail(f"an image reference has no whitespace, got {value!r}")
        return None
    return value


def _network(node: Node) -> str | None:
    value = node.string()
    if value is not None and not _NETWORK_NAME.fullmatch(value):
        node.fail(f"expected a Docker network name, got {value!r}")
    elif value in ("bridge", "host", "none"):
        # No DNS names there, so Traefik could not reach http://<container-name>:<port>.
        node.fail(f"use a user-defined network; on {value!r} containers cannot be reached by name")
    else:
        return value
    return None


def _publish(node: Node) -> str | None:
    value = node.string()
    try:
        return None if value is None else str(ipaddress.ip_address(value))
    except ValueError:
        node.fail(f"expected an IP address like 127.0.0.1, got {value!r}")
        return None


def _check_env_name(key: str) -> str | None:
    return f"not a valid variable name: {key!r}" if not key or "=" in key or "\0" in key else None


def _check_label_name(key: str) -> str | None:
    if key.startswith("trafficshift."):
        return "the trafficshift. prefix is reserved for trafficshift's own labels"
    return None if key else "label names must not be empty"


def _command(node: Node) -> tuple[str, ...] | None:
    return _words(
        node, example='["./serve", "--port", "8080"]', empty="leave command out to run the image's own"
    )


def _words(node: Node, *, example: str, empty: str) -> tuple[str, ...] | None:
    """A non-empty list of strings (an argv: no shell parses it)."""
    if node.tag == "str":
        node.fail(f"expected a list of strings like {example}, got a string")
        return None
    items = node.items()
    if items is None:
        return None
    if not items:
        node.fail(f"must not be empty; {empty}")
    words = [str(item.node.value) for item in items if item.expect("str")]
    return tuple(words) if words and len(words) == len(items) else None


def _health(node: Node) -> HealthSpec | None:
    def positive(n: Node) -> float | None:
        return n.duration(positive=True)

    fields: dict[str, _Convert] = {
        "path": _health_path,
        "interval": positive,
        "timeout": positive,
        "healthy_threshold": lambda n: n.integer(1, 100),
        "start_timeout": positive,
    }
    got = _section(node, fields)
    return None if got is None else HealthSpec(**got[1])


def _health_path(node: Node) -> str | None:
    value = node.string()
    if value is not None and (not value.startswith("/") or any(c.isspace() for c in value)):
        node.fail(f"expected a URL path like /healthz, got {value!r}")
        return None
    return value


def _rollout(node: Node) -> RolloutPolicy | None:
    fields: dict[str, _Convert] = {
        "steps": _steps,
        "pause": Node.duration,
        "drain": Node.duration,
        "stop_timeout": Node.duration,
        "mirror": _mirror,
        "sticky": _sticky,
    }
    got = _section(node, fields)
    if got is None:
        return None
    values = got[1]
    if "steps" in values:
        planned: tuple[tuple[int, float | None], ...] = values.pop("steps")
        values["steps"] = tuple(weight for weight, _ in planned)
        pauses = tuple(pause for _, pause in planned)
        values["pauses"] = () if all(p is None for p in pauses) else pauses
    return RolloutPolicy(**values)


# Methods a mirror may copy: those of RFC 9110 that carry a request to the app (CONNECT does not).
_HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")


def _mirror(node: Node) -> MirrorSpec | None:
    fields: dict[str, _Convert] = {
        "percent": lambda n: n.integer(1, 100),
        "duration": lambda n: n.duration(positive=True),
        "methods": _mirror_methods,
    }
    got = _section(node, fields, required=("percent", "duration"))
    if got is None or "percent" not in got[1] or "duration" not in got[1]:
        return None
    if "methods" in got[0] and "methods" not in got[1]:
        return None
    return MirrorSpec(**got[1])


def _mirror_methods(node: Node) -> tuple[str, ...] | None:
    items = node.items()
    if items is not None and not items:
        node.fail(f"must list at least one method; leave methods out to mirror {', '.join(MIRROR_METHODS)}")
        return None
    methods: list[str] = []
    for item in items or []:
        name = item.string()
        if name is None:
            return None
        if name.upper() not in _HTTP_METHODS:
            item.fail(f"expected an HTTP method, one of {', '.join(_HTTP_METHODS)}; got {name!r}")
            return None
        if name.upper() in methods:
            item.fail(f"{name.upper()} is listed twice")
            return None
        methods.append(name.upper())
    return tuple(methods) or None


def _sticky(node: Node) -> StickySpec | None:
    fields: dict[str, _Convert] = {
        "cookie": lambda n: _token(n, rules.TOKEN, "a cookie name like ts_colour"),
        "secure": Node.boolean,
        "httpOnly": Node.boolean,
        "sameSite": lambda n: _choice(n, _SAME_SITE),
    }
    got = _section(node, fields, required=("cookie",))
    if got is None or "cookie" not in got[1]:
        return None
    values = got[1]
    return StickySpec(
        cookie=values["cookie"],
        secure=values.get("secure", False),
        http_only=values.get("httpOnly", False),
        same_site=values.get("sameSite"),
    )


def _canary(node: Node) -> CanarySpec | None:
    fields: dict[str, _Convert] = {
        "header": lambda n: _token(n, rules.HEADER, "a header name like X-Canary"),
        "cookie": lambda n: _token(n, rules.TOKEN, "a cookie name like canary"),
    }
    got = _section(node, fields)
    if got is None:
        return None
    entries, values = got
    if not entries:
        node.fail("set header and/or cookie: what marks a request for the canary")
    return CanarySpec(**values) if values and len(values) == len(entries) else None


def _tls(node: Node) -> TlsSpec | None:
    if node.tag == "null":  # `tls:` alone: TLS with Traefik's default certificate and options
        return TlsSpec()
    fields: dict[str, _Convert] = {
        "certResolver": lambda n: _token(n, _TRAEFIK_NAME, "a certificate resolver name"),
        "domains": _tls_domains,
        "options": lambda n: _token(n, _TRAEFIK_NAME, "a TLS options name like modern@file"),
    }
    got = _section(node, fields)
    if got is None:
        return None
    values = got[1]
    return TlsSpec(
        cert_resolver=values.get("certResolver"),
        domains=values.get("domains", ()),
        options=values.get("options"),
    )


def _tls_domains(node: Node) -> tuple[TlsDomain, ...] | None:
    domains: list[TlsDomain | None] = []
    for item in node.items() or []:
        got = _section(item, {"main": _domain, "sans": _domain_list}, required=("main",))
        domains.append(TlsDomain(**got[1]) if got is not None and "main" in got[1] else None)
    return tuple(d for d in domains if d is not None) if all(domains) else None


def _domain(node: Node) -> str | None:
    return _token(node, _DOMAIN, "a domain name like example.com or *.example.com")


def _domain_list(node: Node) -> tuple[str, ...] | None:
    names = [_domain(item) for item in node.items() or []]
    return tuple(n for n in names if n) if all(names) else None


def _middlewares(node: Node) -> tuple[str, ...] | None:
    names = [_token(item, _TRAEFIK_NAME, "a middleware name like auth@file") for item in node.items() or []]
    return tuple(n for n in names if n) if all(names) else None


def _retry(node: Node) -> RetrySpec | None:
    fields: dict[str, _Convert] = {
        "attempts": lambda n: n.integer(1, 10),
        "initialInterval": lambda n: n.duration(positive=True),
    }
    got = _section(node, fields)
    if got is None:
        return None
    values = got[1]
    return RetrySpec(
        attempts=values.get("attempts", RetrySpec.attempts),
        initial_interval=values.get("initialInterval", RetrySpec.initial_interval),
    )


def _token(node: Node, pattern: re.Pattern[str], what: str) -> str | None:
    value = node.string()
    if value is not None and not pattern.fullmatch(value):
        node.fail(f"expected {what}, got {value!r}")
        return None
    return value


def _choice(node: Node, choices: tuple[str, ...]) -> str | None:
    value = node.string()
    if value is not None and value not in choices:
        node.fail(f"expected one of {', '.join(choices)}, got {value!r}")
        return None
    return value


def _steps(node: Node) -> tuple[tuple[int, float | None], ...] | None:
    """Each step's weight and own pause (None: the rollout's): `10`, or `{weight: 10, pause: 5m}` where
    the pause may be `until-resumed` (stepping.py). Every item is checked, so each bad one is reported."""
    steps: list[tuple[int, float | None]] = []
    ok = True
    for item in node.items() or []:
        value, pause, fine = None, None, True
        if item.tag == "map":
            entries = item.mapping(("weight", "pause"), required=("weight",))
            if entries is not None and "weight" in entries:
                value = entries["weight"].integer(1, 100)
            if entries is not None and "pause" in entries:
                pause = _step_pause(entries["pause"])
                fine = pause is not None
        else:
            value = item.integer(1, 100)
        if value is None or not fine:
            ok = False
            continue
        if steps and value <= steps[-1][0]:
            item.fail(f"steps must rise strictly, got {value} after {steps[-1][0]}")
            ok = False
            continue
        steps.append((value, pause))
    if ok and node.tag == "seq" and (not steps or steps[-1][0] != 100):
        node.fail(f"must end at 100, got {[weight for weight, _ in steps]}")
    return tuple(steps) if ok and steps and steps[-1][0] == 100 else None


def _step_pause(node: Node) -> float | None:
    text = node.string()
    if text is None:
        return None
    try:
        return stepping.parse_pause(text)
    except ValueError:
        node.fail(f"expected a duration like 5m, or {stepping.UNTIL_RESUMED_TEXT}, got {text!r}")
        return None


def _analysis(node: Node) -> AnalysisSpec | None:
    fields: dict[str, _Convert] = {
        "max_error_rate": lambda n: n.number(0.0, 1.0),
        "max_p95_latency": lambda n: n.duration(positive=True),
        "min_requests": lambda n: n.integer(0, 10**9),
        "interval": lambda n: n.duration(positive=True),
        "compare_to_old": Node.boolean,
    }
    got = _section(node, fields)
    if got is None:
        return None
    if "max_error_rate" not in got[0] and "max_p95_latency" not in got[0]:
        node.fail("set max_error_rate and/or max_p95_latency; without either there is nothing to judge")
    return AnalysisSpec(**got[1])


# ---------------------------------------------------------------- release hooks

_HOOK_TIMEOUTS = {
    "pre_deploy": PRE_DEPLOY_TIMEOUT,
    "pre_stop": PRE_STOP_TIMEOUT,
    "post_deploy": POST_DEPLOY_TIMEOUT,
}


def _release_hooks(node: Node) -> ReleaseHooks | None:
    fields = {kind: _release_hook_with(default) for kind, default in _HOOK_TIMEOUTS.items()}
    got = _section(node, fields)
    if got is None or len(got[1]) != len(got[0]):
        return None
    return ReleaseHooks(**got[1])


def _release_hook_with(default_timeout: float) -> _Convert:
    return lambda node: _release_hook(node, default_timeout)


def _release_hook(node: Node, default_timeout: float) -> HookSpec | None:
    fields: dict[str, _Convert] = {
        "command": lambda n: _words(n, example='["./manage.py", "migrate"]', empty="name the command to run"),
        "timeout": lambda n: n.duration(positive=True),
    }
    got = _section(node, fields, required=("command",))
    if got is None or "command" not in got[1]:
        return None
    return HookSpec(command=got[1]["command"], timeout=got[1].get("timeout", default_timeout))


# ---------------------------------------------------------------- webhooks

_PHASES = tuple(str(p) for p in Phase)


def _webhooks(node: Node, base_dir: Path) -> tuple[WebhookSpec, ...] | None:
    hooks = [_webhook(item, base_dir) for item in node.items() or []]
    return tuple(h for h in hooks if h is not None) if all(hooks) else None


def _webhook(node: Node, base_dir: Path) -> WebhookSpec | None:
    values = _hook(node, base_dir, {"events": _hook_events, "timeout": lambda n: n.duration(positive=True)})
    return None if values is None else WebhookSpec(**values)


def _confirm(node: Node, base_dir: Path) -> ConfirmSpec | None:
    values = _hook(node, base_dir, {"timeout": lambda n: n.duration(positive=True)})
    return None if values is None else ConfirmSpec(**values)


def _hook(node: Node, base_dir: Path, extra: Mapping[str, _Convert]) -> dict[str, Any] | None:
    """The fields webhooks and the confirm gate share: url, a secret (exactly one source), retries."""
    fields: dict[str, _Convert] = {
        "url": _url,
        "secret_file": Node.string,
        "secret_env": Node.string,
        "retries": lambda n: n.integer(0, 10),
        **extra,
    }
    got = _section(node, fields, required=("url",))
    if got is None:
        return None
    entries, values = got
    secret = _secret(node, entries, values, base_dir)
    if secret is None or "url" not in values:
        return None
    values.pop("secret_file", None)
    values.pop("secret_env", None)
    return {**values, "secret": secret}


def _secret(
    node: Node, entries: Mapping[str, Node], values: Mapping[str, Any], base_dir: Path
) -> bytes | None:
    """Read the HMAC key now, so that `check` reports a missing one before any rollout starts."""
    secret: bytes
    if ("secret_file" in entries) == ("secret_env" in entries):
        node.fail("set exactly one of secret_file and secret_env (the key deliveries are signed with)")
        return None
    if "secret_file" in entries:
        where = entries["secret_file"]
        name: str | None = values.get("secret_file")
        if name is None:
            return None
        try:
            secret = (base_dir / name).read_bytes().strip()
        except OSError as exc:
            where.fail(f"cannot read {name}: {exc.strerror or exc}")
            return None
    else:
        where = entries["secret_env"]
        name = values.get("secret_env")
        if name is None:
            return None
        secret = os.environ.get(name, "").strip().encode()
    if not secret:
        where.fail(f"the secret in {name} is empty or unset")
        return None
    return secret


def _hook_events(node: Node) -> frozenset[str] | None:
    names = [(item, item.string()) for item in node.items() or []]
    if node.tag == "seq" and not names:
        node.fail("must list at least one event; leave events out to send all of them")
    for item, name in names:
        if name is not None and name not in _PHASES:
            item.fail(f"unknown event {name!r}; expected one of {', '.join(_PHASES)}")
            return None
    events = frozenset(name for _, name in names if name)
    return events if events and len(events) == len(names) else None
