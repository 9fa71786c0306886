"""Whether each node's arbiter-gate is wired: when it last asked /verdict, and what
it was told.

Exclusive verdicts protect nothing on a node whose keepalived never asks, and that
failure is silent: VRRP works the same until the day it splits. So the API notes
every answer here (a dict write on the event loop: /verdict's hot path stays cheap),
and ``/status``, ``arbiter check`` and a periodic log line read it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from arbiter.config import Config

log = logging.getLogger("arbiter.gate")

@dataclass(frozen=True, slots=True)
class GateAsk:
    at: float  # time.monotonic()
    verdict: str
    vip: str | None


@dataclass(frozen=True, slots=True)
class GateWiring:
    node: str
    wired: bool
    summary: str  # "wired, last asked 0.8 s ago, allow" or "never asked"
    asked_ago: float | None
    verdict: str | None


class GateLog:
    """(cluster, node) -> the last /verdict answer. Only the event loop writes."""

    def __init__(self, clock=time.monotonic) -> None:  # type: ignore[no-untyped-def]
        self._clock = clock
        self.started = clock()
        self._last: dict[tuple[str, str], GateAsk] = {}
        self._warned: set[str] = set()  # nodes whose silence was logged

    def record(self, cluster: str, node: str, verdict: str, vip: str | None) -> None:
        self._last[(cluster, node)] = GateAsk(self._clock(), verdict, vip)

    def snapshot(self) -> dict[tuple[str, str], GateAsk]:
        return dict(self._last)  # a copy: status is built in a worker thread

    def wiring(self, config: Config, now: float | None = None,
               asks: dict[tuple[str, str], GateAsk] | None = None
               ) -> dict[str, list[GateWiring]]:
        """Per cluster, each node's gate: wired when it asked within
        ``3 x interval + 5 s`` (a gate asks every second; three rounds of slack plus
        its own timeouts)."""
        now = self._clock() if now is None else now
        asks = self._last if asks is None else asks
        limit = gate_deadline(config)
        out: dict[str, list[GateWiring]] = {}
        for c in config.clusters:
            rows = []
            for n in c.nodes:
                a = asks.get((c.name, n.name))
                if a is None:
                    rows.append(GateWiring(n.name, False, "never asked", None, None))
                    continue
                ago = now - a.at
                wired = ago <= limit
                rows.append(GateWiring(
                    n.name, wired,
                    f"{'wired' if wired else 'silent'}, last asked {ago:.1f} s ago, {a.verdict}",
                    round(ago, 1), a.verdict))
            out[c.name] = rows
        return out

    def warnings(self, config: Config, now: float | None = None) -> list[str]:
        """Exclusive clusters whose nodes' gates are not asking, once the arbiter has
        run long enough that a wired gate would have asked."""
        now = self._clock() if now is None else now
        if now - self.started < gate_deadline(config):
            return []
        out = []
        wiring = self.wiring(config, now)
        for c in config.clusters:
            if c.verdict != "exclusive":
                continue
            for w in wiring[c.name]:
                if not w.wired:
                    out.append(f"{c.name}/{w.node}: exclusive verdicts, but its arbiter-gate "
                               f"is {w.summary}: nothing stops it from claiming the VIP "
                               "(wire chk_arbiter into its keepalived)")
        return out


    def log_changes(self, config: Config) -> None:
        """Log each node whose gate goes silent once, and once more when it asks again
        (an APScheduler job runs this every few seconds)."""
        now = self._clock()
        warned = set()
        for w in self.warnings(config, now):
            node = w.split(":", 1)[0]
            warned.add(node)
            if node not in self._warned:
                log.warning("%s", w)
        for node in sorted(self._warned - warned):
            log.info("%s: its arbiter-gate asks again", node)
        self._warned = warned


def gate_deadline(config: Config) -> float:
    return 3 * config.arbiter.interval + 5.0
