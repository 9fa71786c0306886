"""Intents: what the API asks of the loop, queued and carried out by the next round.

An operator's release and a keepalived event from ``arbiter-notify`` never touch
the loop's state from an HTTP request. The request queues an intent and wakes
the loop; the round carries it out under the round lock, like everything else,
and the operator's answer waits on the intent's future (Patroni's API does the
same). The queue is bounded: an event storm drops the oldest events.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from arbiter.clock import Clock
from arbiter.config import Config
from arbiter.ha.lease import NotLeader
from arbiter.model import History
from arbiter.policy import memory
from arbiter.round.acts.fencer import Fencer
from arbiter.round.memory.ledger import Ledger
from arbiter.round.memory.pauses import Pauses
from arbiter.store.engine import StoreError

log = logging.getLogger("arbiter.intents")

INTENTS_MAX = 1000


def answer_later() -> asyncio.Future[dict[str, Any]]:
    """Where the round that carries an intent out puts its answer (the API awaits it)."""
    return asyncio.get_running_loop().create_future()


@dataclass
class ReleaseIntent:
    incident: int
    by: str
    done: asyncio.Future[dict[str, Any]] = field(default_factory=answer_later)


@dataclass
class PauseIntent:
    """``seconds`` set: pause ``scope`` (None: every cluster); None: resume it (with
    ``every``, every pause in force)."""

    scope: str | None
    seconds: float | None
    reason: str
    by: str
    every: bool = False
    done: asyncio.Future[dict[str, Any]] = field(default_factory=answer_later)


@dataclass(frozen=True)
class EventIntent:
    cluster: str
    node: str
    instance: str
    state: str
    priority: int | None
    source: str | None


class Intents:
    def __init__(self, ledger: Ledger, fencer: Fencer, pauses: Pauses, clock: Clock):
        self.ledger = ledger
        self.fencer = fencer
        self.pauses = pauses
        self.clock = clock
        self.last_event: dict[tuple[str, str], dict[str, Any]] = {}
        self._queue: deque[ReleaseIntent | EventIntent | PauseIntent] = \
            deque(maxlen=INTENTS_MAX)

    def add(self, intent: ReleaseIntent | EventIntent | PauseIntent) -> None:
        self._queue.append(intent)

    async def carry_out(self, config: Config, history: History) -> History:
        """Every queued intent, in order; returns the memory with releases applied."""
        events: list[EventIntent] = []
        while self._queue:
            intent = self._queue.popleft()
            if isinstance(intent, EventIntent):
                events.append(intent)
            elif isinstance(intent, PauseIntent):
                await self._pause(intent)
            else:
                history = await self._release(config, history, intent)
        if events:
            await self._store_events(events)
        return history

    async def _pause(self, intent: PauseIntent) -> None:
        scope = intent.scope or "every cluster"
        try:
            if intent.seconds is not None:
                p = await self.pauses.add(intent.scope, intent.seconds, intent.reason,
                                          intent.by)
                intent.done.set_result({"pause": p.id, "scope": scope,
                                        "until": p.until.isoformat(), "by": p.by,
                                        "reason": p.reason})
            else:
                gone = await self.pauses.end(intent.scope, intent.every, intent.by)
                if not gone:
                    intent.done.set_exception(LookupError(scope))
                else:
                    log.warning("maintenance pause(s) %s ended by %s",
                                ", ".join(f"#{p.id}" for p in gone), intent.by)
                    intent.done.set_result({"scope": scope, "ended": [p.id for p in gone],
                                            "by": intent.by})
        except StoreError as exc:
            intent.done.set_exception(exc)

    async def _store_events(self, events: list[EventIntent]) -> None:
        at = self.clock()
        rows = [{"cluster": e.cluster, "node": e.node, "instance": e.instance,
                 "state": e.state, "priority": e.priority, "at": at, "source": e.source}
                for e in events]
        try:
            await self.ledger.call(self.ledger.repo.add_node_events, rows)
        except StoreError:
            log.warning("%d keepalived event(s) not stored: database unavailable", len(rows))
        for e in events:
            self.last_event[(e.cluster, e.node)] = {
                "instance": e.instance, "state": e.state, "priority": e.priority,
                "at": at.isoformat()}

    async def _release(self, config: Config, history: History,
                       intent: ReleaseIntent) -> History:
        try:
            res = await self.ledger.call(self.ledger.repo.release_by_operator, intent.incident,
                                         self.clock(), intent.by)
        except (StoreError, NotLeader) as exc:
            intent.done.set_exception(exc)
            return history
        if res is None:
            intent.done.set_exception(KeyError(intent.incident))
            return history
        cluster, gone = res
        cfg = config.cluster(cluster or "")
        out: dict[str, Any] = {"incident": intent.incident, "released": gone, "recover": []}
        if cfg is None or not gone:
            intent.done.set_result(out)
            return history
        hist = history.cluster(cfg.name)
        holds = [h for h in hist.held if h.incident == intent.incident and h.node in gone]
        for n in gone:
            hist = memory.release(hist, n, intent.incident)
        log.warning("[%s] incident #%s released by %s: %s", cfg.name, intent.incident,
                    intent.by, ", ".join(gone))
        recovering = [self.fencer.recover(cfg, h, intent.by) for h in holds
                      if h.keepalived_stopped]
        if not recovering:
            intent.done.set_result(out)
        else:
            def answer(results: asyncio.Future[list[dict]]) -> None:
                out["recover"] = results.result()
                if not intent.done.done():
                    intent.done.set_result(out)

            asyncio.gather(*recovering).add_done_callback(answer)
        return memory.with_cluster(history, cfg.name, hist)
