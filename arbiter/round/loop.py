"""The loop's timing, apart from what a round does (issue 33): ``run_forever`` starts
the watchers and runs rounds until stopped; each round starts on the schedule
(``policy.schedule.Scheduler``: the interval, TILT after a late start, the confirmation
deadlines), or early when something wakes it (a push event, a dump, an intent), and
never closer than ``min_round_gap`` to the last. ``Arbiter`` is one of these.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from arbiter import failpoints
from arbiter.config import Config
from arbiter.model import History
from arbiter.policy.schedule import Scheduler, confirm_due

log = logging.getLogger("arbiter.service")


class Looping:
    """What the loop needs of the Arbiter it runs."""

    scheduler: Scheduler
    history: History
    mono: Callable[[], float]
    wall: Callable[[], float]
    clock: Callable[[], datetime]
    _wake: asyncio.Event
    _running: bool
    _last_error: str | None
    arp: Any
    keepalived: Any
    push: Any
    fencer: Any

    if TYPE_CHECKING:  # the Arbiter's own; stubs here would shadow them at run time
        @property
        def config(self) -> Config: ...
        async def run_round(self) -> Any: ...
        def _publish(self) -> None: ...
        def _start_watchers(self) -> None: ...

    def wake(self) -> None:
        self._wake.set()

    async def wait_fences(self, timeout: float = 30.0) -> None:
        await self.fencer.wait_idle(timeout)

    async def run_forever(self, stop: asyncio.Event) -> None:
        self._start_watchers()
        self._running = True
        try:
            await failpoints.reach("BEFORE_FIRST_ROUND")  # test only (status --wait)
            await self._loop(stop)
        finally:
            self._running = False
            self.arp.stop()
            await self.keepalived.stop()
            await self.push.stop()
            await self.fencer.wait_idle()

    async def _loop(self, stop: asyncio.Event) -> None:
        sched = self.scheduler
        while not stop.is_set():
            start, start_at = self.mono(), self.clock()
            if tilted := sched.round_starts(start, self.wall(), start_at):
                log.warning("TILT: %s; fencing suspended for %.0fs", tilted,
                            sched.tilt.period)
            try:
                await self.run_round()
            except Exception as exc:  # noqa: BLE001 - the loop must survive its own bugs
                log.exception("round failed")
                self._last_error = f"{type(exc).__name__}: {exc}"
                self._publish()
            if sched.round_ends(start, self.mono()):
                log.warning("round took %.2fs, longer than interval %.2fs; next round starts "
                            "now", self.mono() - start, sched.interval)
            self._wake.clear()
            due = confirm_due(self.history, self.config.confirm_span, start_at)
            confirm_in = (due - self.clock()).total_seconds() if due is not None else None
            wait, deadline_first = sched.sleep_for(self.mono(), confirm_in)
            if wait <= 0:
                continue
            if await self._sleep(wait, stop):
                await asyncio.sleep(sched.woke_early(start, self.mono()))
            elif deadline_first:
                sched.deadline_reached(self.mono())

    async def _sleep(self, seconds: float, stop: asyncio.Event) -> bool:
        """Wait for the next round; True if woken early (and not stopping)."""
        stop_task = asyncio.ensure_future(stop.wait())
        wake_task = asyncio.ensure_future(self._wake.wait())
        await asyncio.wait({stop_task, wake_task}, timeout=seconds,
                           return_when=asyncio.FIRST_COMPLETED)
        woke = wake_task.done() and not stop.is_set()
        for t in (stop_task, wake_task):
            t.cancel()
        return woke
