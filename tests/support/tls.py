"""A self-signed certificate for 127.0.0.1 (its own CA), made with the openssl command, for https tests."""

from __future__ import annotations

import subprocess
from pathlib import Path


def self_signed(where: Path) -> tuple[Path, Path]:
    """Write `cert.pem` and `key.pem` into `where` (valid one day, for IP 127.0.0.1); return their paths."""
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(
        [
            *(
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=127.0.0.1",
            ),
            *("-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key
