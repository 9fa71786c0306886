"""A pure model of two keepalived instances' counters over time, as the arbiter's
keepalived watch would sample them: for table and property tests of policy.vrrp.

A master sends an advert every ``advert_int`` (advert_sent += 1); the other node
receives each one unless the link is cut (advert_rcvd += 1), in BACKUP or MASTER
(keepalived 2.2 counts nothing in FAULT; a MASTER counts what it receives too). Each
node is dumped every ``every`` seconds, with a phase of its own, and the samples
carry the arbiter's clock. With ``quiet``, each node's dumps go through the node's
quiet-tick rule (``probe.keepalived.QuietTicks``) as the watch sends them: a tick held
back gives no sample until the next change brings it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from arbiter.model import KeepalivedView, VrrpInstance, VrrpSample
from arbiter.probe.keepalived import ONE_INSTANCE, QuietTicks
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
    ticks: QuietTicks | None = None  # the node's quiet ticks (None: every dump is sent)
    held: VrrpSample | None = None  # the last tick held back
    sent_messages: int = 0


@dataclass
class Pair:
    """lb1 (MASTER, 100) and lb2 (BACKUP, 90), one instance VI_1 (vrid 51) of VIP1."""

    advert_int: float = 1.0
    every: float = 0.25
    phase: float = 0.1  # lb2's dumps come this much after lb1's
    cut: bool = False
    quiet: int = 0  # the nodes' quiet ticks (0: every dump is sent)
    # each dump comes up to this much later than its period says (the node's shell
    # loop takes its own time), drawn from ``seed``
    jitter: float = 0.0
    loss: float = 0.0  # each advert is lost on the way with this chance (from ``seed``)
    seed: int = 0
    t: float = 0.0
    nodes: dict[str, Node] = field(default_factory=lambda: {
        "lb1": Node("lb1", "MASTER", 100), "lb2": Node("lb2", "BACKUP", 90)})
    _next_advert: float = 0.0
    _next_dump: dict[str, float] = field(default_factory=dict)
    _rng: random.Random = field(default_factory=random.Random)

    def at(self, t: float) -> datetime:
        return T0 + timedelta(seconds=t)

    def set_state(self, name: str, state: str) -> None:
        self.nodes[name].state = state

    def step(self, what: str) -> None:
        """One event of a timeline (tests/unit/test_vrrp_policy.py ``timeline``)."""
        if what in ("cut", "heal"):
            self.cut = what == "cut"
        elif what in ("fault", "backup"):
            self.set_state("lb2", what.upper())
        elif what == "master-dies":
            self.nodes["lb1"].dumping = False

    def run(self, until: float) -> None:
        """Advance to ``until``, sending adverts and taking dumps as they fall due."""
        if not self._next_dump:
            self._next_dump = {"lb1": 0.0, "lb2": self.phase}
            self._rng = random.Random(self.seed)
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
                    self._next_dump[name] = due + self.every + (
                        self._rng.uniform(0.0, self.jitter) if self.jitter else 0.0)
        self.t = until

    def _advert(self) -> None:
        masters = [n for n in self.nodes.values() if n.state == "MASTER" and n.dumping]
        for m in masters:
            m.sent += 1
            for other in self.nodes.values():
                if other is not m and other.state in ("BACKUP", "MASTER") and not self.cut \
                        and not (self.loss and self._rng.random() < self.loss):
                    other.rcvd += 1

    def _dump(self, n: Node) -> None:
        if not n.dumping:
            return
        sample = VrrpSample(self.at(self.t), n.state, n.rcvd, n.sent, n.pz_sent)
        if not self.quiet:
            n.samples.append(sample)
            n.sent_messages += 1
            return
        if n.ticks is None:
            n.ticks = QuietTicks(self.quiet)
        text = (f'{ONE_INSTANCE} "adver_int": {self.advert_int:g} {n.state} {n.rcvd} '
                f"{n.sent} {n.pz_sent}")
        out = n.ticks.tick(text, self.t)
        if out is None:
            n.held = sample
            return
        if out[1] is not None and n.held is not None:
            n.samples.append(n.held)  # `@@kv UPTIME HELD`: the tick before the change
        n.held = None
        n.samples.append(sample)
        n.sent_messages += 1

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
