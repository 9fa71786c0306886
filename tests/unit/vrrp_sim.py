"""A pure model of two keepalived instances' counters over time, as the arbiter's
keepalived watch would sample them: for table and property tests of policy.vrrp.

A master sends an advert every ``advert_int`` (advert_sent += 1); the other node
receives each one unless the link is cut (advert_rcvd += 1), in BACKUP or MASTER
(keepalived 2.2 counts nothing in FAULT; a MASTER counts what it receives too). Each
node is dumped every ``every`` seconds, with a phase of its own, and the samples
carry the arbiter's clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from arbiter.model import KeepalivedView, VrrpInstance, VrrpSample
from tests.unit.builders import T0, VIP1


@dataclass
class Node:
    name: str
    state: str
    priority: int
    rcvd: int = 0
    sent: int = 0
    pz_sent: int = 0
    samples: list[VrrpSample] = field(default_factory=list)
    dumping: bool = True  # False: keepalived dead, frozen or unreachable (no dumps)


@dataclass
class Pair:
    """lb1 (MASTER, 100) and lb2 (BACKUP, 90), one instance VI_1 (vrid 51) of VIP1."""

    advert_int: float = 1.0
    every: float = 0.25
    phase: float = 0.1  # lb2's dumps come this much after lb1's
    cut: bool = False
    t: float = 0.0
    nodes: dict[str, Node] = field(default_factory=lambda: {
        "lb1": Node("lb1", "MASTER", 100), "lb2": Node("lb2", "BACKUP", 90)})
    _next_advert: float = 0.0
    _next_dump: dict[str, float] = field(default_factory=dict)

    def at(self, t: float) -> datetime:
        return T0 + timedelta(seconds=t)

    def set_state(self, name: str, state: str) -> None:
        self.nodes[name].state = state

    def run(self, until: float) -> None:
        """Advance to ``until``, sending adverts and taking dumps as they fall due."""
        if not self._next_dump:
            self._next_dump = {"lb1": 0.0, "lb2": self.phase}
        while True:
            nxt = min([self._next_advert, *self._next_dump.values()])
            if nxt > until:
                break
            self.t = nxt
            if nxt == self._next_advert:
                self._advert()
                self._next_advert += self.advert_int
            for name, due in self._next_dump.items():
                if due == nxt:
                    self._dump(self.nodes[name])
                    self._next_dump[name] = due + self.every
        self.t = until

    def _advert(self) -> None:
        masters = [n for n in self.nodes.values() if n.state == "MASTER" and n.dumping]
        for m in masters:
            m.sent += 1
            for other in self.nodes.values():
                if other is not m and other.state in ("BACKUP", "MASTER") and not self.cut:
                    other.rcvd += 1

    def _dump(self, n: Node) -> None:
        if n.dumping:
            n.samples.append(VrrpSample(self.at(self.t), n.state, n.rcvd, n.sent, n.pz_sent))

    def view(self, name: str, error: str | None = None) -> KeepalivedView:
        n = self.nodes[name]
        if not n.samples:
            return KeepalivedView(error=error or "no dump yet")
        since = n.samples[-1].at  # as the watch sees it: the first dump in this state
        for s in reversed(n.samples):
            if s.state != n.samples[-1].state:
                break
            since = s.at
        inst = VrrpInstance(
            name="VI_1", vrid=51, version=2, state=n.samples[-1].state,
            wantstate=n.samples[-1].state, base_priority=n.priority,
            effective_priority=n.priority, advert_int=self.advert_int, vips=(VIP1,),
            interface="eth0", last_transition=0.0,
            samples=tuple(s for s in n.samples if s.at > self.at(self.t - 20)),
            state_since=since)
        return KeepalivedView((inst,), n.samples[-1].at, error)
