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
        self._warned: set[tuple[str, str]] = set()  # (cluster, node) whose silence was logged

    def record(self, cluster: str, node: str, verdict: str, vip: str | None) -> None:
        self._last[(cluster, node)] = GateAsk(self._clock(), verdict, vip)

    def wiring(self, config: Config, now: float | None = None) -> dict[str, list[GateWiring]]:
        """Per cluster, each node's gate: wired when it asked within
        ``3 x interval + 5 s`` (a gate asks every second; three rounds of slack plus
        its own timeouts). Read on the event loop, its only writer."""
        now = self._clock() if now is None else now
        limit = gate_deadline(config)
        out: dict[str, list[GateWiring]] = {}
        for c in config.clusters:
            rows = []
            for n in c.nodes:
                a = self._last.get((c.name, n.name))
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

    def warnings(self, config: Config, wiring: dict[str, list[GateWiring]] | None = None,
                 now: float | None = None) -> dict[str, dict[str, str]]:
        """Per exclusive cluster, node -> warning for each gate that is not asking, once
        the arbiter has run long enough that a wired gate would have asked. ``wiring``:
        the one just computed, if the caller has it."""
        now = self._clock() if now is None else now
        if now - self.started < gate_deadline(config):
            return {}
        wiring = self.wiring(config, now) if wiring is None else wiring
        out: dict[str, dict[str, str]] = {}
        for c in config.clusters:
            if c.verdict != "exclusive":
                continue
            silent = {w.node: (f"{c.name}/{w.node}: exclusive verdicts, but its arbiter-gate "
                               f"is {w.summary}: nothing stops it from claiming the VIP "
                               "(wire chk_arbiter into its keepalived)")
                      for w in wiring[c.name] if not w.wired}
            if silent:
                out[c.name] = silent
        return out

    def log_changes(self, config: Config) -> None:
        """Log each node whose gate goes silent once, and once more when it asks again
        (an APScheduler job runs this every few seconds)."""
        warned: dict[tuple[str, str], str] = {
            (cluster, node): w for cluster, by_node in self.warnings(config).items()
            for node, w in by_node.items()}
        for key in sorted(warned.keys() - self._warned):
            log.warning("%s", warned[key])
        for cluster, node in sorted(self._warned - warned.keys()):
            log.info("%s/%s: its arbiter-gate asks again", cluster, node)
        self._warned = set(warned)


def gate_deadline(config: Config) -> float:
    return 3 * config.arbiter.interval + 5.0
