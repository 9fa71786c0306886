"""The other arbiters, as the loop sees them: none (``Alone``), or several (``Peers``).

Everything ``[ha]`` changes in the service goes through one of these two, so the
loop has no ``if ha`` branches:

- which clusters this arbiter leads, and under which term (``leads``, ``term_of``);
  the ledger records, and the fencer acts, only on those;
- the views handed in and taken back each round (``exchange``), which the policy
  judges a fence by (a ``Quorum``); the same views tell whether this arbiter can act
  in each shard at all (``policy.quorum.out_of_sight``): one that reads none of a
  shard's directors while another does stands aside, after two rounds of it;
- following: the memory of a cluster another arbiter leads is read back from the
  store each round, and once more in the round it is taken over, when the new
  leader also announces its term to every node (``follow``);
- the lease renewals (an APScheduler job) and the hand-over at a graceful stop.

``Alone`` leads every cluster under no term and needs nobody's view: each of its
answers is what the service did before ``[ha]`` existed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from arbiter.config import ClusterConfig, Config
from arbiter.ha.leadership import Leadership
from arbiter.model import Snapshot
from arbiter.policy.quorum import Quorum, out_of_sight
from arbiter.probe.ssh import Runner
from arbiter.probe.term_runner import TermRunner
from arbiter.round.memory.current import CurrentConfig, ReadsConfig, holder
from arbiter.round.views.vantages import Vantages
from arbiter.store.engine import StoreError

log = logging.getLogger("arbiter.service")

Restore = Callable[[frozenset[str]], Awaitable[None]]
Announce = Callable[[ClusterConfig], None]
SIGHT_ROUNDS = 2  # rounds in a row out of sight (or back in it) before the lead moves


class Alone:
    """No ``[ha]``: one arbiter, which leads every cluster."""

    me: str | None = None
    guard: None = None  # the repository checks no lease

    def configure(self, config: Config) -> None:
        return None

    def leads(self, cluster: str) -> bool:
        return True

    def term_of(self, cluster: str) -> int | None:
        return None

    def runner_for(self, cluster: str, runner: Runner, fence: bool = True) -> Runner:
        return runner

    async def start(self) -> None:
        return None

    def schedule(self, sched: Any) -> None:
        return None

    async def exchange(self, snap: Snapshot) -> Quorum | None:
        return None

    async def follow(self, config: Config, restore: Restore, announce: Announce) -> None:
        return None

    def status(self) -> Mapping[str, Any] | None:
        return None

    def blind(self) -> str | None:
        return None

    def terms(self) -> dict[str, int]:
        return {}

    async def stop(self) -> None:
        return None


class Peers(ReadsConfig):
    """``[ha]``: a lease per shard (``Leadership``) and a view exchange per round
    (``Vantages``), both through the shared PostgreSQL."""

    def __init__(self, config: Config | CurrentConfig, leadership: Leadership,
                 vantages: Vantages):
        self._current = holder(config)
        assert self.config.ha is not None
        self.leadership = leadership
        self.vantages = vantages
        self.me: str | None = leadership.me
        self.guard = leadership  # every write that decides or acts checks the lease
        self._led: frozenset[str] = frozenset()  # shards led at the last follow
        # shard -> (out of sight?, rounds in a row): never moved on one round of it
        self._sight: dict[str, tuple[bool, int]] = {}

    def configure(self, config: Config) -> None:
        """After the swap (``round.current``): the lease's own settings."""
        self.leadership.reconfigure(config)

    def leads(self, cluster: str) -> bool:
        return self.leadership.leads(cluster)

    def term_of(self, cluster: str) -> int | None:
        return self.leadership.term_of(cluster)

    def runner_for(self, cluster: str, runner: Runner, fence: bool = True) -> Runner:
        """The runner of one fence, recover or track file write (``fence`` False): its
        commands carry the term of now, and stop once this arbiter no longer leads
        under it (fencing at the resource)."""
        term = self.term_of(cluster)
        return TermRunner(runner, term, lambda: self.term_of(cluster) == term, fence)

    async def start(self) -> None:
        """Renew once before the first round: lead (or follow) from it on."""
        await self.leadership.renew()

    def schedule(self, sched: Any) -> None:
        ha = self.config.ha
        assert ha is not None
        # each renewal bounded well under the TTL (Leadership.renew); a late one is
        # skipped, not queued behind the one still running
        sched.add_job(self.leadership.renew, "interval", seconds=ha.renew_every, id="lease",
                      max_instances=1, coalesce=True, misfire_grace_time=None)

    async def exchange(self, snap: Snapshot) -> Quorum | None:
        quorum = await self.vantages.exchange(snap)
        self._judge_sight(snap, quorum)
        return quorum

    def _judge_sight(self, snap: Snapshot, quorum: Quorum) -> None:
        for shard in self.config.shards:
            reads = {}
            for c in self.config.clusters:
                if c.shard == shard:
                    obs = snap.cluster(c.name)
                    reads[c.name] = obs is not None and any(n.ssh_ok for n in obs.nodes)
            why = out_of_sight(quorum, reads)
            was, streak = self._sight.get(shard, (False, 0))
            now = why is not None
            streak = streak + 1 if now == was else 1
            self._sight[shard] = (now, streak)
            if streak == SIGHT_ROUNDS:
                self.leadership.stand_aside(shard, why)

    async def follow(self, config: Config, restore: Restore, announce: Announce) -> None:
        """Read back the memory of every cluster whose shard another arbiter leads, or
        that this one has only just taken over; then announce the new term."""
        led = self.leadership.leading()
        taken = led - self._led
        stale = frozenset(c.name for c in config.clusters
                          if c.shard not in led or c.shard in taken)
        if stale:
            try:
                await restore(stale)
            except StoreError:
                return  # db_error is shown; past lease_ttl the verdicts abstain (View)
        self._led = led
        if taken:
            log.warning("[ha] took over shard(s) %s: memory read from the store",
                        ", ".join(sorted(taken)))
            for c in config.clusters:
                if c.shard in taken:
                    announce(c)

    def status(self) -> Mapping[str, Any] | None:
        return {**self.leadership.status(), "views": dict(self.vantages.members)}

    def blind(self) -> str | None:
        return self.leadership.blind()

    def terms(self) -> dict[str, int]:
        return {s: self.leadership.term_seen_in(s) for s in self.config.shards}

    async def stop(self) -> None:
        """After the last fence: hand the leases back, so a follower takes over now."""
        await self.leadership.resign()
        self.leadership.close()
