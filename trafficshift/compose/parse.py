"""Compose's normalised JSON of one service -> ContainerSpec; every key is applied or refused by name.

`docker compose config --format json` has already interpolated, merged and resolved the files (`.env`,
`env_file`, `extends`, profiles, override files, absolute paths). What is decided here is, for each key,
whether trafficshift applies it to each colour's containers as Compose would (`body.py` says how) or refuses
it with the reason. A key whose value is empty or Compose's default changes nothing and passes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trafficshift.compose.attach import read_files, read_networks, read_volumes
from trafficshift.compose.reader import Keys, Problems
from trafficshift.compose.spec import (
    ContainerSpec,
    Dependency,
    Healthcheck,
    Logging,
    Resources,
    RestartPolicy,
    Ulimit,
)

_RESERVED_LABELS = {
    "trafficshift.": "the trafficshift. prefix is reserved for trafficshift's own labels",
    "com.docker.compose.": "the com.docker.compose. prefix would make Compose take the containers for its own"
    " (and replace or remove them)",
}
_RESTART = {"no", "always", "unless-stopped", "on-failure"}
_CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}


class Refused(Exception):
    """The service cannot be deployed as it is written; each problem reads `services.web.key: why`."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))


def parse_service(doc: Mapping[str, Any], *, service: str, replicas: int) -> ContainerSpec:
    """The spec of `service` in Compose's JSON `doc`; raise Refused naming every key that cannot be applied.

    `replicas` is the app's count in trafficshift.yml: `scale`/`deploy.replicas` must agree with it.
    """
    services = doc.get("services") or {}
    if service not in services:
        known = ", ".join(sorted(services)) or "none"
        raise Refused([f"services: no service {service!r} (services: {known})"])
    problems = Problems()
    s = problems.keys(services[service], f"services.{service}")
    _refuse_what_trafficshift_does_itself(s, replicas=replicas)
    project = str(doc.get("name") or "")
    build_context = _build_context(s)
    # Compose's own name for the image it builds when the service names none (`docker compose build`
    # tags it so, and `up` runs it): `<project>-<service>`.
    image = s.text("image") or (f"{project}-{service}" if build_context else "")
    if not image:
        s.fail("image", "missing: trafficshift deploys an image, or builds one from `build:`")
    # Compose selects services by profile; `develop` drives `docker compose watch`, `attach` the log
    # output of `up`: none of them changes a container.
    for key in ("profiles", "develop", "attach"):
        s.get(key)
    if (policy := s.text("pull_policy")) not in ("", "missing", "if_not_present"):
        s.fail(
            "pull_policy", f"{policy!r} is not supported: trafficshift pulls an image only when it is missing"
        )
    networks, network_resources = read_networks(s, doc, problems, service=service)
    mounts, volumes = read_volumes(s, doc, problems)
    spec = ContainerSpec(
        project=project,
        service=service,
        image=image,
        command=s.words("command"),
        entrypoint=s.words("entrypoint"),
        environment=_environment(s),
        working_dir=s.text("working_dir"),
        user=s.text("user"),
        hostname=s.text("hostname"),
        domainname=s.text("domainname"),
        labels=_labels(s),
        mounts=(
            *mounts,
            *read_files(s, doc, problems, kind="secrets", base="/run/secrets/"),
            *read_files(s, doc, problems, kind="configs", base="/"),
        ),
        tmpfs=_tmpfs(s),
        networks=networks,
        expose=tuple(p if "/" in p else f"{p}/tcp" for p in s.strings("expose")),
        healthcheck=_healthcheck(s),
        resources=_resources(s),
        ulimits=_ulimits(s),
        sysctls=s.pairs("sysctls"),
        cap_add=s.strings("cap_add"),
        cap_drop=s.strings("cap_drop"),
        read_only=s.flag("read_only"),
        init=s.flag("init") if s.get("init") is not None else None,
        privileged=s.flag("privileged"),
        shm_size=s.integer("shm_size"),
        extra_hosts=tuple(_extra_host(h) for h in s.strings("extra_hosts")),
        dns=s.strings("dns"),
        dns_search=s.strings("dns_search"),
        dns_opt=s.strings("dns_opt"),
        security_opt=_security_opt(s),
        group_add=s.strings("group_add"),
        tty=s.flag("tty"),
        stdin_open=s.flag("stdin_open"),
        oom_score_adj=s.integer("oom_score_adj"),
        logging=_logging(s),
        stop_signal=s.text("stop_signal"),
        stop_grace_period=(s.duration_ns("stop_grace_period") / 1e9) if "stop_grace_period" in s else None,
        restart=_restart(s),
        volumes=volumes,
        network_resources=network_resources,
        depends_on=_depends_on(s),
        build_context=build_context,
    )
    problems.refuse_unread()
    if problems.lines:
        raise Refused(problems.lines)
    return spec


def _refuse_what_trafficshift_does_itself(s: Keys, *, replicas: int) -> None:
    s.refuse(
        "container_name",
        "two colours (and their replicas) cannot share one name; trafficshift names them <app>-<colour>-<n>",
    )
    s.refuse(
        "ports",
        "trafficshift publishes the app's port itself (`publish:` in trafficshift.yml), or Traefik reaches it"
        " on `network:`; remove ports",
    )
    mode = s.text("network_mode")
    if mode == "host":
        s.fail("network_mode", "host: both colours would need the same port on the host; use networks")
    elif mode == "none" or mode.startswith(("service:", "container:")):
        s.fail("network_mode", f"{mode}: trafficshift could not reach each colour's containers on their own")
    elif mode:
        s.fail("network_mode", f"{mode}: use networks (and network: or publish: in trafficshift.yml)")
    for key, value in (("scale", s.get("scale")), ("deploy.replicas", s.keys("deploy").get("replicas"))):
        if value is not None and value != replicas:
            s.problems.add(
                s.at(key),
                f"{value}, but the app has replicas: {replicas} in trafficshift.yml; make them equal",
            )


def _build_context(s: Keys) -> str:
    """The build context of `build:` ("" without one). The rest of `build:` is Compose's to apply: it builds
    the image (`promote --build` runs `docker compose build`), and no key of it changes a container."""
    build = s.get("build")
    if build is None:
        return ""
    if isinstance(build, Mapping):
        return str(build.get("context") or ".")
    return str(build)  # a newer Compose printing the short form


def _environment(s: Keys) -> tuple[tuple[str, str | None], ...]:
    value = s.get("environment") or {}
    if not isinstance(value, Mapping):
        s.fail("environment", f"expected a mapping from Compose, got {value!r}")
        return ()
    return tuple(sorted((str(k), None if v is None else str(v)) for k, v in value.items()))


def _labels(s: Keys) -> tuple[tuple[str, str], ...]:
    labels = s.pairs("labels")
    for name, _ in labels:
        for prefix, why in _RESERVED_LABELS.items():
            if name.startswith(prefix):
                s.problems.add(f"{s.at('labels')}.{name}", why)
    return labels


def _tmpfs(s: Keys) -> tuple[tuple[str, str], ...]:
    entries = [entry.split(":", 1) for entry in s.strings("tmpfs")]
    return tuple((e[0], e[1] if len(e) > 1 else "") for e in entries)


def _healthcheck(s: Keys) -> Healthcheck | None:
    if s.get("healthcheck") is None:
        return None
    h = s.keys("healthcheck")
    # No test, only timings: they tune the image's own HEALTHCHECK (Docker fills in the rest from it).
    test = ("NONE",) if h.flag("disable") else h.strings("test")
    return Healthcheck(
        test=test,
        interval_ns=h.duration_ns("interval"),
        timeout_ns=h.duration_ns("timeout"),
        start_period_ns=h.duration_ns("start_period"),
        start_interval_ns=h.duration_ns("start_interval"),
        retries=h.integer("retries"),
    )


def _resources(s: Keys) -> Resources:
    deploy = s.keys("deploy")
    if (mode := deploy.text("mode")) not in ("", "replicated"):
        deploy.fail("mode", f"{mode}: Swarm's; trafficshift runs `replicas` containers per colour")
    resources = deploy.keys("resources")
    limits, reservations = resources.keys("limits"), resources.keys("reservations")
    # Compose does not apply a CPU reservation on a single engine (a Swarm setting): neither does this.
    reservations.get("cpus")
    # As Compose: deploy.resources wins over the older mem_limit/cpus keys when both are set.
    memory, old_memory = limits.integer("memory"), s.integer("mem_limit")
    reserved, old_reserved = reservations.integer("memory"), s.integer("mem_reservation")
    cpus, old_cpus = limits.number("cpus"), s.number("cpus")
    pids, old_pids = limits.integer("pids"), s.integer("pids_limit")
    return Resources(
        memory=memory or old_memory,
        memory_reservation=reserved or old_reserved,
        memory_swap=s.integer("memswap_limit"),
        nano_cpus=round((cpus or old_cpus) * 1e9),
        cpu_shares=s.integer("cpu_shares"),
        cpuset=s.text("cpuset"),
        pids_limit=pids or old_pids,
    )


def _ulimits(s: Keys) -> tuple[Ulimit, ...]:
    value = s.get("ulimits") or {}
    out = []
    for name in sorted(value):
        limit = value[name]
        if isinstance(limit, int):
            out.append(Ulimit(name=name, soft=limit, hard=limit))
        else:
            u = s.problems.keys(limit, f"{s.at('ulimits')}.{name}")
            out.append(Ulimit(name=name, soft=u.integer("soft"), hard=u.integer("hard")))
    return tuple(out)


def _extra_host(entry: str) -> str:
    # Compose writes `name=address`; Docker takes `name:address` (split at the first colon, so IPv6 works).
    name, sep, address = entry.partition("=")
    return f"{name}:{address}" if sep else entry


def _security_opt(s: Keys) -> tuple[str, ...]:
    options = s.strings("security_opt")
    for option in options:
        kind, _, value = option.replace(":", "=", 1).partition("=")
        if kind == "seccomp" and value not in ("unconfined", "builtin"):
            s.fail("security_opt", f"{option}: a seccomp profile file is not supported by trafficshift yet")
    return options


def _logging(s: Keys) -> Logging | None:
    if s.get("logging") is None:
        return None
    log = s.keys("logging")
    return Logging(driver=log.text("driver"), options=log.pairs("options"))


def _restart(s: Keys) -> RestartPolicy | None:
    policy: RestartPolicy | None = None
    if text := s.text("restart"):
        name, _, count = text.partition(":")
        if name not in _RESTART or (count and not count.isdigit()):
            s.fail("restart", f"unknown restart policy {text!r}")
        else:
            policy = RestartPolicy(name=name, max_retries=int(count or 0))
    r = s.keys("deploy").keys("restart_policy")
    for key in ("delay", "window"):
        r.refuse(key, "a Swarm setting that Docker cannot apply to a container; remove it")
    if condition := r.text("condition"):
        # As Compose: deploy.restart_policy wins over restart; `any` is `always`, `none` is `no`.
        name = {"any": "always", "none": "no"}.get(condition, condition)
        if name not in _RESTART:
            r.fail("condition", f"unknown condition {condition!r}")
        else:
            policy = RestartPolicy(name=name, max_retries=r.integer("max_attempts"))
    return policy


def _depends_on(s: Keys) -> tuple[Dependency, ...]:
    out = []
    deps = s.keys("depends_on")
    for name in sorted(deps.data):
        d = deps.keys(name)
        condition = d.text("condition") or "service_started"
        if condition not in _CONDITIONS:
            d.fail("condition", f"unknown condition {condition!r}")
        # `restart: true` (Compose sets it for `links:` too) restarts the app when `docker compose up`
        # replaces the dependency; trafficshift has no such moment, so it changes nothing here.
        d.get("restart")
        required = d.get("required")
        out.append(Dependency(service=name, condition=condition, required=required is not False))
    return tuple(out)
