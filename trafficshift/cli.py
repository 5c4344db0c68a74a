"""Command line: parse arguments, call the engine or the API, print, map outcomes to exit codes."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("trafficshift: not implemented yet", file=sys.stderr)
    return 2
