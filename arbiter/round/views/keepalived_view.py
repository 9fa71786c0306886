"""keepalived's own view of every director, kept current between rounds.

One long-running stream per node (``probe.keepalived.watch_command``, over the
pooled SSH connection, reconnected with backoff like the push watchers) delivers a
dump every ``keepalived_watch_every`` seconds. Each dump is stamped on the arbiter's
timeline from the node's own clock (``NodeClock``: when the node took it, not when it
arrived) and appended to a short history per instance; the
round takes a frozen ``KeepalivedView`` of each node into its snapshot.

A dump wakes the round when it changes what the policy would decide: an instance's
state changed, or a backup's count of missed adverts (``policy.vrrp.missed``)
crossed the deny threshold or went back to zero. So a backup that stops hearing its
master is judged within one dump, not at the next scheduled round.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from arbiter.clock import Clock, utcnow
from arbiter.config import ClusterConfig, Config
from arbiter.model import KeepalivedView, VrrpInstance, VrrpSample
from arbiter.policy.vrrp import MISSED_TO_DENY, missed, quiet_ticks
from arbiter.probe.keepalived import (
    END,
    ERROR,
    MARK,
    NO_ANSWER,
    SAME,
    DumpError,
    InstanceDump,
    dump_uptime,
    dump_uptimes,
    is_dump_line,
    is_same_line,
    parse_dump,
    watch_command,
)
from arbiter.probe.ssh import Runner
from arbiter.round.memory.current import CurrentConfig
from arbiter.round.views.streams import Streams
from arbiter.round.views.targets import target_for

log = logging.getLogger("arbiter.keepalived")

BACKOFF_MIN, BACKOFF_MAX = 1.0, 30.0
STABLE_AFTER = 30.0
HISTORY = timedelta(seconds=20)  # samples kept per instance: enough for a probe cycle
HISTORY_MAX = 200
UNSUPPORTED = "keepalived has no JSON dump"

NodeKey = tuple[str, str]


@dataclass
class _Track:
    """One instance's history on one node; ``instance`` is what a round or the
    crossing check reads, built once per new sample (issue 32: the crossing check
    rebuilt every node's instances at every dump)."""

    samples: deque[VrrpSample] = field(default_factory=lambda: deque(maxlen=HISTORY_MAX))
    state_since: datetime | None = None
    last: InstanceDump | None = None
    instance: VrrpInstance | None = None


@dataclass
class NodeClock:
    """A node's dumps on the arbiter's timeline, from the node's own clock (its uptime,
    on each dump line) rather than from when they arrived (issue 29). The offset is the
    smallest ``arrival - uptime`` seen: the fastest delivery. A connection that stalls
    and then delivers its queued dumps in a burst would otherwise stamp a master's old
    adverts after the backup last heard one, and deny a backup that heard every one.
    The offset may grow by ``DRIFT`` seconds a second (clock rates, a path that got
    slower for good); it starts again when the uptime goes back (a reboot). Without an
    uptime (an older wrapper) a dump is stamped when it arrived, as before."""

    DRIFT = 1e-3
    offset: float | None = None
    last: float | None = None

    def stamp(self, arrival: datetime, uptime: float | None) -> datetime:
        if uptime is None:
            return arrival
        seen = arrival.timestamp() - uptime
        if self.offset is None or self.last is None or uptime < self.last:
            self.offset = seen
        else:
            self.offset = min(seen, self.offset + self.DRIFT * (uptime - self.last))
        self.last = uptime
        return min(arrival, datetime.fromtimestamp(uptime + self.offset, arrival.tzinfo))


@dataclass
class _Node:
    tracks: dict[str, _Track] = field(default_factory=dict)
    at: datetime | None = None
    error: str | None = "no dump yet"
    supported: bool = True
    refused: int = 0  # streams in a row that ended without a single line
    # "vrid/family" -> (missed, counted against whose MASTER), as last judged
    missed: dict[str, tuple[int, str | None]] = field(default_factory=dict)
    failing_since: datetime | None = None  # errors and no dump since then
    last_text: str | None = None  # the last dump as it came, and what it parsed to
    last_dumps: tuple[InstanceDump, ...] = ()
    clock: NodeClock = field(default_factory=NodeClock)
    # the last stream asked for quiet ticks and ended at once: an arbiter-ssh-wrapper
    # older than quiet ticks refuses that form, so the next asks for every tick
    plain: bool = False


class KeepalivedViews(Streams):
    def __init__(self, config: Config | CurrentConfig, runner: Runner, wake: Callable[[], None],
                 clock: Clock = utcnow):
        super().__init__(config, runner, wake, clock)
        self.dumps = 0  # dumps recorded: whole, or `@@kv-same`
        self.parsed = 0  # dumps parsed (the others were the same text as the last)
        self.same = 0  # `@@kv-same` lines: the node sent no text at all
        self.held = 0  # samples of ticks a node held back (quiet ticks), from `@@kv`
        self._nodes: dict[NodeKey, _Node] = {}

    # --- lifecycle --------------------------------------------------------------
    def start(self) -> None:
        for c in self.config.clusters:
            if not c.keepalived_view:
                continue
            for n in c.nodes:
                self._tasks.append(asyncio.create_task(
                    self._watch(c, n.name), name=f"keepalived-{c.name}-{n.name}"))

    @property
    def up(self) -> int:
        return sum(1 for n in self._nodes.values() if n.error is None)

    # --- what a round takes ---------------------------------------------------------
    def view(self, c: ClusterConfig, node: str) -> KeepalivedView | None:
        if not c.keepalived_view:
            return None
        st = self._nodes.get((c.name, node))
        if st is None:
            return KeepalivedView(error="no dump yet")
        return KeepalivedView(
            instances=tuple(self._instance(t) for t in st.tracks.values()
                            if t.last is not None and t.samples),
            at=st.at, error=st.error, supported=st.supported,
            # it answered before, and its process is there but answers no more
            hung=st.at is not None and st.error is not None and NO_ANSWER in st.error,
            failing_since=st.failing_since if st.error is not None else None)

    @staticmethod
    def _instance(t: _Track) -> VrrpInstance:
        if t.instance is not None:
            return t.instance
        d = t.last
        assert d is not None and t.state_since is not None
        t.instance = VrrpInstance(
            name=d.name, vrid=d.vrid, version=d.version, state=d.state,
            wantstate=d.wantstate, base_priority=d.base_priority,
            effective_priority=d.effective_priority, advert_int=d.advert_int,
            vips=d.vips, interface=d.interface, last_transition=d.last_transition,
            samples=tuple(t.samples), state_since=t.state_since)
        return t.instance

    # --- the stream ---------------------------------------------------------------
    async def _watch(self, c: ClusterConfig, node: str) -> None:
        t = target_for(self.config, c, node)
        key = (c.name, node)
        st = self._nodes.setdefault(key, _Node(failing_since=self.clock()))
        backoff = BACKOFF_MIN
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            lines = 0
            block: list[str] | None = None
            size = 0
            uptime: float | None = None
            held: float | None = None  # the last tick the node held back before a dump
            base = False  # `@@kv-same` repeats this stream's last dump: a readable one?
            cfg = c.node(node)
            every = self.config.arbiter.keepalived_watch_every
            quiet = 0 if st.plain else quiet_ticks(every)
            command = watch_command(every,
                                    *((cfg.keepalived_pidfile, cfg.keepalived_dump)
                                      if cfg is not None else ()), quiet=quiet)
            async for line in self.runner.stream(t, command):
                if line == "":
                    continue  # the stream is running
                lines += 1
                line = line.rstrip("\n")
                if block is not None:
                    if line == END:
                        base = self._dump(c, node, st, "\n".join(block), uptime,
                                          held if base else None)
                        block = None
                        continue
                    size += len(line)
                    if size > 256 * 1024:
                        self._error(st, "keepalived dump too large: cut off")
                        break
                    block.append(line)
                elif is_dump_line(line):
                    block, size = [], 0
                    uptime, held = dump_uptimes(line)
                elif is_same_line(line):
                    if base:
                        self.same += 1
                        self._record(c, node, st, st.last_dumps,
                                     st.clock.stamp(self.clock(), dump_uptime(line, SAME)))
                    else:
                        self._error(st, "keepalived watch: `@@kv-same` repeats a dump this "
                                    "stream has not sent whole, or one that could not be read")
                elif line.startswith(ERROR):
                    why = line[len(ERROR):].strip()[:200] or "unknown"
                    self._error(st, why, supported=UNSUPPORTED not in why)
                elif not line.startswith(MARK):
                    self._error(st, f"unexpected line from the keepalived watch: "
                                f"{line[:80]!r}")
            st.refused = st.refused + 1 if lines == 0 else 0
            if lines == 0 and quiet:
                log.info("keepalived view: %s/%s: the watch with quiet ticks ended at once; "
                         "asking for every tick (an arbiter-ssh-wrapper older than this "
                         "arbiter refuses quiet ticks: upgrade it)", c.name, node)
            # one stream in every form a refused quiet one is retried in: a node's wrapper
            # may be upgraded, and a lost connection says nothing about the form
            st.plain = lines == 0 and not st.plain
            if lines == 0:
                self._error(st, "the keepalived watch ended at once (refused? an "
                            "arbiter-ssh-wrapper older than this arbiter?)",
                            supported=st.refused < 3)
            elif st.error is None:
                self._error(st, "the keepalived watch ended; reconnecting")
            if loop.time() - started > STABLE_AFTER:
                backoff = BACKOFF_MIN
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)

    def _error(self, st: _Node, why: str, supported: bool = True) -> None:
        if why != st.error:
            log.info("keepalived view: %s", why)
        if st.error is None or st.failing_since is None:
            st.failing_since = self.clock()
        st.error, st.supported = why, supported

    def _dump(self, c: ClusterConfig, node: str, st: _Node, text: str,
              uptime: float | None = None, held: float | None = None) -> bool:
        """A whole dump: parsed (unless the same text as the last), then recorded.
        Whether it could be read. ``held``: the node's uptime at the last tick it held
        back (quiet ticks), which showed the stream's previous dump."""
        now = st.clock.stamp(self.clock(), uptime)
        if held is not None and uptime is not None:
            self._held(st, now - timedelta(seconds=uptime - held))
        if text == st.last_text:
            # between two adverts the dump is the same text: the same instances, a new
            # sample time (at advert_int 1 and a dump every 0.25 s, 3 dumps in 4; issue
            # 32: parsing every one strictly was most of the view's cost)
            dumps = st.last_dumps
        else:
            try:
                dumps = parse_dump(text)
            except DumpError as exc:
                self._error(st, str(exc))
                return False
            self.parsed += 1
            st.last_text, st.last_dumps = text, dumps
        self._record(c, node, st, dumps, now)
        return True

    def _held(self, st: _Node, at: datetime) -> None:
        """A sample of the previous dump at the last tick the node held back: the
        counters just before a change, as the tick would have shown them. Nothing
        else changes (the dump was the same), so nothing wakes."""
        for tr in st.tracks.values():
            d = tr.last
            if d is None or not tr.samples or at <= tr.samples[-1].at:
                continue
            tr.samples.append(VrrpSample(at, d.state, d.advert_rcvd, d.advert_sent,
                                         d.pri_zero_sent, d.pri_zero_rcvd))
            tr.instance = None
        self.held += 1

    def _record(self, c: ClusterConfig, node: str, st: _Node,
                dumps: tuple[InstanceDump, ...], now: datetime) -> None:
        """One sample of each instance at ``now``; wake the round if it changes what
        the policy decides."""
        self.dumps += 1
        changed = st.error is not None
        st.error, st.supported, st.at, st.failing_since = None, True, now, None
        seen = set()
        for d in dumps:
            seen.add(d.name)
            tr = st.tracks.setdefault(d.name, _Track())
            if tr.last is None or tr.last.state != d.state or tr.last.wantstate != d.wantstate:
                tr.state_since = now
                changed = True
            tr.last, tr.instance = d, None
            tr.samples.append(VrrpSample(now, d.state, d.advert_rcvd, d.advert_sent,
                                         d.pri_zero_sent, d.pri_zero_rcvd))
            while tr.samples and now - tr.samples[0].at > HISTORY:
                tr.samples.popleft()
        for gone in set(st.tracks) - seen:
            del st.tracks[gone]
            changed = True
        if self._missed_changed(c, node):
            changed = True
        if changed:
            self.wake()

    def _missed_changed(self, c: ClusterConfig, dumped: str) -> bool:
        """Whether any backup's missed adverts crossed the deny threshold, either way.
        Only pairs that ``dumped`` is part of can have changed (``missed`` reads the
        backup's samples and its master's), so only those are counted again."""
        instances: dict[str, tuple[VrrpInstance, ...]] = {}
        for n in c.nodes:
            st = self._nodes.get((c.name, n.name))
            if st is not None:
                instances[n.name] = tuple(self._instance(tr) for tr in st.tracks.values()
                                          if tr.last is not None and tr.samples)
        masters = {(i.vrid, i.family): (name, i) for name, insts in instances.items()
                   for i in insts if i.state == "MASTER"}
        crossed = False
        for name, insts in instances.items():
            st = self._nodes[(c.name, name)]
            for inst in insts:
                key = f"{inst.vrid}/{inst.family}"
                m = masters.get((inst.vrid, inst.family))
                was, was_by = st.missed.get(key, (0, None))
                by = m[0] if m is not None else None
                if dumped not in (name, by, was_by):
                    continue  # neither end of this pair sent anything new
                now_missed = missed(inst, m[1]) if m is not None and by != name else 0
                if (now_missed >= MISSED_TO_DENY) != (was >= MISSED_TO_DENY) or \
                        (now_missed == 0) != (was == 0):
                    crossed = True
                st.missed[key] = (now_missed, by)
        return crossed
