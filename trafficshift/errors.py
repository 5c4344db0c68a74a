"""Errors users see. Each carries the context a user needs and maps to one exit code of the contract."""

from __future__ import annotations

from collections.abc import Sequence


class TrafficShiftError(Exception):
    """Root of every error trafficshift reports to a user (never as a traceback)."""

    exit_code = 1


class UsageError(TrafficShiftError):
    """Bad usage or bad input: nothing was changed."""

    exit_code = 2


class ConfigError(UsageError):
    """The config file is invalid; each message reads `file:line: path: why`."""

    def __init__(self, messages: Sequence[str]) -> None:
        self.messages = tuple(messages)
        super().__init__("\n".join(self.messages))


class NothingToDo(UsageError):
    """The request conflicts with the app's state: nothing to abort, nothing to roll back to (HTTP 409)."""


class UnreachableError(TrafficShiftError):
    """Docker or Traefik could not be reached before anything changed."""

    exit_code = 3


class LockedError(TrafficShiftError):
    """Another rollout of this app is in progress."""

    exit_code = 4

    def __init__(self, app: str) -> None:
        self.app = app
        super().__init__(f"another rollout of {app} is in progress")


class StepNotApplied(TrafficShiftError):
    """Traefik did not show the expected config in time."""

    def __init__(self, service: str, expected: object, observed: object) -> None:
        self.service = service
        self.expected = expected
        self.observed = observed
        super().__init__(f"Traefik did not apply {service}: expected {expected}, observed {observed}")


class NotReady(TrafficShiftError):
    """A new container did not become ready in time (or died)."""


class ImageError(TrafficShiftError):
    """The image is missing and could not be pulled."""


class RolloutStuck(TrafficShiftError):
    """A rollout could neither finish nor go back (Traefik or Docker failed midway): exit 5.

    The state store still holds it: `status` explains it, and `abort` or `promote` retries from there.
    """

    exit_code = 5


class RolloutFailed(TrafficShiftError):
    """A rollout ended with traffic back on the old colour (exit 1)."""
