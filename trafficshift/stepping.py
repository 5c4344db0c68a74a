"""Manual stepping, pure: holds (`pause`, until-resumed steps, `--hold-at`), `resume` and `set-weight`.

What each phase allows, and how a plan of steps changes when a step is held or a weight is set by hand. The
store checks these inside the transaction that records a request (so the phase cannot change in between),
and the engine applies them: engine.py, store/rollouts.py, holding.py.
"""

from __future__ import annotations

from collections.abc import Sequence

from trafficshift.durations import parse_duration
from trafficshift.errors import NotHoldable, UsageError
from trafficshift.models import UNTIL_RESUMED, Phase, Rollout

UNTIL_RESUMED_TEXT = "until-resumed"
# A pause request is honoured at the next step boundary from these phases (STARTING and READY: before any
# weight moves; MIRRORING: the copies go on until resumed; DRAINING: the old colour is kept at 0% until
# resumed).
PAUSABLE = frozenset({Phase.STARTING, Phase.READY, Phase.MIRRORING, Phase.SHIFTING, Phase.DRAINING})
# A set weight needs both colours routed or about to be: not while draining (the old colour is leaving).
WEIGHTABLE = frozenset({Phase.STARTING, Phase.READY, Phase.SHIFTING})

Plan = tuple[tuple[int, ...], tuple[float | None, ...]]


def parse_pause(text: str) -> float:
    """A step's pause: a duration (`5m`), or `until-resumed`; ValueError with the reason."""
    if text == UNTIL_RESUMED_TEXT:
        return UNTIL_RESUMED
    return parse_duration(text)


def pause_text(seconds: float | None) -> str | None:
    """The inverse of parse_pause for documents: None, `until-resumed`, or seconds as a number."""
    if seconds is None:
        return None
    return UNTIL_RESUMED_TEXT if seconds == UNTIL_RESUMED else f"{seconds:g}s"


def check_weight(value: object) -> str | None:
    """Why `value` is no weight `set-weight` takes (a whole percentage 1..100), or None."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100:
        return f"expected a whole percentage 1..100 on the new colour, got {value!r}"
    return None


def _aligned(steps: Sequence[int], pauses: Sequence[float | None]) -> list[float | None]:
    return [pauses[i] if i < len(pauses) else None for i in range(len(steps))]


def with_hold_at(steps: Sequence[int], pauses: Sequence[float | None], weight: int) -> Plan:
    """The plan with step `weight` held until resumed (inserted where it is not one of the steps)."""
    if problem := check_weight(weight):
        raise UsageError(f"--hold-at: {problem}")
    new_steps, new_pauses = list(steps), _aligned(steps, pauses)
    if weight in new_steps:
        new_pauses[new_steps.index(weight)] = UNTIL_RESUMED
    else:
        at = sum(1 for s in new_steps if s < weight)
        new_steps.insert(at, weight)
        new_pauses.insert(at, UNTIL_RESUMED)
    return tuple(new_steps), _trimmed(new_pauses)


def with_weight(r: Rollout, weight: int) -> tuple[tuple[int, ...], tuple[float | None, ...], int]:
    """The rollout's plan once its new colour is set to `weight`: (steps, pauses, index of that step).

    The steps keep rising: those below the weight stay (passed or skipped), those above follow it, so a
    resume goes on from the first step above the weight.
    """
    pauses = _aligned(r.steps, r.pauses)
    below = [(s, p) for s, p in zip(r.steps, pauses, strict=True) if s < weight]
    above = [(s, p) for s, p in zip(r.steps, pauses, strict=True) if s > weight]
    # A step at exactly that weight keeps its own pause; a new one takes the rollout's.
    own = next((p for s, p in zip(r.steps, pauses, strict=True) if s == weight), None)
    plan = [*below, (weight, own), *above]
    return tuple(s for s, _ in plan), _trimmed([p for _, p in plan]), len(below)


def _trimmed(pauses: list[float | None]) -> tuple[float | None, ...]:
    return () if all(p is None for p in pauses) else tuple(pauses)


def check_pause(r: Rollout) -> None:
    """NotHoldable unless a pause may hold the rollout in its phase."""
    _check_active(r, "pause")
    if r.phase not in PAUSABLE:
        raise NotHoldable(f"rollout {r.id} of {r.app} cannot be paused: {_why_not(r)}")


def check_resume(r: Rollout) -> None:
    """NotHoldable unless the rollout is held."""
    _check_active(r, "resume")
    if r.held is None:
        raise NotHoldable(f"rollout {r.id} of {r.app} is not held ({r.phase}): there is nothing to resume")


def check_set_weight(r: Rollout, weight: int) -> None:
    """NotHoldable unless the rollout's new colour may be set to `weight` now."""
    _check_active(r, "set-weight")
    if r.from_colour is None:
        raise NotHoldable(
            f"rollout {r.id} of {r.app} is a first deploy: there is no old colour to share traffic with"
        )
    if r.phase not in WEIGHTABLE:
        raise NotHoldable(f"rollout {r.id} of {r.app} cannot be set to {weight}%: {_why_not(r)}")


def _check_active(r: Rollout, what: str) -> None:
    if not r.active:
        raise NotHoldable(f"rollout {r.id} of {r.app} has ended ({r.outcome}): nothing to {what}")


def _why_not(r: Rollout) -> str:
    if r.phase is Phase.DRAINING:
        return "it is draining the old colour (at 0%); `trafficshift pause` keeps it there"
    if r.phase is Phase.CLEANING:
        return "it is past the point of return (removing the old colour)"
    if r.phase is Phase.ABORTING:
        return "it is going back to the old colour"
    return f"it is {r.phase}"


_CONFIRMED = "set to {weight}% on {colour}: confirmed in "


def weight_confirmed(weight: int, colour: str, took: float) -> str:
    """The event that says a set weight runs in Traefik (what `set-weight` waits for)."""
    return _CONFIRMED.format(weight=weight, colour=colour) + f"{took:.2f}s"


def is_weight_confirmed(message: str, weight: int, colour: str) -> bool:
    return message.startswith(_CONFIRMED.format(weight=weight, colour=colour))


def held_at(r: Rollout) -> str:
    """`green=10%` style: where a held rollout stands, for messages."""
    new = r.weights.get(r.to_colour, 0)
    return f"{new}% on {r.to_colour}"
