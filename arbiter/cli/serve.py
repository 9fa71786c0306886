"""`arbiter serve`: build the service, start its housekeeping jobs (APScheduler),
serve the API, and shut everything down in order."""

from __future__ import annotations

import logging
import socket
import sys
from datetime import UTC, timedelta
from pathlib import Path

from arbiter import config as config_mod
from arbiter.cli.adapters import pinger_for, pool_for
from arbiter.cli.exits import EXIT_OK
from arbiter.config import Config

log = logging.getLogger("arbiter")


SWITCH_INTERVAL = 0.001  # seconds; see serve


def build_arbiter(cfg: Config):  # type: ignore[no-untyped-def]
    """The service over the real adapters: ICMP, the SSH pool and the database."""
    from arbiter.round.service import Arbiter
    from arbiter.store.engine import make_engine

    return Arbiter(cfg, make_engine(cfg.arbiter.database), pinger_for(cfg), pool_for(cfg))


def prepare_database(url: str, auto: bool) -> str:
    from arbiter.store import migrate
    from arbiter.store.engine import make_engine

    engine = make_engine(url)
    try:
        cur, head = migrate.current_revision(engine), migrate.head_revision()
        if cur == head:
            return cur or "base"
        if auto:
            return migrate.upgrade(engine)
        raise RuntimeError(
            f"database schema is at {cur or 'empty'}, the code needs {head}: "
            "run `arbiter db upgrade -c FILE` first"
        )
    finally:
        engine.dispose()


async def serve(cfg: Config, path: str | None = None) -> int:
    """``path``: the config file, read again on SIGHUP and POST /reload."""
    import uvicorn
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    from arbiter.api.app import create_app, with_fast_verdict

    host, port = config_mod.parse_listen(cfg.arbiter.listen)
    # Bind first: with the port taken, stop here, before a word about serving and
    # before a single SSH connection to the directors.
    try:
        sock = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host
                                    else socket.AF_INET, reuse_port=False)
    except OSError as exc:
        raise RuntimeError(f"cannot listen on {cfg.arbiter.listen}: {exc.strerror}") from None
    from arbiter.round.views.arp_view import preflight

    if problems := preflight(cfg):  # the ARP view needs CAP_NET_RAW: say so, and stop
        raise config_mod.ConfigError(problems, "(the ARP view)")
    arb = build_arbiter(cfg)
    await arb.peers.start()  # [ha]: lead (or follow) from the first round on
    await arb.restore()
    # The event loop answers the gates' /verdict while worker threads build incident
    # pages and /status. Each time the loop wakes it must take the GIL back from a
    # busy thread, which yields it once per switch interval: 5 ms by default, and
    # /verdict's tail under mixed load (BENCHMARKS.md, section 4).
    sys.setswitchinterval(SWITCH_INTERVAL)
    app = create_app(arb, run_loop=True, config_path=path)
    if path is not None:  # systemctl reload (ExecReload=kill -HUP): the same as POST /reload
        import asyncio
        import signal

        asyncio.get_running_loop().add_signal_handler(
            signal.SIGHUP, lambda: asyncio.ensure_future(arb.reload_from(path, "SIGHUP")))

    # Housekeeping off the round path (APScheduler): a one-line summary for the journal,
    # the retention of keepalived events, and the watch on exclusive clusters' gates.
    sched = AsyncIOScheduler(timezone=UTC)
    sched.add_job(lambda: _summary(arb), "interval", seconds=60, id="summary",
                  max_instances=1, coalesce=True)
    sched.add_job(_prune_events, "interval", args=[arb], minutes=10, id="retention",
                  max_instances=1, coalesce=True)
    # exclusive verdicts without a wired gate protect nothing: say so in the journal
    sched.add_job(lambda: arb.gates.log_changes(arb.config), "interval", seconds=5,
                  id="gate-watch", max_instances=1, coalesce=True)
    arb.peers.schedule(sched)  # [ha]: the lease renewals
    if any(c.track_files for c in cfg.clusters):  # a deny that stands, written again
        from arbiter.round.acts.track_files import REFRESH

        sched.add_job(arb.track.refresh, "interval", seconds=REFRESH, id="track-refresh",
                      max_instances=1, coalesce=True, misfire_grace_time=None)
    if arb.sender is not None:  # [notify]: deliver every send_every, prune daily
        sender = arb.sender
        sched.add_job(sender.run_once, "interval", seconds=sender.section.send_every,
                      id="notify-send", max_instances=1, coalesce=True, misfire_grace_time=None)
        sched.add_job(sender.prune, "interval", hours=6, id="notify-retention",
                      max_instances=1, coalesce=True)
        await sender.refresh()  # pending rows from before a restart show at once
    sched.start()
    tls = {}
    if cfg.api.tls_certfile:
        tls = {"ssl_certfile": cfg.api.tls_certfile, "ssl_keyfile": cfg.api.tls_keyfile}
    server = uvicorn.Server(uvicorn.Config(with_fast_verdict(app), log_level="warning",
                                           access_log=False, lifespan="on", **tls))
    runtime = publish_runtime(cfg, path)
    # uvicorn shuts down gracefully on SIGTERM, then restores the handler it found and
    # raises the signal again: with the default one the process died right there, and
    # nothing below ran (the last fence awaited, the runtime file removed). Found by
    # issue 30's reload test; a handler of ours that does nothing lets it finish.
    import signal as _signal

    _signal.signal(_signal.SIGTERM, lambda *_: None)
    log.info("arbiter serving on %s://%s:%d (interval %.2fs, confirm_rounds %d%s)",
             "https" if tls else "http", f"[{host}]" if ":" in host else host, port,
             cfg.arbiter.interval, cfg.arbiter.confirm_rounds,
             ", DRY RUN" if cfg.arbiter.dry_run else "")
    try:
        await server.serve(sockets=[sock])
    finally:
        sched.shutdown(wait=False)
        await arb.close()  # the last fence, then ([ha]) the leases handed back
        if runtime is not None:
            runtime.unlink(missing_ok=True)
    return EXIT_OK


RUNTIME_FILE = "serve.json"


def publish_runtime(cfg: Config, path: str | None) -> Path | None:
    """Where this service runs, for `arbiter reload` (issue 30): its pid, the address
    it actually listens on and its config file, in ``$RUNTIME_DIRECTORY`` (systemd's
    ``RuntimeDirectory=keepalived-arbiter``: /run/keepalived-arbiter). After an edit
    of ``listen`` or a rotated token, the file on disk no longer says how to reach the
    running service; this does."""
    import json
    import os

    where = os.environ.get("RUNTIME_DIRECTORY")
    if not where:
        return None
    out = Path(where.split(":")[0]) / RUNTIME_FILE
    try:
        out.write_text(json.dumps({"pid": os.getpid(), "url": cfg.api_url,
                                   "config": str(Path(path).resolve()) if path else None}))
    except OSError as exc:
        log.warning("cannot write %s: %s (arbiter reload falls back to the config's "
                    "listen address)", out, exc.strerror)
        return None
    return out


EVENTS_KEPT_PER_NODE = 1000
EVENTS_KEPT_DAYS = 30


async def _prune_events(arb) -> None:  # type: ignore[no-untyped-def]
    """Bound node_events: the newest rows per node, and none older than the limit."""
    from datetime import datetime

    from arbiter.store.engine import StoreError

    cutoff = datetime.now(UTC) - timedelta(days=EVENTS_KEPT_DAYS)
    try:
        gone = await arb.ledger.call(arb.repo.prune_node_events, EVENTS_KEPT_PER_NODE, cutoff)
    except StoreError:
        return  # db_error is set and shown; the next run tries again
    if gone:
        log.info("retention: %d old keepalived event(s) deleted", gone)


def _summary(arb) -> None:  # type: ignore[no-untyped-def]
    v = arb.view
    a = v.assessment
    splits = [c.cluster for c in a.clusters if c.split_vips] if a else []
    log.info("summary: %d rounds, last %.0fms, %d overruns, split brain in %s, db %s",
             v.stats.count, v.stats.duration_ms, v.stats.overruns, splits or "none",
             v.db_error or "ok")


def ensure_open_files(nodes: int) -> int:
    """One persistent SSH connection per node, plus sockets for ICMP, the database and
    the API: raise the soft open-files limit to what that needs (up to the hard limit),
    and say so when the hard limit is too low. Returns the soft limit in force."""
    import resource

    need = nodes + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        new = need if hard == resource.RLIM_INFINITY else min(hard, max(need, 4096))
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
            log.info("open-files limit raised from %d to %d for %d nodes", soft, new, nodes)
            soft = new
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-files limit (%s)", exc)
    if soft != resource.RLIM_INFINITY and soft < need:
        log.warning("open-files limit %d is below the %d that %d nodes need: connections "
                    "beyond it will fail (raise LimitNOFILE / ulimit -n)", soft, need, nodes)
    return soft


def loop_factory():  # type: ignore[no-untyped-def]
    """uvloop where installed (a dependency on Linux): the API shares its loop with the
    rounds, and uvloop's shorter loop iterations helped take /verdict's p99 at 1000 req/s
    from 13 to 2 ms (bench/verdict.py). Without it, the standard loop works the same."""
    try:
        import uvloop
    except ImportError:
        log.info("uvloop not installed: using the standard asyncio event loop")
        return None
    return uvloop.new_event_loop
