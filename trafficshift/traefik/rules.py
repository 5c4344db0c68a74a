"""Traefik rule text for pinned routers (models.Pin): the app's rule narrowed to a header or a cookie.

Pure: the config has checked the names (HTTP token characters only), and values are fixed words or tokens
trafficshift makes, so nothing here can break out of a backquoted argument or a regular expression.
"""

from __future__ import annotations

import re

# What a header name, a cookie name and a matched value may be here: plain token characters, none of
# them special in a Traefik rule argument (backquote) or in a Go regexp once `.` is escaped.
TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
HEADER = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")


def matching(*, app_rule: str, header: str | None, cookie: str | None, value: str) -> str:
    """`app_rule` narrowed to requests whose `header` is `value` or whose cookie `cookie` is `value`."""
    if header is None and cookie is None:
        raise ValueError("a pin needs a header or a cookie to match")
    _check(HEADER, header, "header name")
    _check(TOKEN, cookie, "cookie name")
    _check(TOKEN, value, "value")
    matches = []
    if header is not None:
        matches.append(f"Header(`{header}`, `{value}`)")
    if cookie is not None:
        # The Cookie header lists `name=value` pairs separated by `; `: match one pair exactly.
        pair = re.escape(f"{cookie}={value}")
        matches.append(f"HeaderRegexp(`Cookie`, `(^|;\\s*){pair}(;|$)`)")
    return f"({app_rule}) && ({' || '.join(matches)})"


def _check(pattern: re.Pattern[str], text: str | None, what: str) -> None:
    if text is not None and not pattern.fullmatch(text):
        raise ValueError(f"{what} {text!r} has characters a pinned rule cannot carry")
