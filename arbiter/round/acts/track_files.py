"""Verdicts written where keepalived reads them at once: a track file per instance.

With ``track_files = true`` on a cluster, each node's verdict for each of its VRRP
instances is written into ``track_dir/INSTANCE`` on that node over SSH: ``1`` deny,
``0`` allow. keepalived tracks the file with ``weight 0`` and watches it with
inotify, so a deny puts the instance into FAULT within milliseconds of the round
that decided it (the gate script would see it at its next run, up to a second
later, and needs ``rise`` runs to lift it).

- A change is written at once, after the round that decided it has been committed;
  a deny that stands is written again at every ``REFRESH`` tick (``refresh``, an
  APScheduler job), because the node's arbiter-gate lifts a deny older than its
  ``ARBITER_GATE_DENY_TTL`` (3 s): a dead arbiter never freezes a deny. At the
  defaults a standing deny's file is at most one tick plus one write old, so the TTL
  leaves two refreshes of margin (issue 29: the refresh compared against the last
  acknowledgement and so came every other tick, 2 s, leaving about 1 s).
- **A deny is written only by a round that could act on it** (issue 29): the last
  round of the cluster did not abstain, was committed, and (with ``[ha]``) leads it,
  and it is no older than ``AUTHORITY_ROUNDS`` intervals plus one ``REFRESH`` (3 s at
  the defaults). The refresh writes only
  under that authority; once it lapses (TILT, isolation, a failed commit, a lost
  lease, rounds that stopped), the writes stop and the nodes' TTL runs.
- Only the arbiter that leads the cluster writes, each command with its term
  ([ha]: ``Peers.runner_for``); a node refuses an older term.
- While the arbiter abstains (isolated, TILT) it writes nothing, so its denies
  expire on the nodes as if it were gone.
- A failed write is visible state (``/status``: each node's ``track``), never an
  exception; the next round or refresh tries again.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
import string
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from arbiter.clock import Clock, utcnow
from arbiter.config import ClusterConfig, Config
from arbiter.model import Snapshot, Verdict
from arbiter.policy.assessment import Assessment, NodeAssessment
from arbiter.probe.ssh import Runner
from arbiter.round.memory.current import CurrentConfig, ReadsConfig, holder
from arbiter.round.views.targets import target_for

log = logging.getLogger("arbiter.track")

REFRESH = 1.0  # seconds between writes of a deny that stands (the node lifts it after 3 s)
AUTHORITY_ROUNDS = 2.0  # intervals a round's authority lasts for the refresh


# The one rule for a track file's name, shared with arbiter-ssh-wrapper (which accepts
# exactly these characters, and no leading dot): an instance name comes from the
# node's own dump, so it is never put into a command as it came (issue 29).
_SAFE = frozenset(string.ascii_letters + string.digits + "_.-")


def track_file_name(instance: str) -> str:
    """The file for a VRRP instance: its name, with every byte outside ``A-Za-z0-9_.-``
    (``%`` included) written as ``%XX``, and a leading dot as ``%2E``: ``VI_1`` stays
    ``VI_1``, ``VI:6`` is ``VI%3A6``, ``$(reboot)`` is ``%24%28reboot%29``. One name,
    one file, both ways."""
    out = "".join(c if c in _SAFE else "".join(f"%{b:02X}" for b in c.encode())
                  for c in instance)
    return "%2E" + out[1:] if out.startswith(".") else out


# A write carries its order (``seq``: the decision's time in ms, kept rising per file),
# and the node applies it only if it is newer than the one it applied last (kept in
# ``FILE.seq``): a deny that timed out on the arbiter, or waited for the term lock,
# and lands after a newer allow is refused with exit 3 (issue 29). keepalived reads
# only FILE.
SUPERSEDED = 3
_TEMPLATE = ("f={path}; o=$(cat \"$f.seq\" 2>/dev/null); case $o in ''|*[!0-9]*) o=0;; esac; "
             "if [ \"$o\" -lt {seq} ]; then echo {seq} > \"$f.seq\" && echo {value} > \"$f\"; "
             "else echo \"superseded by $o\" >&2; exit 3; fi")


def track_command(track_dir: str, instance: str, deny: bool, seq: int) -> str:
    """The write, as one POSIX sh command (arbiter-ssh-wrapper runs its own copy of
    exactly this text)."""
    path = shlex.quote(f"{track_dir.rstrip('/')}/{track_file_name(instance)}")
    return _TEMPLATE.format(path=path, seq=int(seq), value=1 if deny else 0)


@dataclass
class Written:
    value: int | None = None  # the value the node acknowledged last
    wanted: int | None = None  # the value the policy wants now
    at: datetime | None = None  # when the last acknowledged write finished
    decided_at: datetime | None = None  # the round that changed ``wanted``
    ms: float | None = None
    error: str | None = None
    busy: bool = False
    seq: int = 0  # the order of the last write sent (ms), rising

    def as_json(self) -> dict[str, object]:
        return {"value": self.value, "wanted": self.wanted,
                "decided_at": self.decided_at.isoformat() if self.decided_at else None,
                "at": self.at.isoformat() if self.at else None,
                "ms": self.ms, "error": self.error}


Key = tuple[str, str, str]  # (cluster, node, instance)


def wanted_values(c: ClusterConfig, snap: Snapshot, ca: NodeAssessment | None,
                  node: str) -> dict[str, int]:
    """Instance -> 1 (deny) or 0 (allow) for one node: deny when the node's answer for
    any of the instance's VIPs is deny. Instances come from keepalived's view."""
    obs = snap.cluster(c.name)
    o = obs.node(node) if obs else None
    kv = o.keepalived if o else None
    if ca is None or kv is None:
        return {}
    out = {}
    for inst in kv.instances:
        vips = [v for v in inst.vips if v in c.vips]
        if not vips:
            continue
        out[inst.name] = int(any(ca.for_vip(v)[0] is Verdict.DENY for v in vips))
    return out


class TrackFiles(ReadsConfig):
    def __init__(self, config: Config | CurrentConfig, runner: Runner,
                 runner_for: Callable[..., Runner],
                 leads: Callable[[str], bool], clock: Clock = utcnow,
                 on_write: Callable[[str, bool], None] | None = None):
        self._current = holder(config)
        self.runner = runner
        self.runner_for = runner_for
        self.leads = leads
        self.clock = clock
        self.on_write = on_write  # metrics: (cluster, ok)
        self.state: dict[Key, Written] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # cluster -> when its last round that could act on a deny ran (see the docstring)
        self._authority: dict[str, datetime] = {}

    def after_round(self, snap: Snapshot, a: Assessment,
                    committed_failed: frozenset[str | None]) -> None:
        """Write every changed value now; called once the round's commit is done."""
        if a.abstaining:
            self._authority.clear()  # no refresh either: the nodes lift our denies
            return
        for c in self.config.clusters:
            if not c.track_files or c.name in committed_failed or not self.leads(c.name):
                self._authority.pop(c.name, None)
                continue
            self._authority[c.name] = snap.at
            ca = a.cluster(c.name)
            if ca is None:
                continue
            for n in c.nodes:
                for inst, value in wanted_values(c, snap, ca.node(n.name), n.name).items():
                    w = self.state.setdefault((c.name, n.name, inst), Written())
                    if w.wanted != value:
                        w.wanted, w.decided_at = value, snap.at
                    if w.value != value and not w.busy:
                        self._write(c, n.name, inst, w)

    def authority(self, cluster: str, now: datetime) -> bool:
        """Whether a round that could act on this cluster's denies ran recently enough
        for the refresh to write them again."""
        at = self._authority.get(cluster)
        limit = AUTHORITY_ROUNDS * self.config.arbiter.interval + REFRESH
        return at is not None and (now - at).total_seconds() <= limit

    async def refresh(self) -> None:
        """Write again every deny that stands, at every tick (APScheduler, every
        REFRESH seconds; a coroutine, so it runs on the loop the SSH connections live
        on), and only under a round's authority."""
        now = self.clock()
        for (cl, node, inst), w in list(self.state.items()):
            c = self.config.cluster(cl)
            if c is None or not c.track_files or not self.leads(cl) or w.busy:
                continue
            if w.wanted == 1 and self.authority(cl, now):
                self._write(c, node, inst, w)

    def _write(self, c: ClusterConfig, node: str, inst: str, w: Written) -> None:
        w.busy = True
        value = w.wanted
        assert value is not None
        w.seq = max(w.seq + 1, int(self.clock().timestamp() * 1000))
        task = asyncio.create_task(self._run(c, node, inst, w, value, w.seq),
                                   name=f"track-{c.name}-{node}-{inst}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, c: ClusterConfig, node: str, inst: str, w: Written,
                   value: int, seq: int) -> None:
        ok = False
        try:
            runner = self.runner_for(c.name, self.runner, fence=False)
            res = await runner.run(target_for(self.config, c, node),
                                   track_command(c.track_dir, inst, bool(value), seq),
                                   self.config.ssh.command_timeout)
            ok = res.ok and res.exit_status == 0
            if res.ok and res.exit_status == SUPERSEDED:
                # a newer write is applied there (ours, or another arbiter's with a
                # clock ahead): what the node holds is unknown here, so write again
                w.value = None
            w.ms = round(res.duration_ms, 1)
            if ok:
                if w.value != value:
                    log.info("[%s] track file %s/%s on %s: %s (%.0f ms)", c.name,
                             c.track_dir, inst, node, "DENY" if value else "allow",
                             res.duration_ms)
                w.value, w.at, w.error = value, self.clock(), None
            else:
                why = res.error or res.stderr.strip()[:200] or f"exit {res.exit_status}"
                if why != w.error:
                    log.error("[%s] track file %s on %s not written: %s", c.name, inst,
                              node, why)
                w.error = why
            if self.on_write is not None:
                self.on_write(c.name, ok)
        finally:
            w.busy = False
        if ok and w.wanted is not None and w.wanted != w.value:
            self._write(c, node, inst, w)  # the verdict changed while this one was out

    def statuses(self) -> dict[tuple[str, str], dict[str, dict[str, object]]]:
        """(cluster, node) -> instance -> what was written, for /status."""
        out: dict[tuple[str, str], dict[str, dict[str, object]]] = {}
        for (cl, n, inst), w in self.state.items():
            out.setdefault((cl, n), {})[inst] = w.as_json()
        return out

    async def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
