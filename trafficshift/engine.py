"""The rollout engine: drives a promote through its phases, and back to the old colour when it must.

Every transition is recorded in the state store before the side effect it announces (start containers,
write the dynamic file, stop containers), so that a crash at any point can be resumed or aborted: invariants
4 and 6 (docs/ARCHITECTURE.md), which also draws the phases.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

from trafficshift import changes, hooks, judge, plan, report, smoke, smoke_requests, stepping
from trafficshift.config import require_app
from trafficshift.errors import (
    AbortRequested,
    ConfirmDenied,
    NothingToDo,
    NotReady,
    RolloutStuck,
    SmokeFailed,
    StoreUnavailable,
    TrafficShiftError,
    UsageError,
)
from trafficshift.models import (
    UNTIL_RESUMED,
    AppSpec,
    AppState,
    Colour,
    ContainerInfo,
    Event,
    Figures,
    Live,
    LockRole,
    MirrorRoute,
    Outcome,
    Phase,
    Pin,
    Requests,
    Rollout,
    Routing,
)
from trafficshift.ports import Adapters, Lock
from trafficshift.readiness import check_alive, probe_ready, wait_ready
from trafficshift.reconcile import repair_live
from trafficshift.store.aio import STORE_FAILURES
from trafficshift.traefik.publish import CONFIRM_TIMEOUT

T = TypeVar("T")

# How often long waits look for an abort request (from another shell, the API, or a signal).
POLL = 0.2
# How often a hold reports where it stands (elapsed, remaining, analysis figures so far) to `on_live`.
LIVE_EVERY = 1.0
# A rollout start waits this long at most for the service's provider to release the app (one write + confirm).
PROVIDER_WAIT = CONFIRM_TIMEOUT + 5.0

EventSink = Callable[[Event], None]
ProgressSink = Callable[[str], None]
LiveSink = Callable[[Live], None]


class Engine:
    """Rollouts of the apps of one config, over its adapters (one container runtime, one Traefik)."""

    def __init__(
        self,
        *,
        adapters: Adapters,
        on_event: EventSink | None = None,
        on_progress: ProgressSink | None = None,
        on_created: Callable[[Rollout], None] | None = None,
        on_live: LiveSink | None = None,
    ) -> None:
        self.adapters = adapters
        self.config = adapters.config
        self.store = adapters.store
        self.containers = adapters.containers
        self.routing = adapters.routing
        self.locks = adapters.locks
        self.hooks = adapters.notifier
        self.metrics = adapters.metrics
        self.session = adapters.http
        self._on_event = on_event
        self._on_progress = on_progress
        # Where each rollout this engine drives stands between transitions: the one place the CLI's display
        # and the API's `progress` frames take it from.
        self._on_live = on_live
        self._replicas: dict[str, dict[str, str]] = {}
        # Told which rollout a promote runs (new or resumed) once it is recorded: the API answers 202 with it.
        self._on_created = on_created
        # Only events from the first entry point on: history is for `history`, not for this run's output.
        # Read there (the constructor cannot await the store), and kept per rollout from then on.
        self._start_seq: int | None = None
        self._seen: dict[str, int] = {}
        # The store holds every process's events: this engine reports those of the rollouts it drives
        # (to its sinks and webhooks) and of those it follows (to its sinks only: their process notifies).
        # It reads only theirs: each engine reading every app's events is quadratic in the apps rolling.
        self._driving: set[str] = set()
        self._following: set[str] = set()
        # One _emit at a time: two reading the same events before either moved the cursor would send them
        # twice.
        self._emitting = asyncio.Lock()
        # Server URLs this process has seen ready (besides those already in the file): invariant 1
        # (docs/ARCHITECTURE.md).
        self._seen_ready: set[str] = set()
        self._interrupted: str | None = None
        # Why the rollout this engine drives is held right now (None: it is not held): a service that stops
        # leaves such a rollout held for its next start instead of sending it back (service/runner.py).
        self.held: str | None = None

    # ------------------------------------------------------------------ public entry points

    def spec(self, app: str) -> AppSpec:
        return require_app(self.config, app)

    def interrupt(self, reason: str) -> None:
        """Ask the rollout running in this process to abort at the next safe point (e.g. on SIGTERM)."""
        self._interrupted = reason

    async def promote(
        self,
        *,
        app: str,
        image: str | None = None,
        steps: tuple[int, ...] | None = None,
        pause: float | None = None,
        hold_at: int | None = None,
    ) -> Rollout:
        """Deploy `image` (default: the config's) as the other colour, or resume an interrupted promote.

        `hold_at`: hold the rollout at that percentage on the new colour until it is resumed.
        """
        spec = self.spec(app)
        await self._mark_start()
        lock = self.locks.lock(app)
        # The service's provider holds an app for one write and its confirmation: a start waits that out
        # (LockedError at once only when another rollout holds it).
        await lock.acquire_waiting(wait=PROVIDER_WAIT)
        with lock:
            active = await self._before_change(self.store.active_rollout(app))
            if active is not None:
                if image is not None and image != active.to_image:
                    raise UsageError(
                        f"rollout {active.id} of {app} to {active.to_image} was interrupted"
                        f" ({active.phase}); run `trafficshift promote {app}` to resume it"
                        f" or `trafficshift abort {app}`"
                    )
                if hold_at is not None:
                    raise UsageError(
                        f"rollout {active.id} of {app} is in progress: --hold-at plans a new rollout;"
                        f" `trafficshift pause {app}` or `trafficshift set-weight {app} N` hold this one"
                    )
                self._progress(f"resuming rollout {active.id} of {app} from {active.phase}")
                if self._on_created is not None:
                    self._on_created(active)
                return await self._drive(spec, active)
            image = image or spec.image
            await self.preflight()
            await self.routing.check(spec=spec)  # router options Traefik refuses: exit 2, nothing changed
            if spec.analysis is not None and self.metrics is not None:
                await self.metrics.scrape()  # exit 3 if down
            image_id = await self.containers.ensure_image(image)
            await self.containers.check_needs(app=spec)  # depends_on services run: exit 3 if not
            if self._interrupted:
                raise AbortRequested(self._interrupted)  # e.g. the service is shutting down: start nothing
            state = await self._before_change(self.store.app_state(app))
            # A first deploy has nothing to shift from: one step, straight to 100%.
            steps, pauses = (
                ((steps, ()) if steps else (spec.rollout.steps, spec.rollout.pauses))
                if state.colour
                else ((100,), ())
            )
            if hold_at is not None:
                if state.colour is None:
                    raise UsageError(
                        f"--hold-at: the first deploy of {app} has no old colour to share traffic with"
                    )
                steps, pauses = stepping.with_hold_at(steps, pauses, hold_at)
            # The live colour must be routed where its containers are now (Docker may have restarted them on
            # new ports), as the new colour's steps share traffic with it: exit 3 when none is ready.
            await repair_live(adapters=self.adapters, spec=spec, state=state, on_progress=self._progress)
            # A compose-backed app whose live colour runs this spec already: Unchanged (exit 0).
            to_spec = await changes.spec_to_deploy(
                self.containers, app=spec, state=state, image=image, image_id=image_id
            )
            rollout = await self._before_change(
                self.store.create_rollout(
                    app=app,
                    from_state=state,
                    to_colour=plan.next_colour(state),
                    to_image=image,
                    steps=steps,
                    pause=spec.rollout.pause if pause is None else pause,
                    spec=to_spec,
                    pauses=pauses,
                )
            )
            await self._track(rollout.id, self._driving)
            await self._emit()
            if self._on_created is not None:
                self._on_created(rollout)
            return await self._drive(spec, rollout)

    async def abort(self, *, app: str, reason: str = "aborted by request") -> Rollout:
        """Send all traffic back to the old colour and remove the new one; waits for the end."""
        spec = self.spec(app)
        await self._mark_start()
        active = await self._before_change(self.store.active_rollout(app))
        if active is None:
            raise UsageError(f"no rollout of {app} is in progress")
        lock = self.locks.lock(app)
        if not lock.try_acquire():
            # Another process drives it: ask it to go back, and follow it until it has.
            await self._before_change(self.store.request_abort(active.id, reason=reason))
            return await self._follow(spec, active.id, lock=lock, reason=reason)
        try:
            return await self._abort_locked(spec, active.id, reason=reason)
        finally:
            lock.release()

    async def _abort_locked(self, spec: AppSpec, rollout_id: str, *, reason: str) -> Rollout:
        rollout = await self._before_change(self.store.rollout(rollout_id))
        assert rollout is not None
        if not rollout.active:
            return rollout
        if rollout.phase not in plan.ABORTABLE:
            self._progress(
                f"rollout {rollout.id} is past the point of return ({rollout.phase}); completing it"
            )
            return await self._drive(spec, rollout)
        return await self._revert(spec, rollout, outcome=Outcome.ABORTED, reason=reason)

    async def record(self, app: str, request: Callable[[], Awaitable[Rollout]]) -> Rollout:
        """Record a hold, resume or set-weight of the app's rollout (`request`, a store call); return it.

        Its event goes to this engine's output, and to the webhooks when no process drives the rollout (its
        driver sends them otherwise, when its hold sees the request).
        """
        await self._mark_start()
        r = await request()
        undriven = self.locks.lock(app).holder() is not LockRole.ROLLOUT
        await self._track(r.id, self._driving if undriven else self._following)
        await self._emit()
        return r

    async def rollback(self, *, app: str, now: bool = False) -> Rollout:
        """Promote the image that served before the current one, gradually or (`now`) in one step."""
        self.spec(app)
        image = plan.rollback_image(await self._before_change(self.store.history(app)))
        if image is None:
            raise NothingToDo(f"{app} has no earlier image to roll back to")
        return await self.promote(
            app=app, image=image, steps=(100,) if now else None, pause=0 if now else None
        )

    async def _before_change(self, call: Awaitable[T]) -> T:
        """A store call made before this command changed anything: a store that fails here is exit 3."""
        try:
            return await call
        except STORE_FAILURES as exc:
            # Nothing is recorded and nothing moved: say so, rather than "internal error" (exit 1), which
            # would read as "all traffic is back on the old colour".
            raise StoreUnavailable(
                f"the state store in {self.config.state_dir} (state_dir) failed before anything changed:"
                f" {exc}; nothing changed, run the command again once the store has room"
            ) from None

    async def preflight(self) -> None:
        """Reach Docker and Traefik before anything changes (exit 3 when either is down)."""
        await self.containers.ping()
        await self.routing.ping()

    async def current_routing(self, app: str) -> Routing:
        """The routing the app's dynamic file should show now, from the store and the live containers."""
        containers = await self.containers.list(app=app)
        state, active = await self.store.app_state(app), await self.store.active_rollout(app)
        weights = plan.current_weights(state, active, containers)
        return plan.routing_for(app=app, weights=weights, containers=containers)

    async def current_mirror(self, app: str) -> MirrorRoute | None:
        """The mirror file the app should have now: one while its rollout is in the mirror phase."""
        active = await self.store.active_rollout(app)
        if active is None or active.phase is not Phase.MIRRORING:
            return None
        return plan.mirror_for(self.spec(app), active)

    async def status(self, app: str) -> report.JSON:
        """Live colour, image, weights, containers and any rollout in progress or interrupted."""
        self.spec(app)
        state = await self.store.app_state(app)
        rollout = await self.store.active_rollout(app)
        containers = await self.containers.list(app=app)
        interrupted = rollout is not None and not self.locks.lock(app).is_held_elsewhere()
        return report.app_status(
            state=state,
            weights=plan.current_weights(state, rollout, containers),
            rollout=rollout,
            interrupted=interrupted,
            containers=containers,
            listed=self.routing.read(app),
            views=await self.routing.views(app),
        )

    async def aclose(self) -> None:
        """Wait for webhook deliveries in flight (at most the longest hook timeout)."""
        await self.hooks.aclose()

    # ------------------------------------------------------------------ the state machine

    async def _drive(self, spec: AppSpec, rollout: Rollout) -> Rollout:
        """Run a rollout forward; on any failure or abort request before cleaning, go back."""
        await self._track(rollout.id, self._driving)
        if rollout.phase is Phase.ABORTING:
            return await self._revert(spec, rollout, outcome=Outcome.ABORTED, reason="resumed abort")
        try:
            return await self._forward(spec, rollout)
        except AbortRequested as exc:
            outcome, reason = Outcome.ABORTED, str(exc)
        except ConfirmDenied as exc:
            # A "no" is a decision, as `abort` is; a gate that could not be asked is a failure.
            outcome, reason = (Outcome.ABORTED if exc.answered else Outcome.FAILED), str(exc)
        except (asyncio.CancelledError, RolloutStuck):  # stuck past the point of return: it says what to run
            raise
        except Exception as exc:
            outcome, reason = Outcome.FAILED, _describe(exc)
        try:
            current = await self.store.rollout(rollout.id) or rollout
        except Exception as exc:  # the store fails too (disk full): where it stands is in the record, later
            raise RolloutStuck(
                f"rollout {rollout.id} failed ({reason}) and its record cannot be read ({_describe(exc)});"
                f" fix the cause, then run `trafficshift abort {spec.name}`"
            ) from exc
        if current.phase not in plan.ABORTABLE:
            raise RolloutStuck(
                f"rollout {current.id} failed while removing the old colour ({reason});"
                f" run `trafficshift promote {spec.name}` to complete it"
            )
        return await self._revert(spec, current, outcome=outcome, reason=reason)

    async def _forward(self, spec: AppSpec, r: Rollout) -> Rollout:
        new, old = r.to_colour, r.from_colour
        if r.phase is Phase.STARTING:
            # Before any new container exists, so before any takes traffic; again on a resume from here:
            # invariant 14 (docs/ARCHITECTURE.md).
            await self._guarded(
                r,
                hooks.pre_deploy(
                    containers=self.containers, app=spec, image=r.to_image, record=self._note(r)
                ),
            )
        if r.phase in (Phase.STARTING, Phase.READY):
            # Also on resume: containers may have been lost while nobody watched (start is idempotent).
            started = await self._guarded(
                r, self.containers.start_colour(app=spec, colour=new, image=r.to_image)
            )
            self._progress(f"started {', '.join(c.name for c in started)}; waiting until ready")
            await self._guarded(r, self._wait_ready(spec, r))
            if r.phase is Phase.STARTING:
                r = await self._advance(
                    r, phase=Phase.READY, message=f"{len(started)} {new} container(s) ready"
                )
        elif r.phase in (Phase.MIRRORING, Phase.SHIFTING, Phase.DRAINING):
            # Resumed while the new colour takes traffic (or copies of it): never restart it; it must still
            # be ready (one that crashed or vanished while nobody watched sends the rollout back).
            await self._guarded(r, self._wait_ready(spec, r))

        if r.phase is Phase.READY:
            r, _ = await self._stop_if_held(spec, r)  # paused (or set to a weight) before its first step

        if r.phase is Phase.READY and spec.smoke and r.from_colour is not None:
            r = await self._smoke(spec, r)

        if plan.opens_canary(spec, r):
            # The canary's pins reach the new colour before any public weight: it joins the file at 0%.
            if new not in r.weights:
                r = await self._advance(
                    r,
                    weights=plan.shift_weights(old=old, new=new, percent=0),
                    message=f"canary open: {report.canary_text(spec)} reach {new} at 0%",
                )
            await self._guarded(r, self._apply(spec, r))
        if r.phase in (Phase.READY, Phase.MIRRORING):
            r = await self._mirror(spec, r)

        if r.phase in (Phase.READY, Phase.MIRRORING, Phase.SHIFTING):
            # Resumed at a step: its hold is as recorded (a resumed until-resumed step is not held again).
            resumed = r.step if r.phase is Phase.SHIFTING else None
            index = max(r.step, 0) if r.phase is Phase.SHIFTING else 0
            while index < len(r.steps):
                percent, count = r.steps[index], len(r.steps)
                weights = plan.shift_weights(old=old, new=new, percent=percent)
                await self._confirm(spec, r, step=index, weights=weights)
                if index != resumed:
                    # Held while the gate was asked (or since the last hold): not a step further. Once
                    # resumed, the step is planned (and the gate asked) again, from where the hold left it.
                    r, held = await self._stop_if_held(spec, r)
                    if held:
                        index = r.step + 1
                        continue
                until_resumed = r.pause_of(index) == UNTIL_RESUMED and index != resumed
                r = await self._advance(
                    r,
                    phase=Phase.SHIFTING,
                    step=index,
                    weights=weights,
                    message=f"step {index + 1}/{count}: {percent}% on {new}"
                    + ("; held until resumed" if until_resumed else ""),
                    hold=f"step {index + 1}/{count} holds until resumed" if until_resumed else None,
                )
                took = await self._guarded(r, self._apply(spec, r))
                await self._advance(r, message=f"step {index + 1}/{count} confirmed in {took:.2f}s")
                pause = r.pause_of(index)
                if percent < 100:
                    # An until-resumed step is held by its record (which resume clears), not by a clock.
                    r = await self._hold(spec, r, seconds=0 if pause == UNTIL_RESUMED else pause)
                else:
                    r, _ = await self._stop_if_held(spec, r)  # at 100%: held before the old colour leaves
                index = r.step + 1

        if old is None:
            # A first deploy has no drain: now that the file routes it alone is its last chance to go back.
            await check_alive(containers=self.containers, app=spec, colour=new)
        if old is not None and r.phase is not Phase.CLEANING:
            if r.phase is not Phase.DRAINING:
                r = await self._advance(
                    r, phase=Phase.DRAINING, message=f"draining {old} for {spec.rollout.drain:g}s"
                )
            await self._guarded(r, self._apply(spec, r))
            await self._hold(spec, r, seconds=spec.rollout.drain)
            await check_alive(
                containers=self.containers, app=spec, colour=r.to_colour
            )  # the last chance to go back
            r = await self._advance(r, phase=Phase.CLEANING, weights={new: 100}, message=f"removing {old}")
        if old is not None:
            try:  # past the point of return, no abort from here on: invariant 9 (docs/ARCHITECTURE.md)
                await self._readmit(spec, new)
                await self._apply(spec, r)
                # Out of the file, confirmed: invariant 14 (docs/ARCHITECTURE.md).
                await hooks.pre_stop(containers=self.containers, app=spec, colour=old, record=self._note(r))
                await self.containers.stop_and_remove(
                    app=spec.name, colour=old, stop_timeout=spec.rollout.stop_timeout
                )
            except TrafficShiftError as exc:
                raise RolloutStuck(
                    f"rollout {r.id} failed while removing {old} ({_describe(exc)});"
                    f" run `trafficshift promote {spec.name}` to complete it"
                ) from exc
        done = await self.store.finish(
            r, outcome=Outcome.DONE, reason=None, live=AppState(app=spec.name, colour=new, image=r.to_image)
        )
        await self._emit()
        await self._post_deploy(spec, done)
        return done

    async def _post_deploy(self, spec: AppSpec, done: Rollout) -> None:
        """The post_deploy hook of a done rollout: whatever happens, it stays done.

        Invariant 14 (docs/ARCHITECTURE.md).
        """
        try:
            await hooks.post_deploy(
                containers=self.containers, app=spec, colour=done.to_colour, record=self._note(done)
            )
        except Exception as exc:  # e.g. the store failing to record its output: a warning, not a revert
            self._progress(f"warning: post_deploy of {spec.name}: {_describe(exc)}")

    async def _revert(self, spec: AppSpec, r: Rollout, *, outcome: Outcome, reason: str) -> Rollout:
        """All traffic back to the old colour (confirmed), drain, then the new colour out of the file, gone.

        Invariant 2 (docs/ARCHITECTURE.md) for the new colour: weight 0 confirmed, drain passed, absent
        from the file (confirmed), and only then stopped.
        """
        await self._track(r.id, self._driving)
        try:
            r = await self._take_back(spec, r, reason=reason)
        except Exception as exc:  # e.g. OSError writing the file: still recorded, so exit 5, never exit 1
            raise RolloutStuck(
                f"rollout {r.id} could not go back to {r.from_colour or 'nothing'} ({_describe(exc)});"
                f" fix the cause, then run `trafficshift abort {spec.name}` again"
            ) from exc
        live = AppState(app=spec.name, colour=r.from_colour, image=r.from_image)
        try:
            ended = await self.store.finish(r, outcome=outcome, reason=reason, live=live)
        except Exception as exc:  # back, but not recorded (disk full): exit 5 until the record says so
            raise RolloutStuck(
                f"rollout {r.id}: all traffic is back on {r.from_colour or 'nothing'}, but its end could not"
                f" be recorded ({_describe(exc)}); fix the cause, then run `trafficshift abort {spec.name}`"
            ) from exc
        await self._emit()
        return ended

    async def _take_back(self, spec: AppSpec, r: Rollout, *, reason: str) -> Rollout:
        new, old = r.to_colour, r.from_colour
        # Routed at all, even at 0% (a resume after a crash in the drain): requests may still be in flight.
        routed = new in r.weights
        r = await self._advance(r, phase=Phase.ABORTING, message=f"aborting: {reason}")
        # A mirror first, confirmed gone: it names the new colour's service, invariant 10
        # (docs/ARCHITECTURE.md).
        await self.routing.publish_mirror(spec=spec, mirror=None)
        if routed:
            # Weight 0 first (for a first deploy: out of the file, there is nothing to go back to).
            back, where = ({old: 100, new: 0}, f"all traffic back to {old}") if old else ({}, "no traffic")
            r = await self._advance(r, weights=back, message=where)
            await self._apply(spec, r, back=True)
            self._progress(f"draining {new} for {spec.rollout.drain:g}s")
            await asyncio.sleep(spec.rollout.drain)
        without_new = {old: 100} if old is not None else {}
        r = await self._advance(r, weights=without_new, message=f"removing {new}")
        await self._apply(spec, r, back=True)
        await self.containers.stop_and_remove(
            app=spec.name, colour=new, stop_timeout=spec.rollout.stop_timeout
        )
        # A pre_deploy's one-off container a killed process left behind.
        await self.containers.remove_one_offs(app=spec.name)
        return r

    # ------------------------------------------------------------------ smoke checks

    async def _smoke(self, spec: AppSpec, r: Rollout) -> Rollout:
        """Before any public weight: the app's smoke checks, through Traefik, to the new colour alone.

        Invariant 21 (docs/ARCHITECTURE.md): the new colour joins the file at weight 0 with a pinned router
        that only requests carrying the rollout's id in `X-Trafficshift-Smoke` match; the router is in the
        file only while the rollout is `ready` and this method runs. Recorded first, so a kill here resumes
        at `ready` (the checks run again) or goes back (its first write leaves the router out, confirmed).
        """
        new = r.to_colour
        assert r.from_colour is not None
        url = self.config.traefik.entrypoint_url
        host = smoke.host_of(spec.rule)
        if url is None or host is None:  # the config refuses both: a defect if it comes here
            raise SmokeFailed(f"{spec.name}: smoke checks need traefik.entrypoint_url and a Host in the rule")
        total = sum(check.count for check in spec.smoke)
        r = await self._advance(
            r,
            weights=plan.shift_weights(old=r.from_colour, new=new, percent=0),
            message=f"smoke checks: {total} request(s) to {new} through Traefik, at 0%",
        )
        pin = plan.smoke_pin(spec, r)
        await self._guarded(r, self._apply(spec, r, extra_pins=(pin,)))
        sent, reason = await self._guarded(
            r,
            smoke_requests.run_checks(spec.smoke, url=url, host=host, headers={smoke.SMOKE_HEADER: r.id}),
        )
        if reason is not None:
            # Going back removes the smoke router with its first write (confirmed): nothing else to undo.
            raise SmokeFailed(f"{new}: {reason}")
        await self._guarded(r, self._apply(spec, r))  # the smoke router gone, confirmed
        return await self._advance(r, message=f"smoke checks passed: {sent} request(s) to {new}")

    # ------------------------------------------------------------------ the mirror phase

    async def _mirror(self, spec: AppSpec, r: Rollout) -> Rollout:
        """Before step 1: copies of a share of the live requests go to the new colour, which is judged.

        `mirroring` (the new colour in the file at weight 0) is recorded before the mirror file is written,
        and the file is removed, confirmed, at the end of the phase; `_take_back` removes it first.
        Resumed, the phase starts over (a fresh window to judge). A no-op for a rollout without a mirror.
        """
        mirror = plan.mirror_for(spec, r)
        if mirror is None or spec.rollout.mirror is None or r.from_colour is None:
            if r.phase is Phase.MIRRORING:  # resumed after the mirror left the config: leave none behind
                await self._guarded(r, self.routing.publish_mirror(spec=spec, mirror=None))
            return r
        duration = spec.rollout.mirror.duration
        if r.phase is not Phase.MIRRORING:
            methods = ", ".join(mirror.methods)
            r = await self._advance(
                r,
                phase=Phase.MIRRORING,
                weights={r.from_colour: 100, r.to_colour: 0},
                message=f"mirroring {mirror.percent}% of {methods} to {r.to_colour} for {duration:g}s",
            )
        # The mirror names the new colour's service: the app's file lists it (at weight 0) first, and the
        # mirror is gone before that file changes again: invariant 10 (docs/ARCHITECTURE.md).
        await self._guarded(r, self._apply(spec, r))
        listed = self.routing.read(spec.name)
        if listed is None or r.to_colour not in listed.weights():
            # Its containers stopped being ready since they were (a weight of 0 needs none, so the file
            # left them out): a mirror to them would name a service the file does not define.
            raise NotReady(f"no ready {r.to_colour} container to mirror to")
        took = await self._guarded(r, self.routing.publish_mirror(spec=spec, mirror=mirror))
        await self._advance(r, message=f"mirror confirmed in {took:.2f}s")
        await self._hold(spec, r, seconds=duration)
        await self._advance(r, message=f"removing the mirror to {r.to_colour}")
        await self._guarded(r, self.routing.publish_mirror(spec=spec, mirror=None))
        return r

    # ------------------------------------------------------------------ steps

    async def _apply(
        self, spec: AppSpec, r: Rollout, *, back: bool = False, extra_pins: tuple[Pin, ...] = ()
    ) -> float:
        """Write the file for the rollout's weights, wait until Traefik shows it; return the seconds taken.

        `back`: the rollout is going back (ports.RoutingPublisher.publish). `extra_pins` go into this write
        only (the smoke router); the next write leaves them out."""
        routing = await self._routing(spec, r, extra_pins=extra_pins)
        if r.from_colour is not None and r.from_colour in plan.unserved(r.weights, routing):
            # Docker restarted the old colour (on new published ports) while nobody watched: probe it there,
            # as `reconcile` would. Not the new colour: a restart of it is a verdict on the new version.
            await self._readmit(spec, r.from_colour)
            routing = await self._routing(spec, r, extra_pins=extra_pins)
        if unserved := plan.unserved(r.weights, routing):
            # Writing it anyway would send that share nowhere (or delete the file): refuse instead, as
            # invariant 7 (docs/ARCHITECTURE.md) says.
            raise NotReady(f"no ready {' or '.join(unserved)} container to take its share of {spec.name}")
        return await self.write_routing(spec, routing, back=back)

    async def _routing(self, spec: AppSpec, r: Rollout, *, extra_pins: tuple[Pin, ...] = ()) -> Routing:
        """The routing of the rollout's weights over the app's containers that were seen ready."""
        containers = await self.containers.list(app=spec.name)
        listed = self.routing.read(spec.name)
        if listed is not None:
            # Invariant 1 (docs/ARCHITECTURE.md): a server gets traffic only once seen ready: in the file
            # already, or probed by this run. A replica Docker restarted meanwhile (new published port)
            # stays out.
            containers = plan.trusted_servers(containers, trusted=self._seen_ready | listed.servers())
        pins = plan.pins_for(spec, r) + extra_pins
        return plan.routing_for(app=spec.name, weights=r.weights, containers=containers, pins=pins)

    async def write_routing(self, spec: AppSpec, routing: Routing, *, back: bool = False) -> float:
        """Publish `routing` as the app's file, confirmed; the caller holds the app's lock."""
        return await self.routing.publish(spec=spec, routing=routing, back=back)

    async def _readmit(self, spec: AppSpec, colour: Colour) -> None:
        """Probe the colour's replicas that the file does not route: Docker restarted them on a new address.

        Past the point of return the new colour must serve alone: they are routed once ready again (as
        `serve` does), or the old colour could never leave the file (`promote` would be stuck for good).
        """
        listed = self.routing.read(spec.name)
        routed = {url for route in listed.routes for url in route.servers} if listed else set()
        known = routed | self._seen_ready
        for c in await self.containers.list(app=spec.name, colour=colour):
            if not c.running or not c.url or c.url in known:
                continue
            if await probe_ready(app=spec, containers=self.containers, info=c, session=self.session):
                self._seen_ready.add(c.url)

    async def _wait_ready(self, spec: AppSpec, r: Rollout) -> list[ContainerInfo]:
        replicas = self._replicas.setdefault(r.id, {})

        def progress(container: ContainerInfo, text: str) -> None:
            self._progress(f"{container.name}: {text}")
            replicas[container.name] = text
            self._live(r, f"{container.name}: {text}")

        ready = await wait_ready(
            app=spec,
            containers=self.containers,
            colour=r.to_colour,
            session=self.session,
            on_progress=progress,
        )
        self._seen_ready.update(c.url for c in ready if c.url)
        replicas.update({c.name: "ready" for c in ready})
        self._live(r, f"{len(ready)} {r.to_colour} container(s) ready")
        return ready

    async def _hold(self, spec: AppSpec, r: Rollout, *, seconds: float) -> Rollout:
        """Hold the current weights for `seconds`, and for as long as the rollout is held, watching the new
        colour and abort requests; return the rollout (a set weight changes its plan).

        With analysis, the new colour's metrics are judged from the start of the hold every
        `analysis.interval`: a failed verdict (AnalysisFailed) ends the step at once, held or not.
        """
        watch = judge.watch_step(
            spec=spec, rollout=r, metrics=self.metrics, provider=self.config.traefik.provider
        )
        if watch is not None:
            await self._guarded(r, watch.observe())  # the start of the window
        started = time.monotonic()
        try:
            r, watch = await self._hold_loop(spec, r, watch=watch, started=started, seconds=seconds)
        finally:
            self.held = None
        if watch is not None:
            verdict = await self._guarded(r, watch.finish())
            await self._advance(r, message=f"{watch.step} judged: {judge.describe(verdict)}")
        return r

    async def _hold_loop(
        self, spec: AppSpec, r: Rollout, *, watch: judge.StepWatch | None, started: float, seconds: float
    ) -> tuple[Rollout, judge.StepWatch | None]:
        """`_hold`'s wait: until `seconds` from `started` have passed and the rollout is not held."""
        deadline = started + seconds
        next_check = next_live = 0.0
        next_judgement = time.monotonic() + (watch.spec.interval if watch else 0.0)
        held: str | None = None
        while True:
            asked = await self._requests(r)
            if asked.weight is not None:
                if r.phase not in stepping.WEIGHTABLE:  # asked just before the drain began
                    why = f"set-weight {asked.weight}% not applied: the rollout is {r.phase}"
                    await self.store.drop_weight_request(r, message=why)
                    await self._emit()
                    continue
                r = await self._set_weight(spec, r, asked.weight)
                watch = judge.watch_step(spec=spec, rollout=r, metrics=self.metrics)  # a new step to judge
                if watch is not None:
                    await self._guarded(r, watch.observe())
                continue
            if asked.held != held:
                held = self.held = asked.held
                await self._emit()  # the hold or resume another process recorded: to webhooks and output
            left = deadline - time.monotonic()
            if left <= 0 and held is None:
                break
            now = time.monotonic()
            judged = watch is not None and now >= next_judgement
            if watch is not None and judged:
                next_judgement = now + watch.spec.interval
                await self._guarded(r, watch.observe())
            if now >= next_live:
                next_live = now + LIVE_EVERY
                if watch is not None and not judged:
                    await self._guarded(r, watch.sample())  # the figures so far, between judgements
                figures = {str(c): f for c, f in watch.figures().items()} if watch else {}
                clock = (time.monotonic() - started, seconds)
                weights = report.weights_text(r.weights)
                text = self._hold_text(spec, r, held=held, left=left) if held else f"holding {weights}"
                self._live(r, text, hold=clock, figures=figures)
            if now >= next_check:
                next_check = now + spec.health.interval
                self._progress(self._hold_text(spec, r, held=held, left=left))
                await check_alive(containers=self.containers, app=spec, colour=r.to_colour)
            await asyncio.sleep(POLL if held is not None else min(POLL, left))
        return r, watch

    # ------------------------------------------------------------------ holds (stepping.py)

    async def _requests(self, r: Rollout) -> Requests:
        """What others asked of the rollout (one read); AbortRequested when that is an abort."""
        asked = await self.store.requests(r.id)
        reason = self._interrupted or asked.abort
        if reason:
            raise AbortRequested(reason)
        return asked

    async def _stop_if_held(self, spec: AppSpec, r: Rollout) -> tuple[Rollout, bool]:
        """At a step boundary with no pause of its own: hold there while the rollout is held; the rollout,
        and whether it was held (or set to a weight).

        Invariant 13 (docs/ARCHITECTURE.md): a held rollout moves only once its record says so.
        """
        asked = await self._requests(r)
        if asked.held is None and asked.weight is None:
            return r, False
        return await self._hold(spec, r, seconds=0), True

    async def _set_weight(self, spec: AppSpec, r: Rollout, weight: int) -> Rollout:
        """Move the new colour to `weight` (recorded as a step of the plan, held), confirmed by Traefik."""
        new = r.to_colour
        steps, pauses, index = stepping.with_weight(r, weight)
        weights = plan.shift_weights(old=r.from_colour, new=new, percent=weight)
        await self._confirm(spec, r, step=index, weights=weights)
        r = await self.store.set_weight(
            r,
            steps=steps,
            pauses=pauses,
            step=index,
            weights=weights,
            hold=f"set to {weight}% on {new}",
            message=f"set to {weight}% on {new}; held until resumed",
        )
        await self._emit()
        took = await self._guarded(r, self._apply(spec, r))
        await self._advance(r, message=stepping.weight_confirmed(weight, new, took))
        return r

    def _hold_text(self, spec: AppSpec, r: Rollout, *, held: str | None, left: float) -> str:
        weights = report.weights_text(r.weights)
        if held is not None:
            return f"HELD at {weights} ({held}); `trafficshift resume {spec.name}` goes on"
        return f"{r.phase} {weights}; next in {left:.0f}s"

    async def _confirm(self, spec: AppSpec, r: Rollout, *, step: int, weights: Mapping[Colour, int]) -> None:
        """Ask the confirm gate, when there is one, before the new colour's weight goes up."""
        gate, new = self.config.confirm_of(spec), r.to_colour
        if gate is None or weights.get(new, 0) <= r.weights.get(new, 0):
            return  # e.g. a resumed step: its weights were confirmed before the crash
        self._progress(f"asking {gate.url} to confirm {weights[new]}% on {new}")
        confirm = self.hooks.confirm(gate=gate, rollout=r, step=step, weights=weights)
        await self._guarded(r, confirm)
        await self._advance(r, message=f"{gate.url} approved {weights[new]}% on {new}")

    async def _guarded(self, r: Rollout, work: Awaitable[T]) -> T:
        """Await `work`, but give up on it as soon as an abort is requested."""
        task = asyncio.ensure_future(work)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=POLL)
                if done:
                    return task.result()
                await self._check_abort(r)
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _check_abort(self, r: Rollout) -> None:
        reason = self._interrupted or await self.store.abort_requested(r.id)
        if reason:
            raise AbortRequested(reason)

    async def _follow(self, spec: AppSpec, rollout_id: str, *, lock: Lock, reason: str) -> Rollout:
        """Follow a rollout driven by another process until it ends; finish the abort if that process dies."""
        await self._track(rollout_id, self._following)
        while True:
            await self._emit()
            rollout = await self.store.rollout(rollout_id)
            assert rollout is not None
            if not rollout.active:
                return rollout
            if lock.try_acquire():
                # Its driver is gone (killed, or it exited at a second signal): go back from here.
                try:
                    return await self._abort_locked(spec, rollout_id, reason=reason)
                finally:
                    lock.release()
            await asyncio.sleep(POLL)

    # ------------------------------------------------------------------ records

    async def _advance(
        self,
        r: Rollout,
        *,
        message: str,
        phase: Phase | None = None,
        step: int | None = None,
        weights: Mapping[Colour, int] | None = None,
        hold: str | None = None,
    ) -> Rollout:
        # Awaited whole, the event's webhooks sent, before the caller starts the side effect it announces.
        new = await self.store.advance(r, message=message, phase=phase, step=step, weights=weights, hold=hold)
        await self._emit()
        self._live(new, message)
        return new

    def _note(self, r: Rollout) -> Callable[[str], Awaitable[None]]:
        """Record a release hook's progress and output as events of the rollout, without a transition."""

        async def note(message: str) -> None:
            await self._advance(r, message=message)

        return note

    async def _mark_start(self) -> None:
        """Note where the event log stands when this engine is first used: what it reports starts there."""
        if self._start_seq is None:
            self._start_seq = await self.store.last_event_seq()

    async def _track(self, rollout_id: str, into: set[str]) -> None:
        """Report the rollout's events from now on: those recorded since this engine was first used."""
        await self._mark_start()
        assert self._start_seq is not None
        into.add(rollout_id)
        self._seen.setdefault(rollout_id, self._start_seq)

    async def _emit(self) -> None:
        """Report the new events of the rollouts this engine drives or follows, in the order recorded."""
        async with self._emitting:
            found: list[Event] = []
            for rollout_id, seen in list(self._seen.items()):
                found += await self.store.events(after=seen, rollout_id=rollout_id)
            for event in sorted(found, key=lambda e: e.seq):
                self._seen[event.rollout_id] = event.seq
                if event.rollout_id in self._driving:  # a followed rollout's own process notifies
                    self.hooks.notify(event, await self.store.rollout(event.rollout_id))
                if self._on_event is not None:
                    self._on_event(event)

    def _progress(self, text: str) -> None:
        if self._on_progress is not None:
            self._on_progress(text)

    def _live(
        self,
        r: Rollout,
        text: str,
        *,
        hold: tuple[float, float] | None = None,
        figures: Mapping[str, Figures] | None = None,
    ) -> None:
        """Tell `on_live` where the rollout stands: its record's phase, step and weights, and the rest."""
        if self._on_live is None:
            return
        self._on_live(
            Live(
                rollout_id=r.id,
                app=r.app,
                phase=str(r.phase),
                step=r.step,
                steps=len(r.steps),
                weights=report.weights_dict(r.weights),
                text=text,
                hold=hold,
                replicas=dict(self._replicas.get(r.id, {})),
                figures=dict(figures or {}),
            )
        )


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if isinstance(exc, TrafficShiftError) else f"{type(exc).__name__}: {text}"
