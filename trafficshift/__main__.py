"""`python -m trafficshift`: the same command as the `trafficshift` script."""

from __future__ import annotations

import sys

from trafficshift.cli import main

if __name__ == "__main__":
    sys.exit(main())
