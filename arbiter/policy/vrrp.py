"""keepalived's own view, judged: who hears whom, who is sending, and when a backup
must be denied before it claims. Pure: the counters come in with the arbiter's times.

A backup that hears a healthy master never claims; one that stops hearing claims
after its master-down interval (3 x advert_int + skew). So the exclusive rule denies
only a backup that has **missed adverts its master sent** (``missed``): the master
is MASTER and its advert_sent grew, the backup's advert_rcvd did not. Two missed
adverts are enough evidence (a single lost packet is not), and leave one advert
interval plus the skew to put the deny in place. A dead, stopped or unreachable
master sends nothing, so nobody is denied and the backup takes over at keepalived's
own speed.

A backup in FAULT counts no adverts (keepalived 2.2), so a denied one cannot show
that the cut has healed. Every ``PROBE_EVERY`` seconds its deny is lifted once (a
**probe**): in BACKUP it counts again, and either hears the master (allowed for
good) or misses two adverts and is denied again, before its master-down interval
ends, exactly as when the cut began.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from arbiter.config import ClusterConfig
from arbiter.model import ClusterObservation, Denial, KeepalivedView, VrrpInstance, VrrpSample

TRANSIT = timedelta(seconds=0.05)  # an advert's flight plus a dump's latency, at most
MISSED_TO_DENY = 2
PROBE_EVERY = 10.0  # seconds a deny stands before it is lifted once to test the cut
PROBE_WINDOW = 3.0  # seconds a probe waits for the backup to leave FAULT
# unchanged dumps in a row a node may leave unsent (issue 32: ``probe.keepalived``'s
# quiet ticks): never a change, never a tick its own cadence says is late, never with
# two instances or an advert interval under 1 s in the dump; so the counts below are
# the ones every tick gives (tests/unit/test_quiet_ticks.py)
QUIET_TICKS = 3
QUIET_MIN_ADVERT = 1.0  # seconds: a dump with a shorter adver_int is never held back
TICK_OVERHEAD = 1.25  # a node's tick takes its period and up to a quarter more


def quiet_ticks(watch_every: float) -> int:
    """The quiet ticks to ask a node for: as many as end, with the longest ticks, before
    a backup could have missed two adverts of ``QUIET_MIN_ADVERT`` (the deny needs
    samples from then on), at most ``QUIET_TICKS``: 3 at the default 0.25 s, 2 at
    0.5 s, none from 0.8 s."""
    fit = int(MISSED_TO_DENY * QUIET_MIN_ADVERT / (watch_every * TICK_OVERHEAD) + 1e-9) - 1
    return max(0, min(QUIET_TICKS, fit))


def master_down(advert_int: float, priority: int, version: int) -> float:
    """Seconds a backup waits without adverts before it claims (RFC 3768/5798):
    3 x advert_int + skew; the skew is (256 - priority)/256 s in VRRPv2 and that times
    advert_int in VRRPv3."""
    skew = (256 - priority) / 256
    return 3 * advert_int + (skew * advert_int if version == 3 else skew)


def detection_bound(advert_int: float, watch_every: float, push: float) -> float:
    """The latest the arbiter denies a backup after the last advert it heard: two more
    adverts missed, both streams' next dumps, the transit margins, and the push."""
    return (MISSED_TO_DENY * advert_int + 2 * watch_every
            + 2 * TRANSIT.total_seconds() + push)


def _first_at_or_after(samples: tuple[VrrpSample, ...], t: datetime) -> VrrpSample | None:
    return next((s for s in samples if s.at >= t), None)


def _last_at_or_before(samples: tuple[VrrpSample, ...], t: datetime) -> VrrpSample | None:
    return next((s for s in reversed(samples) if s.at <= t), None)


def listening_since(inst: VrrpInstance) -> datetime:
    """Since when the instance counts adverts: its first dump after the last one in
    FAULT or INIT (keepalived 2.2 counts nothing there), or its first dump."""
    since = inst.samples[0].at
    for prev, cur in zip(inst.samples, inst.samples[1:], strict=False):
        if prev.state in ("FAULT", "INIT"):
            since = cur.at
    return since


def missed(backup: VrrpInstance, master: VrrpInstance) -> int:
    """Adverts the master sent that the backup has not received: sent after the backup
    last heard one (or began to listen), and long enough before the backup's latest
    dump to have arrived. Counted conservatively on both ends, so sampling skew
    between the two streams can only make it smaller."""
    since = max(backup.heard_at, listening_since(backup)) + TRANSIT
    until = backup.latest.at - TRANSIT
    base = _first_at_or_after(master.samples, since)
    top = _last_at_or_before(master.samples, until)
    if base is None or top is None or top.at < base.at:
        return 0
    return max(0, top.advert_sent - base.advert_sent)


def sending(master: VrrpInstance) -> bool:
    """MASTER, staying MASTER, and its advert_sent grew within 1.5 advert intervals
    of its latest dump: a master that stopped (priority 0 sent) or froze is not."""
    if master.state != "MASTER" or master.wantstate != "MASTER":
        return False
    window = timedelta(seconds=1.5 * master.advert_int) + TRANSIT
    cur = master.latest
    old = _last_at_or_before(master.samples, cur.at - window)
    if old is None:
        return False
    return cur.advert_sent > old.advert_sent and cur.pri_zero_sent == old.pri_zero_sent


def stale_limit(watch_every: float) -> float:
    """A view older than this is stale: a few missed dumps, never less than 1 s, on top
    of the ticks a healthy node leaves unsent (1.75 s at the default 0.25 s)."""
    return max(1.0, 4 * watch_every) + quiet_ticks(watch_every) * watch_every


def fresh(view: KeepalivedView | None, now: datetime, stale_after: float) -> bool:
    return (view is not None and view.error is None and view.at is not None
            and (now - view.at).total_seconds() <= stale_after)


def deaf_to(listener: VrrpInstance, master: VrrpInstance) -> bool:
    """``listener`` misses the adverts of ``master``, which is MASTER and sending."""
    return sending(master) and missed(listener, master) >= MISSED_TO_DENY


def split_seen(a: VrrpInstance, b: VrrpInstance) -> bool:
    """Two holders of a VIP, one of which claimed it because it stopped hearing the
    other while the other is still MASTER and sending: a split, not a handover. A
    handover never looks like this: the new master took over from one that stopped
    sending (killed, stopped with priority 0, frozen, cut off: its dumps stop), or it
    preempted one it hears."""
    return deaf_to(a, b) or deaf_to(b, a)


GATE_PUSH = 1.0  # without track files a deny reaches keepalived at the gate's next run
TRACK_PUSH = 0.1  # a track file: one SSH command, then inotify (measured ~20 ms)


def budget_warnings(cluster: ClusterConfig, index: int, obs: ClusterObservation,
                    watch_every: float) -> list[str]:
    """Exclusive clusters: each instance whose backup would claim before the arbiter
    can deny it (``master_down`` of its own advert_int and priority against
    ``detection_bound``), naming the fields that would fix it."""
    if cluster.verdict != "exclusive" or not cluster.keepalived_view:
        return []
    push = TRACK_PUSH if cluster.track_files else GATE_PUSH
    out: list[str] = []
    for o in obs.nodes:
        kv = o.keepalived
        for inst in kv.instances if kv is not None else ():
            if not set(inst.vips) & set(cluster.vips):
                continue
            limit = master_down(inst.advert_int, inst.base_priority, inst.version)
            need = detection_bound(inst.advert_int, watch_every, push)
            if need >= limit:
                fix = (f"lower arbiter.keepalived_watch_every ({watch_every:g}s)"
                       + ("" if cluster.track_files
                          else f", set clusters[{index}].track_files = true")
                       + ", or raise its advert_int")
                out.append(f"{o.node}/{inst.name}: with advert_int {inst.advert_int:g}s and "
                           f"priority {inst.base_priority} it claims {limit:.2f}s after the "
                           f"last advert it heard, and a deny may take {need:.2f}s: {fix}")
    return out


def split_by_view(cluster: ClusterConfig, obs: ClusterObservation,
                  split_vips: tuple[str, ...], holders: dict[str, tuple[str, ...]],
                  now: datetime, watch_every: float) -> str | None:
    """Why keepalived's own view proves every split VIP is held by masters that cannot
    hear each other (``split_seen`` for each pair of its holders), or None."""
    limit = stale_limit(watch_every)
    why = []
    for vip in split_vips:
        insts = []
        for name in holders[vip]:
            o = obs.node(name)
            kv = o.keepalived if o is not None else None
            inst = kv.holding(vip) if kv is not None and fresh(kv, now, limit) else None
            if inst is None:
                return None
            insts.append((name, inst))
        for i, (a_name, a) in enumerate(insts):
            for b_name, b in insts[i + 1:]:
                if a.vrid != b.vrid or a.family != b.family or not split_seen(a, b):
                    return None
                deaf, master = (a_name, b_name) if deaf_to(a, b) else (b_name, a_name)
                why.append(f"{deaf} missed {max(missed(a, b), missed(b, a))} adverts of "
                           f"{master}, which is MASTER of {a.name} and sending")
    return "; ".join(why) if why else None


@dataclass(frozen=True, slots=True)
class Ruling:
    deny: bool
    reason: str
    denial: Denial | None  # what to remember for the next round (None: nothing)


def deaf_rule(node: str, holder: str, vip: str, mine: VrrpInstance | None,
              master: VrrpInstance | None, denial: Denial | None,
              now: datetime) -> Ruling:
    """Deny ``node`` for ``vip`` only while it misses the adverts of ``holder``, a
    healthy MASTER that is sending. Every branch names why."""
    if master is None or master.state != "MASTER":
        state = master.state if master else "not in keepalived's dump"
        return Ruling(False, f"{holder}'s instance for {vip} is {state}: failover allowed",
                      None)
    tag = f"{master.name} (vrid {master.vrid})"
    if mine is None:
        return Ruling(False, f"no instance of vrid {master.vrid} (IPv{master.family}) here: "
                      "nothing to gate", None)
    if not sending(master):
        return Ruling(False, f"{holder} is not sending adverts on {tag}: failover allowed",
                      None)
    n = missed(mine, master)
    if denial is None:
        if mine.state == "BACKUP" and n >= MISSED_TO_DENY:
            limit = master_down(mine.advert_int, mine.base_priority, mine.version)
            return Ruling(True, (f"deny: missed {n} adverts {holder} sent on {tag}; {holder} "
                                 f"is healthy and MASTER (it would claim {limit:.2f}s after "
                                 "the last advert it heard)"),
                          Denial(node, master.vrid, now, family=master.family))
        hears = "hears" if mine.state == "BACKUP" else f"is {mine.state}, not denied"
        return Ruling(False, f"{hears} {holder} on {tag}", None)
    if mine.state == "BACKUP" and mine.heard_at > denial.since and n == 0:
        return Ruling(False, f"hears {holder} again on {tag}: allowed", None)
    if denial.probe_at is not None:
        if mine.state == "BACKUP" and mine.state_since > denial.probe_at:
            if mine.heard_at > denial.probe_at:
                return Ruling(False, f"probe: hears {holder} again on {tag}: allowed", None)
            if n >= MISSED_TO_DENY:
                return Ruling(True, f"deny: probe missed {n} adverts of {holder} on {tag}: "
                              "the cut is still there",
                              Denial(node, denial.vrid, denial.since, None, now, denial.family))
            return Ruling(False, f"probe: listening for {holder}'s adverts on {tag}",
                          denial)
        if (now - denial.probe_at).total_seconds() > PROBE_WINDOW:
            return Ruling(True, f"deny: the probe did not take it out of {mine.state}",
                          Denial(node, denial.vrid, denial.since, None, now, denial.family))
        return Ruling(False, f"probe: deny lifted once to test whether it hears {holder}",
                      denial)
    last = max(denial.since, denial.probed or denial.since)
    if (now - last).total_seconds() >= PROBE_EVERY:
        return Ruling(False, f"probe: deny lifted once to test whether it hears {holder}",
                      Denial(node, denial.vrid, denial.since, now, denial.probed, denial.family))
    held = (now - denial.since).total_seconds()
    return Ruling(True, (f"deny: missed adverts {holder} sends on {tag} ({held:.0f}s); "
                         f"{holder} is healthy and MASTER"), denial)
