"""Errors users see: every one the project raises, each with its exit code and its HTTP status.

The CLI exits with an error's `exit_code` and the API answers with its `http_status`: both are class
attributes, so an error is mapped where it is defined, and neither the CLI nor the API lists classes. The
exit codes are the contract's (README, "CLI"): 2 bad usage or input, 3 Docker or Traefik unreachable before
anything changed, 4 another rollout of the app in progress, 5 stuck midway, 1 anything else.

Imports nothing of the project but models, so that every layer can raise these.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from trafficshift.models import Verdict


class TrafficShiftError(Exception):
    """Root of every error trafficshift reports to a user (never as a traceback)."""

    exit_code = 1
    # A failure of the service itself (or of an adapter it could not foresee): logged, answered 500.
    http_status = 500
    # The request field the error is about, when a request named it (e.g. the image of a promote).
    field: str | None = None


# ---------------------------------------------------------------------- exit 0: nothing to do


class Unchanged(TrafficShiftError):
    """A compose-backed app's spec is the one its live colour runs: the promote started nothing (exit 0).

    Not a failure: the CLI says so and exits 0; the API answers 200 `{"id": null, "unchanged": true}`.
    """

    exit_code = 0
    http_status = 200

    def __init__(self, app: str, message: str) -> None:
        self.app = app
        super().__init__(message)


# ---------------------------------------------------------------------- exit 2: bad usage or input


class UsageError(TrafficShiftError):
    """Bad usage or bad input: nothing was changed."""

    exit_code = 2
    http_status = 400


class RoutingRejected(UsageError):
    """Traefik refuses the app's router options (an unknown middleware, entrypoint or TLS option, a rule
    it cannot parse): its trial router is in error, so nothing was written and nothing started."""

    def __init__(self, app: str, router: str, errors: Sequence[str]) -> None:
        self.app = app
        self.errors = tuple(errors)
        why = "; ".join(errors) or "no reason given"
        super().__init__(
            f"{app}: Traefik refuses its router options ({router} is in error: {why}); nothing was"
            " changed: fix the app's entrypoints, tls, middlewares or rule, or define what they name"
        )


class ConfigError(UsageError):
    """The config file is invalid; each message reads `file:line: path: why`."""

    def __init__(self, messages: Sequence[str]) -> None:
        self.messages = tuple(messages)
        super().__init__("\n".join(self.messages))


class UnknownApp(UsageError):
    """The config has no app by that name."""

    http_status = 404

    def __init__(self, app: str, *, known: Iterable[str], source: str) -> None:
        self.app = app
        listed = ", ".join(sorted(known)) or "none"
        super().__init__(f"unknown app {app!r} (apps in {source}: {listed})")


class NothingToDo(UsageError):
    """The request conflicts with the app's state: nothing to abort, nothing to roll back to."""

    http_status = 409


class NotHoldable(NothingToDo):
    """A pause, resume or set-weight the rollout's phase does not allow (e.g. past the point of return, or
    a resume of a rollout that is not held): exit 2, HTTP 409, nothing changed."""


class Conflict(UsageError):
    """The service answered 409: the app is busy, or there is nothing to do (the caller tells which)."""

    http_status = 409


# ---------------------------------------------------------------------- exit 3 and 4: nothing changed


class UnreachableError(TrafficShiftError):
    """Docker or Traefik could not be reached before anything changed."""

    exit_code = 3
    http_status = 503


class NoAnswer(UnreachableError):
    """The service took a request and closed the connection (or went silent) before it answered: what it
    did is not known from here (the caller asks it again, or says so)."""


class NoReadyServer(UnreachableError):
    """A colour that takes traffic has no container that became ready: its file is left as it is (exit 3)."""


class StoreUnavailable(UnreachableError):
    """The state store failed (a full disk, no descriptors) before a rollout was recorded: nothing changed."""


class LockedError(TrafficShiftError):
    """Another rollout of this app is in progress."""

    exit_code = 4
    http_status = 409

    def __init__(self, app: str) -> None:
        self.app = app
        super().__init__(f"another rollout of {app} is in progress")


# ---------------------------------------------------------------------- exit 5: stuck midway


class RolloutStuck(TrafficShiftError):
    """A rollout could neither finish nor go back (Traefik or Docker failed midway): exit 5.

    The state store still holds it: `status` explains it, and `abort` or `promote` retries from there.
    """

    exit_code = 5


# ---------------------------------------------------------------------- adapters


class ContainerError(TrafficShiftError):
    """Docker refused an operation on a container (name taken, network missing, port in use...)."""

    http_status = 502


class ImageError(TrafficShiftError):
    """The image is missing and could not be pulled (or Docker refuses its reference)."""

    http_status = 502
    # Where the request gave the image, Docker's refusal is the request's fault: 400 naming the field.
    field = "image"


class TraefikApiError(TrafficShiftError):
    """The Traefik API answered, but not in a way this version of trafficshift understands."""

    http_status = 503


class StepNotApplied(TrafficShiftError):
    """Traefik did not show the expected config in time."""

    def __init__(self, service: str, expected: object, observed: object) -> None:
        self.service = service
        self.expected = expected
        self.observed = observed
        super().__init__(f"Traefik did not apply {service}: expected {expected}, observed {observed}")


class RenderCheckError(TrafficShiftError):
    """The rendered file did not parse back to what was asked: a bug, so nothing is written."""


class ServiceError(TrafficShiftError):
    """The service answered with an error (a 5xx)."""


# ---------------------------------------------------------------------- a rollout going back


class NotReady(TrafficShiftError):
    """A new container did not become ready in time (or died)."""


class HookFailed(TrafficShiftError):
    """A pre_deploy hook exited non-zero, timed out or could not run: the rollout goes back (exit 1).

    The message ends with the hook's last lines of output.
    """


class SmokeFailed(TrafficShiftError):
    """A smoke check of the new colour (or of the live one, `trafficshift smoke`) got a wrong answer: exit 1.

    The message names the failing request and what came back (status, the first bytes of the body).
    """


class AbortRequested(TrafficShiftError):
    """Someone asked the running rollout to go back to the old colour."""


class AnalysisFailed(TrafficShiftError):
    """The new colour failed its step's analysis (error rate or p95 over a limit) or could not be judged."""

    def __init__(self, *, service: str, step: str, verdict: Verdict | None, reason: str) -> None:
        self.service = service
        self.step = step
        self.verdict = verdict
        super().__init__(f"analysis failed at {step}: {service}: {reason}")


class ConfirmDenied(TrafficShiftError):
    """The confirm gate did not answer 2xx; `answered` tells a "no" (4xx) from a gate that was not reached."""

    def __init__(self, *, url: str, detail: str, answered: bool) -> None:
        self.url = url
        self.detail = detail
        self.answered = answered
        how = "said no" if answered else "did not confirm"
        super().__init__(f"confirm hook {url} {how}: {detail}")


# ---------------------------------------------------------------------- the service


class ShuttingDown(TrafficShiftError):
    """The service is stopping: it starts nothing new (HTTP 503)."""

    http_status = 503

    def __init__(self) -> None:
        super().__init__("the service is shutting down")


class ComposeError(UsageError):
    """Compose could not be found, or refused the project: what it said, as it said it (exit 2)."""

    def __init__(self, lines: Sequence[str]) -> None:
        self.lines = tuple(lines)
        super().__init__("\n".join(self.lines))


class BuildFailed(UsageError):
    """Compose could not build a service's image (its output says why): exit 2, nothing changed."""


class ComposeMissing(ComposeError):
    """No Compose v2 on this host (none at all, or only v1)."""


class PrerequisiteMissing(UnreachableError):
    """Something the app needs outside its colour is not there (a depends_on service, an external network
    or volume): exit 3, nothing changed. trafficshift does not start it: that is for the user (or Compose).
    """
