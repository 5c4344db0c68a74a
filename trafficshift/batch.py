"""`promote --all`: promote several apps, one after another or `parallel` at a time, stopping at the first
failure: no app is started after one failed (those running go on to their end), and the exit code is that
failure's. What each promote prints is its own business (`run_one`); this says what the batch came to.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Ran:
    """How one app's promote ended: its exit code, and whether it found nothing to change."""

    code: int
    unchanged: bool = False


@dataclass(frozen=True)
class BatchResult:
    rolled: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    # The first failure (in the order they ended) and its exit code; later ones are in `failed` too.
    first_failure: tuple[str, int] | None = None
    failed: tuple[str, ...] = ()
    not_attempted: tuple[str, ...] = ()
    stopped_by: str | None = None  # a signal's reason: nothing more was started after it

    @property
    def code(self) -> int:
        if self.first_failure is not None:
            return self.first_failure[1]
        return 130 if self.stopped_by is not None and self.not_attempted else 0

    def lines(self) -> list[str]:
        """What the batch came to, for people (one summary line, and why it stopped when it did)."""
        parts = [
            f"{label}: {', '.join(apps)}"
            for label, apps in (
                ("rolled out", self.rolled),
                ("unchanged", self.unchanged),
                ("failed", self.failed),
                ("not attempted", self.not_attempted),
            )
            if apps
        ]
        out = ["; ".join(parts)] if parts else []
        if self.first_failure is not None:
            app, code = self.first_failure
            out.append(f"stopped at the first failure: {app} (exit {code})")
        elif self.stopped_by is not None and self.not_attempted:
            out.append(f"stopped: {self.stopped_by}")
        return out


@dataclass
class _State:
    queue: list[str]
    ran: dict[str, Ran] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)


async def run_batch(
    apps: Sequence[str],
    *,
    parallel: int,
    run_one: Callable[[str], Awaitable[Ran]],
    stopped: Callable[[], str | None] = lambda: None,
) -> BatchResult:
    """Run `run_one` for each app in order, at most `parallel` at once; start none after a failure or once
    `stopped` gives a reason (a signal)."""
    if parallel < 1:
        raise ValueError("parallel must be at least 1")
    state = _State(queue=list(apps))

    def failed() -> bool:
        return any(r.code != 0 for r in state.ran.values())

    async def worker() -> None:
        while state.queue and not failed() and stopped() is None:
            app = state.queue.pop(0)
            ran = await run_one(app)
            state.ran[app] = ran
            state.order.append(app)

    await asyncio.gather(*(worker() for _ in range(min(parallel, len(apps)) or 1)))
    failures = [a for a in state.order if state.ran[a].code != 0]
    return BatchResult(
        rolled=tuple(a for a in apps if a in state.ran and state.ran[a] == Ran(0)),
        unchanged=tuple(a for a in apps if a in state.ran and state.ran[a].unchanged),
        first_failure=(failures[0], state.ran[failures[0]].code) if failures else None,
        failed=tuple(failures),
        not_attempted=tuple(a for a in apps if a not in state.ran),
        stopped_by=stopped(),
    )
