"""`promote --build`: Compose itself builds a service's image (`docker compose build SERVICE`).

Why Compose and not the Docker API with a tar of the context: Compose applies all of `build:` (dockerfile
and dockerfile_inline, args, target, additional_contexts, secrets, ssh, labels, cache_from, .dockerignore,
BuildKit), and tags the image as it names it (`image:`, else `<project>-<service>`), exactly as `docker
compose up` would build it: the same reasons trafficshift has Compose normalise the file. Its progress goes
straight to the terminal (Compose draws it on a TTY and prints plain lines otherwise).
"""

from __future__ import annotations

import io
import subprocess
import sys
from typing import TextIO

from trafficshift.compose.runner import compose_command
from trafficshift.compose.spec import ComposeRef
from trafficshift.errors import BuildFailed


def build_argv(ref: ComposeRef) -> list[str]:
    """The Compose command that builds the service's image (the same files and project as `config`)."""
    argv = [*compose_command()]
    for file in ref.files:
        argv += ["-f", str(file)]
    if ref.project is not None:
        argv += ["--project-name", ref.project]
    return [*argv, "build", ref.service]


def build_service(ref: ComposeRef, *, out: TextIO | None = None) -> None:
    """Build the image of `ref`'s service with Compose, its output on `out` (default stderr: stdout may
    carry JSON); BuildFailed (exit 2, nothing changed) when Compose cannot."""
    out = out or sys.stderr
    argv = build_argv(ref)
    try:
        fd = out.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        fd = None  # not a real file (a test's capture): collect the output and write it there
    try:
        if fd is not None:
            out.flush()
            code = subprocess.run(argv, stdout=fd, stderr=fd, check=False).returncode
        else:
            result = subprocess.run(argv, capture_output=True, text=True, check=False)
            out.write(result.stdout + result.stderr)
            code = result.returncode
    except OSError as exc:
        raise BuildFailed(f"{ref.where}: cannot run {argv[0]}: {exc.strerror or exc}") from None
    if code != 0:
        raise BuildFailed(
            f"{ref.where}: Compose could not build services.{ref.service} (exit {code}); its output is above"
        )
