"""The PushWatcher: `ip -o monitor address` on every director, over the pooled SSH
connection. A VIP added or deleted anywhere calls ``wake`` at once; the
scheduled round stays the reconcile. Each watcher reconnects with backoff.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from arbiter.clock import Clock, utcnow
from arbiter.config import ClusterConfig, Config
from arbiter.probe.collect import MONITOR
from arbiter.probe.ssh import Runner
from arbiter.round.memory.current import CurrentConfig
from arbiter.round.views.streams import Streams
from arbiter.round.views.targets import target_for

log = logging.getLogger("arbiter.push")

BACKOFF_MIN, BACKOFF_MAX = 1.0, 30.0
STABLE_AFTER = 30.0  # a watch that lasted this long starts its backoff again


def mentions_vip(line: str, vips: list[str]) -> str | None:
    return next((v for v in vips if f" {v}/" in line), None)


class PushWatcher(Streams):
    def __init__(self, config: Config | CurrentConfig, runner: Runner, wake: Callable[[], None],
                 clock: Clock = utcnow):
        super().__init__(config, runner, wake, clock)
        self.events = 0
        self.last: dict[str, Any] | None = None
        self.up = 0

    def start(self) -> None:
        for c in self.config.clusters:
            for n in c.nodes:
                self._tasks.append(asyncio.create_task(self._watch(c, n.name),
                                                       name=f"watch-{c.name}-{n.name}"))

    async def _watch(self, c: ClusterConfig, node: str) -> None:
        t = target_for(self.config, c, node)
        backoff = BACKOFF_MIN
        loop = asyncio.get_running_loop()
        vips = list(c.vips)
        while True:
            started = loop.time()
            attached = False
            try:
                async for line in self.runner.stream(t, MONITOR):
                    if not attached:
                        attached = True
                        self.up += 1
                    vip = mentions_vip(line, vips)
                    if vip is None:
                        continue
                    self.events += 1
                    self.last = {"cluster": c.name, "node": node, "vip": vip,
                                 "deleted": line.startswith("Deleted"),
                                 "at": self.clock().isoformat()}
                    log.debug("[%s] push from %s: %s", c.name, node, line.strip())
                    self.wake()
            finally:
                if attached:
                    self.up -= 1
            if loop.time() - started > STABLE_AFTER:
                backoff = BACKOFF_MIN
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)
