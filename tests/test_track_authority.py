"""A deny is written only by a round that could act on it (issue 29), against
simulated directors over real SSH (``arbiter.sim``): ``TrackFiles`` with a real
``SshPool``, wrapped to count the writes (never replaced).

- the refresh writes a standing deny at every tick, not every other one;
- once the arbiter abstains (TILT, isolation) or its rounds stop, no refresh
  writes the deny again, so the node's TTL lifts it.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from arbiter.model import (
    ClusterObservation,
    History,
    KeepalivedView,
    SelfCheck,
    Snapshot,
    VrrpInstance,
    VrrpSample,
)
from arbiter.policy import decide
from arbiter.probe.ssh import SshPool
from arbiter.round.acts.track_files import REFRESH, TrackFiles
from arbiter.sim.keepalived import TRACK
from arbiter.sim.scenario import GATEWAY
from tests.conftest import write_config
from tests.unit.builders import node

T0 = datetime(2026, 12, 7, tzinfo=UTC)


class Counting:
    """The real pool, counting the track writes that pass through it."""

    def __init__(self, pool: SshPool):
        self.pool = pool
        self.writes: list[str] = []

    async def run(self, target, command, timeout):  # type: ignore[no-untyped-def]
        if m := TRACK.match(command):  # (file, value) of each ordered track write
            self.writes.append(f"{m.group(2)}={m.group(4)}")
        return await self.pool.run(target, command, timeout)


def snapshot(vip: str, at: datetime, tilt: str | None = None) -> Snapshot:
    """lb1 holds the VIP, healthy; lb2's keepalived has no JSON view (the fallback
    rule: a backup is denied while the holder is healthy), with its instance VI_1."""
    inst = VrrpInstance(
        name="VI_1", vrid=51, version=2, state="BACKUP", wantstate="BACKUP",
        base_priority=90, effective_priority=90, advert_int=1.0, vips=(vip,),
        interface="eth0", last_transition=0.0, samples=(VrrpSample(at, "BACKUP", 1, 0),),
        state_since=at)
    kv = KeepalivedView(instances=(inst,), error="keepalived has no JSON dump",
                        supported=False)
    nodes = (replace(node("lb1", (vip,)), observed_at=at, gateways=((GATEWAY, True),)),
             replace(node("lb2"), observed_at=at, keepalived=kv,
                     gateways=((GATEWAY, True),)))
    return Snapshot(at=at, self_check=SelfCheck(((GATEWAY, True),), tilt),
                    clusters=(ClusterObservation("web", nodes),))


async def test_a_deny_is_refreshed_every_tick_and_only_under_a_round_s_authority(
        site, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg = write_config(site, tmp_path)
    web = cfg.clusters[0].model_copy(update={"verdict": "exclusive", "track_files": True})
    cfg = cfg.model_copy(update={"clusters": [web]})
    vip = web.vips[0]
    now = [T0]
    pool = SshPool(cfg.ssh.client_keys, cfg.ssh.known_hosts, cfg.ssh.connect_timeout)
    runner = Counting(pool)
    track = TrackFiles(cfg, runner, lambda c, r, fence=False: r, lambda c: True,  # type: ignore[arg-type]
                       clock=lambda: now[0])
    try:
        snap = snapshot(vip, T0)
        a = decide.assess(cfg, snap, History(), T0)
        assert a.cluster("web").node("lb2").for_vip(vip)[0].value == "deny"
        track.after_round(snap, a, frozenset())
        await _settle(track)
        assert runner.writes == ["VI_1=1"]
        assert site.state("lb2").keepalived.track["VI_1"] == 1
        # every tick writes again: the acknowledgement came a few ms after the decision,
        # so the old rule (age of the ack >= REFRESH) skipped this tick
        for k in range(1, 3):
            now[0] = T0 + timedelta(seconds=REFRESH * k)
            await track.refresh()
            await _settle(track)
        assert len(runner.writes) == 3, runner.writes

        # TILT: the round abstains; the refresh writes nothing from then on
        now[0] += timedelta(seconds=1)
        tilted = snapshot(vip, now[0], tilt="round started 6.0s late")
        track.after_round(tilted, decide.assess(cfg, tilted, History(), now[0]),
                          frozenset())
        for _ in range(5):
            now[0] += timedelta(seconds=REFRESH)
            await track.refresh()
            await _settle(track)
        assert len(runner.writes) == 3, runner.writes

        # authority again, then the rounds stop (a crashed loop): it lapses by itself
        now[0] += timedelta(seconds=1)
        snap = snapshot(vip, now[0])
        track.after_round(snap, decide.assess(cfg, snap, History(), now[0]), frozenset())
        before = len(runner.writes)
        for _ in range(8):
            now[0] += timedelta(seconds=REFRESH)
            await track.refresh()
            await _settle(track)
        # 2 intervals + a refresh of authority at 1 s ticks: 3 writes, then none
        assert len(runner.writes) - before == 3, runner.writes[before:]

        # a commit that failed gives no authority either
        snap = snapshot(vip, now[0])
        track.after_round(snap, decide.assess(cfg, snap, History(), now[0]),
                          frozenset({"web"}))
        before = len(runner.writes)
        now[0] += timedelta(seconds=REFRESH)
        await track.refresh()
        await _settle(track)
        assert len(runner.writes) == before
    finally:
        await track.close()
        await pool.close()


async def _settle(track: TrackFiles) -> None:
    import asyncio

    for _ in range(200):
        if not track._tasks:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("track writes still running after 2 s")
