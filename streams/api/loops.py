"""The API process's background loops, kept running: restart with capped backoff, and say which is down and why.

Issue 12: the actions feed died once when its topic was missing at start-up and
never came back, while /healthz kept saying ok, so nothing ever restarted the pod.
Here every loop is restarted after a failure (0.5 s, 1 s, 2 s … up to a cap), its
state changes are logged once each (not once per retry), ``/readyz`` reports every
loop, and ``/healthz`` turns unhealthy when a loop stays down past a limit, so the
kubelet restarts a process that cannot heal itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

logger = logging.getLogger(__name__)

#: A failure reason is shown on /readyz; long exception texts are cut.
_MAX_REASON = 300


class LoopState(StrEnum):
    STARTING = "starting"
    UP = "up"
    DOWN = "down"
    STOPPED = "stopped"


class LoopHandle:
    """What a loop body gets: ``up()`` once it does its job (e.g. the feed caught up), and the stop signal."""

    def __init__(self, supervisor: Loops, name: str) -> None:
        self._supervisor = supervisor
        self.name = name

    @property
    def stopping(self) -> bool:
        return self._supervisor.stopping.is_set()

    @property
    def stop_event(self) -> asyncio.Event:
        """Set when the process stops: for bodies that wait on an event rather than poll ``stopping``."""
        return self._supervisor.stopping

    def up(self) -> None:
        self._supervisor._change(self.name, LoopState.UP, None)

    def down(self, reason: str) -> None:
        """The loop is alive but cannot do its job (e.g. every broker unreachable); it keeps trying itself."""
        self._supervisor._change(self.name, LoopState.DOWN, reason)


LoopBody = Callable[[LoopHandle], Awaitable[None]]


@dataclass(slots=True)
class LoopStatus:
    state: LoopState = LoopState.STARTING
    reason: str | None = None
    #: Monotonic time of the last state change, and the wall-clock one to show.
    since: float = 0.0
    since_wall: datetime | None = None
    #: Monotonic time since which the loop has not been up (None while up).
    not_up_since: float | None = None
    restarts: int = 0

    def as_json(self, now: float) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "reason": self.reason,
            "since": self.since_wall.isoformat() if self.since_wall else None,
            "seconds_in_state": round(now - self.since, 1),
            "restarts": self.restarts,
        }


class Loops:
    """Runs named loop bodies until :meth:`stop`; a body that raises or returns early is restarted.

    Backoff doubles from ``initial_backoff_s`` to ``max_backoff_s`` and starts over once the loop
    has been up. ``unhealthy_after_s``: how long a loop may stay not-up (down, or still starting)
    before :meth:`health` says the process should be restarted.
    """

    def __init__(
        self,
        *,
        initial_backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        unhealthy_after_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.initial_backoff_s = initial_backoff_s
        self.max_backoff_s = max_backoff_s
        self.unhealthy_after_s = unhealthy_after_s
        self._clock = clock
        self._bodies: dict[str, LoopBody] = {}
        self._status: dict[str, LoopStatus] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.stopping = asyncio.Event()

    def add(self, name: str, body: LoopBody, *, waiting_for: str = "its first round") -> None:
        """``waiting_for``: what the loop does before it is up, said on /readyz until then (a feed: its topics
        read to their end), so a 503 during start-up says why rather than only "starting"."""
        now = self._clock()
        self._bodies[name] = body
        self._status[name] = LoopStatus(reason=f"waiting for {waiting_for}", since=now,
                                        since_wall=datetime.now(UTC), not_up_since=now)

    def _change(self, name: str, state: LoopState, reason: str | None, error: BaseException | None = None) -> None:
        status = self._status[name]
        if reason is not None and len(reason) > _MAX_REASON:
            reason = reason[:_MAX_REASON] + "…"
        if status.state is state and status.reason == reason:
            return
        now = self._clock()
        if state is LoopState.UP:
            logger.info("api loop %s is up%s", name, " again" if status.restarts else "", extra={"loop": name})
            status.not_up_since = None
        elif status.state is not state:
            # One line per state change, not per retry: a broker outage is one warning, not one a second.
            log = logger.warning if state is LoopState.DOWN else logger.info
            log("api loop %s is %s: %s", name, state.value, reason or "-", exc_info=error, extra={"loop": name})
        if state is not LoopState.UP and status.not_up_since is None:
            status.not_up_since = now
        if status.state is not state:
            status.since, status.since_wall = now, datetime.now(UTC)
        status.state, status.reason = state, reason

    async def _supervise(self, name: str, body: LoopBody) -> None:
        handle = LoopHandle(self, name)
        backoff = self.initial_backoff_s
        while True:  # a body runs at least once, even when stopped at once (its first round may be due work)
            error: BaseException | None = None
            try:
                await body(handle)
                reason = "ended without being asked to stop"
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the loop boundary: restart, never a dead loop
                reason, error = f"{type(exc).__name__}: {exc}", exc
            if self.stopping.is_set():
                break
            if self._status[name].state is LoopState.UP:
                backoff = self.initial_backoff_s
            self._change(name, LoopState.DOWN, reason, error)
            self._status[name].restarts += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=backoff)
            if self.stopping.is_set():
                break
            backoff = min(backoff * 2, self.max_backoff_s)
        self._change(name, LoopState.STOPPED, None)

    def start(self) -> None:
        for name, body in self._bodies.items():
            self._tasks.append(asyncio.create_task(self._supervise(name, body), name=f"api-loop-{name}"))

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Ask every loop to stop (bodies watch ``handle.stopping``), then cancel what did not end in time."""
        self.stopping.set()
        if not self._tasks:
            return
        _, pending = await asyncio.wait(self._tasks, timeout=timeout_s)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def ready(self) -> bool:
        return all(s.state is LoopState.UP for s in self._status.values())

    def report(self) -> dict[str, dict[str, Any]]:
        now = self._clock()
        return {name: status.as_json(now) for name, status in self._status.items()}

    def unhealthy(self) -> list[str]:
        """Why the process should be restarted: each loop not up for longer than ``unhealthy_after_s``."""
        now = self._clock()
        out = []
        for name, status in self._status.items():
            if status.not_up_since is not None and now - status.not_up_since > self.unhealthy_after_s:
                out.append(f"loop {name} not up for {now - status.not_up_since:.0f}s "
                           f"(limit {self.unhealthy_after_s:g}s): {status.reason or status.state.value}")
        return out


class Feed(Protocol):
    """A topic follower with its own ``run()``, ``caught_up`` event and ``stop()`` (e.g. ``ApprovalsFeed``)."""

    caught_up: asyncio.Event

    def run(self) -> Coroutine[Any, Any, None]: ...

    def stop(self) -> None: ...


def following(make: Callable[[], Feed]) -> LoopBody:
    """A loop body for a :class:`Feed`: a fresh one per attempt (a feed closes its consumer when its ``run()``
    ends, so it cannot be run twice), up once it caught up; a ``run()`` that raises or returns is restarted
    by the supervisor like any loop. Feeds fill idempotent memories, so re-reading after a restart is safe."""

    async def body(handle: LoopHandle) -> None:
        feed = make()
        task = asyncio.create_task(feed.run())
        stopping = asyncio.create_task(handle.stop_event.wait())
        ready = asyncio.create_task(feed.caught_up.wait())
        try:
            await asyncio.wait({task, ready, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if feed.caught_up.is_set() and not task.done():
                handle.up()
            await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
            stopping.cancel()
            if not task.done():
                feed.stop()
            await task  # its failure (or normal end) is what the supervisor reports

    return body
