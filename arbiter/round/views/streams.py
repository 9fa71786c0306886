"""What the stream views share (push detection, keepalived's view): one long-running
SSH stream per director, over the pooled connection, that wakes the loop; the tasks
are cancelled and awaited at ``stop``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from arbiter.clock import Clock, utcnow
from arbiter.config import Config
from arbiter.probe.ssh import Runner
from arbiter.round.memory.current import CurrentConfig, ReadsConfig, holder


class Streams(ReadsConfig):
    def __init__(self, config: Config | CurrentConfig, runner: Runner,
                 wake: Callable[[], None], clock: Clock = utcnow):
        self._current = holder(config)
        self.runner = runner
        self.wake = wake
        self.clock = clock
        self._tasks: list[asyncio.Task[None]] = []

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()
