"""A new config, swapped in between rounds (SIGHUP, `systemctl reload`, `arbiter
reload`, POST /reload): read and validated off the loop, checked against what is
running, then applied by the next round under the round lock, like every intent.

What a reload may not change is refused with a message naming the field, never
half-applied: the listen address, the database, the TLS files and read protection
(the API is built on them), the SSH keys and the known_hosts path, ICMP sockets,
``[ha]`` and ``[notify]`` (their connections and leases are built once), and the log
format. The known_hosts file itself is read again at every reload, so a director
added live can have its key added with it.
A cluster or node that still has an open incident or a held node cannot be removed:
releasing it first keeps the promise that no hold is ever lost.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from arbiter.config import Config
from arbiter.model import History
from arbiter.probe.ssh import Target
from arbiter.round.intents import answer_later
from arbiter.round.views.arp_view import preflight as arp_preflight
from arbiter.round.views.targets import target_for

# (what to compare, the field named in a refusal)
log = logging.getLogger("arbiter.service")

RESTART_ONLY: tuple[tuple[str, str], ...] = (
    ("arbiter.listen", "arbiter.listen"),
    ("arbiter.database", "arbiter.database"),
    ("arbiter.icmp_privileged", "arbiter.icmp_privileged"),
    ("arbiter.log_format", "arbiter.log_format"),
    ("api.tls_certfile", "api.tls_certfile"),
    ("api.tls_keyfile", "api.tls_keyfile"),
    ("api.protect_reads", "api.protect_reads"),
    ("ssh.client_keys", "ssh.client_keys"),
    ("ssh.known_hosts", "ssh.known_hosts"),
    ("ssh.connect_timeout", "ssh.connect_timeout"),
    ("ssh.keepalive_interval", "ssh.keepalive_interval"),
    ("ha", "[ha]"),
    ("notify", "[notify]"),
)


def _get(cfg: Config, path: str) -> Any:
    cur: Any = cfg
    for part in path.split("."):
        cur = getattr(cur, part)
    # a section (``[ha]``, ``[notify]``) is compared by its values
    return cur.model_dump() if isinstance(cur, BaseModel) else cur


def refused(old: Config, new: Config, history: History) -> list[str]:
    """Why ``new`` cannot be swapped in while running (empty: it can)."""
    out = [f"{name}: changed; it needs a restart (systemctl restart keepalived-arbiter)"
           for path, name in RESTART_ONLY if _get(old, path) != _get(new, path)]
    if new.ha is not None and set(new.shards) != set(old.shards):
        out.append("clusters[].shard: the set of shards changed; with [ha] that needs a "
                   "restart (a lease per shard)")
    for c in old.clusters:
        h = history.cluster(c.name)
        busy = []
        if h.incident is not None:
            busy.append(f"open incident #{h.incident.id} ({h.incident.state.value})")
        if h.held:
            busy.append("holds " + ", ".join(sorted(h.held_nodes)))
        nc = new.cluster(c.name)
        if nc is None:
            if busy:
                out.append(f"clusters: {c.name} cannot be removed while it has "
                           f"{' and '.join(busy)}: release or resolve it first")
            continue
        involved = set(h.held_nodes) | (
            {h.incident.survivor or "", *h.incident.victims} if h.incident else set())
        for n in c.nodes:
            if nc.node(n.name) is None and n.name in involved:
                out.append(f"clusters[{c.name}].nodes: {n.name} cannot be removed while "
                           f"{' and '.join(busy) or 'an incident involves it'}")
    return out


def changes(old: Config, new: Config) -> list[str]:
    """What a reload changes, in words (for the log, /status and the answer)."""
    out = []
    before, after = {c.name for c in old.clusters}, {c.name for c in new.clusters}
    out += [f"cluster {c} added" for c in sorted(after - before)]
    out += [f"cluster {c} removed" for c in sorted(before - after)]
    for name in sorted(before & after):
        o, n = old.cluster(name), new.cluster(name)
        assert o is not None and n is not None
        on, nn = {x.name for x in o.nodes}, {x.name for x in n.nodes}
        out += [f"{name}: node {x} added" for x in sorted(nn - on)]
        out += [f"{name}: node {x} removed" for x in sorted(on - nn)]
        od, nd = o.model_dump(exclude={"nodes"}), n.model_dump(exclude={"nodes"})
        out += [f"{name}: {k} {od[k]!r} -> {nd[k]!r}" for k in sorted(od) if od[k] != nd[k]]
        for x in sorted(on & nn):
            a, b = o.node(x), n.node(x)
            assert a is not None and b is not None
            if a != b:
                out.append(f"{name}: node {x} changed")
    for section in ("arbiter", "api", "ssh"):
        od, nd = getattr(old, section).model_dump(), getattr(new, section).model_dump()
        out += [f"{section}.{k} {od[k]!r} -> {nd[k]!r}" for k in sorted(od)
                if od[k] != nd[k] and not (section == "api" and k == "tokens")]
    if old.api.tokens != new.api.tokens:
        out.append("api.tokens changed")
    return out or ["nothing changed"]


def targets(cfg: Config) -> set[Target]:
    return {target_for(cfg, c, n.name) for c in cfg.clusters for n in c.nodes}


def watched(cfg: Config) -> Any:
    """What the watchers (push, ARP, keepalived) are built from: restart them when it
    changes."""
    return [(c.name, c.arp_interface, c.keepalived_view, c.vips,
             [(n.name, n.address, n.port, n.username) for n in c.nodes])
            for c in cfg.clusters]


class Reloading:
    """The service's reload, kept apart from the loop: ``Arbiter`` is one of these.
    It uses the service's own units (config, history, scheduler, watchers, runner)."""

    config: Config
    history: History
    _reloads: list[ReloadIntent]
    reload_status: ReloadStatus
    _running: bool
    scheduler: Any
    push: Any
    arp: Any
    keepalived: Any
    clock: Any
    runner: Any

    def wake(self) -> None: ...
    def _publish(self) -> None: ...
    def _start_watchers(self) -> None: ...

    async def reload_from(self, path: str, by: str) -> dict[str, Any]:
        """Read and validate ``path`` off the loop, check it against what runs, then
        let the next round swap it in. A bad or refused file changes nothing; the
        answer, /status and the log say why, naming the field."""
        from arbiter import config as config_mod
        from arbiter.config import envfile

        self.reload_status.path = path
        try:
            # the unit's EnvironmentFile too: a rotated token or database password
            # in it is reloadable (issue 30)
            try:
                await asyncio.to_thread(envfile.reread)
            except envfile.EnvFileError as exc:
                raise config_mod.ConfigError([str(exc)], path) from None
            new = await asyncio.to_thread(config_mod.load, path)
            problems = refused(self.config, new, self.history)
            if not problems:
                problems = await asyncio.to_thread(arp_preflight, new)
        except config_mod.ConfigError as exc:
            problems = exc.problems
        if problems:
            return self._reloaded(by, False, [], "refused, the running config stays: "
                                  + "; ".join(problems))
        intent = ReloadIntent(new, by)
        self._reloads.append(intent)
        self.wake()
        return await intent.done

    def _reloaded(self, by: str, ok: bool, what: list[str], error: str | None) -> dict:
        st = self.reload_status
        st.at, st.by, st.ok, st.changes, st.error = self.clock(), by, ok, what, error
        if ok:
            st.loaded_at = st.at
            log.warning("config reloaded (%s): %s", by, "; ".join(what))
        else:
            log.error("config reload (%s) %s", by, error)
        self._publish()
        return {"ok": ok, "changes": what, "error": error}

    async def _apply_reloads(self) -> None:
        """Under the round lock, between rounds: swap each queued config in."""
        while self._reloads:
            intent = self._reloads.pop(0)
            problems = refused(self.config, intent.config, self.history)  # again: now
            if problems:
                intent.done.set_result(self._reloaded(
                    intent.by, False, [], "refused, the running config stays: "
                    + "; ".join(problems)))
                continue
            old, new = self.config, intent.config
            try:  # a director added with a reload has its key added to the file too
                self.runner.trust(new.ssh.known_hosts)
            except ValueError as exc:
                intent.done.set_result(self._reloaded(
                    intent.by, False, [], f"refused, the running config stays: {exc}"))
                continue
            what = changes(old, new)
            restart = self._running and watched(old) != watched(new)
            if restart:
                await self.push.stop()
                self.arp.stop()
                await self.keepalived.stop()
            self.config = new
            a = new.arbiter
            self.scheduler.reconfigure(a.interval, a.min_round_gap, new.tilt_after,
                                       a.tilt_period)
            keep = {c.name for c in new.clusters}
            self.history = History(tuple((n, h) for n, h in self.history.clusters
                                         if n in keep), self.history.isolated_incident)
            for t in targets(old) - targets(new):
                self.runner.drop(t)  # its connection closed now; a new one connects next round
            if restart:
                self._start_watchers()
            intent.done.set_result(self._reloaded(intent.by, True, what, None))



@dataclass
class ReloadIntent:
    config: Config
    by: str
    done: asyncio.Future[dict[str, Any]] = field(default_factory=answer_later)


@dataclass
class ReloadStatus:
    """The last reload, as /status shows it."""

    path: str | None = None
    loaded_at: datetime | None = None
    at: datetime | None = None
    by: str | None = None
    ok: bool | None = None
    changes: list[str] = field(default_factory=list)
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"path": self.path,
                "loaded_at": self.loaded_at.isoformat() if self.loaded_at else None,
                "last_reload": None if self.at is None else {
                    "at": self.at.isoformat(), "by": self.by, "ok": self.ok,
                    "changes": self.changes, "error": self.error}}
