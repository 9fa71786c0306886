"""The ``arbiter`` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import socket
import sys
from datetime import UTC, timedelta
from pathlib import Path

from arbiter import config as config_mod
from arbiter.config import Config, ConfigError

log = logging.getLogger("arbiter")

EXIT_OK, EXIT_SPLIT, EXIT_ERROR = 0, 1, 2
SWITCH_INTERVAL = 0.001  # seconds; see _serve


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("asyncssh").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def _load(path: str) -> Config:
    return config_mod.load(path)


# --- wiring -------------------------------------------------------------------


def build_arbiter(cfg: Config):  # type: ignore[no-untyped-def]
    from arbiter.probe.icmp import IcmpPinger, choose_privileged
    from arbiter.probe.ssh import SshPool
    from arbiter.service import Arbiter
    from arbiter.store.repository import Repository

    privileged = choose_privileged(cfg.arbiter.icmp_privileged)
    log.info("ICMP: %s sockets", "raw (privileged)" if privileged else "unprivileged datagram")
    pool = SshPool(cfg.ssh.client_keys, cfg.ssh.known_hosts, cfg.ssh.connect_timeout,
                   cfg.ssh.keepalive_interval)
    repo = Repository.from_url(cfg.arbiter.database)
    leadership = None
    if cfg.ha is not None:
        from arbiter.ha.leadership import Leadership

        leadership = Leadership(cfg, repo.engine)
    return Arbiter(cfg, repo, IcmpPinger(privileged), pool, leadership=leadership), pool


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


async def _serve(cfg: Config) -> int:
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
    arb, pool = build_arbiter(cfg)
    if arb.leadership is not None:
        await arb.leadership.renew()  # lead (or follow) from the first round on
    await arb.restore()
    # The event loop answers the gates' /verdict while worker threads build incident
    # pages and /status. Each time the loop wakes it must take the GIL back from a
    # busy thread, which yields it once per switch interval: 5 ms by default, and
    # /verdict's tail under mixed load (BENCHMARKS.md, section 4).
    sys.setswitchinterval(SWITCH_INTERVAL)
    app = create_app(arb, run_loop=True)

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
    if arb.leadership is not None and cfg.ha is not None:
        # each renewal bounded well under the TTL (Leadership.renew); a late one is
        # skipped, not queued behind the one still running
        sched.add_job(arb.leadership.renew, "interval", seconds=cfg.ha.renew_every,
                      id="lease", max_instances=1, coalesce=True, misfire_grace_time=None)
    sched.start()
    tls = {}
    if cfg.api.tls_certfile:
        tls = {"ssl_certfile": cfg.api.tls_certfile, "ssl_keyfile": cfg.api.tls_keyfile}
    server = uvicorn.Server(uvicorn.Config(with_fast_verdict(app), log_level="warning",
                                           access_log=False, lifespan="on", **tls))
    log.info("arbiter serving on %s://%s:%d (interval %.2fs, confirm_rounds %d%s)",
             "https" if tls else "http", host, port,
             cfg.arbiter.interval, cfg.arbiter.confirm_rounds,
             ", DRY RUN" if cfg.arbiter.dry_run else "")
    try:
        await server.serve(sockets=[sock])
    finally:
        sched.shutdown(wait=False)
        await arb.close()
        if arb.leadership is not None:
            await arb.leadership.resign()  # after the last fence: a follower takes over now
            arb.leadership.close()
    return EXIT_OK


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


def cmd_serve(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    _setup_logging(args.log_level)
    url = cfg.arbiter.database
    # An embedded SQLite is ours to upgrade; a shared server database is upgraded explicitly.
    rev = prepare_database(url, auto=url.startswith("sqlite") or args.upgrade)
    log.info("database schema at revision %s", rev)
    ensure_open_files(sum(len(c.nodes) for c in cfg.clusters))
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(_serve(cfg))


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


def _loop_factory():  # type: ignore[no-untyped-def]
    """uvloop where installed (a dependency on Linux): the API shares its loop with the
    rounds, and uvloop's shorter loop iterations helped take /verdict's p99 at 1000 req/s
    from 13 to 2 ms (bench/verdict.py). Without it, the standard loop works the same."""
    try:
        import uvloop
    except ImportError:
        log.info("uvloop not installed: using the standard asyncio event loop")
        return None
    return uvloop.new_event_loop


def cmd_check(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    _setup_logging(args.log_level)
    from arbiter.check import run_check

    return asyncio.run(run_check(cfg))


# --- config, db, incidents ---------------------------------------------------------


def cmd_config_validate(args: argparse.Namespace) -> int:
    cfg = _load(args.file)
    nodes = sum(len(c.nodes) for c in cfg.clusters)
    print(f"{args.file}: OK ({len(cfg.clusters)} cluster(s), {nodes} node(s); "
          f"stale_after {cfg.stale_after:g}s, tilt_after {cfg.tilt_after:g}s)")
    return EXIT_OK


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    _setup_logging(args.log_level)
    rev = prepare_database(cfg.arbiter.database, auto=True)
    print(f"database at revision {rev}")
    return EXIT_OK


def cmd_incidents(args: argparse.Namespace) -> int:
    from arbiter.store.repository import Repository

    cfg = _load(args.config)
    repo = Repository.from_url(cfg.arbiter.database)
    items, _ = repo.list_incidents(cluster=args.cluster, state=args.state, limit=args.limit)
    if args.json:
        print(json.dumps(items, indent=2))
        return EXIT_OK
    if not items:
        print("no incidents")
    for i in items:
        who = f" survivor={i['survivor']} victims={','.join(i['victims'])}" if i["survivor"] else ""
        print(f"#{i['id']:<5} {i['opened_at'][:19]}  {i['kind']:<16} {i['cluster'] or '-':<10} "
              f"{i['state']:<12}{who}\n        {i['reason']}")
    return EXIT_OK


# --- sim ------------------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    from arbiter.status_cli import cmd_status as run

    return run(config_mod.load(args.config, check_files=False),
               args.watch if args.watch else None, args.json, args.count)


def cmd_release(args: argparse.Namespace) -> int:
    from arbiter.status_cli import cmd_release as run

    return run(config_mod.load(args.config, check_files=False), args.incident, args.reason,
               args.who)


def cmd_sim(args: argparse.Namespace) -> int:
    _setup_logging(args.log_level)
    return asyncio.run(_sim(args))


async def _sim(args: argparse.Namespace) -> int:
    from arbiter.sim.scenario import start_pair

    out = Path(args.out)
    site, cfg_path = await start_pair(out, args.scenario, port=args.port)
    print(f"simulated nodes up ({args.scenario}); config: {cfg_path}")
    print(f"try: arbiter check -c {cfg_path}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        if args.seconds:
            await asyncio.wait_for(stop.wait(), args.seconds)
        else:
            await stop.wait()
    except TimeoutError:
        pass
    finally:
        await site.close()
    return EXIT_OK


# --- entry point ------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    from importlib.metadata import PackageNotFoundError, version

    try:
        ver = version("keepalived-arbiter")
    except PackageNotFoundError:  # run from a source tree
        ver = "unknown"
    p = argparse.ArgumentParser(prog="arbiter", description="keepalived split-brain arbiter")
    p.add_argument("--version", action="version", version=f"%(prog)s {ver}")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                   help="log verbosity (default info)")
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("serve", help="run rounds and the HTTP API")
    s.add_argument("-c", "--config", required=True)
    s.add_argument("--upgrade", action="store_true",
                   help="also upgrade a non-SQLite database schema before serving")
    s.set_defaults(func=cmd_serve)

    s = sub.add_parser("check", help="one round, a readable table; exit 0 ok, 1 split, 2 error")
    s.add_argument("-c", "--config", required=True)
    s.set_defaults(func=cmd_check)

    s = sub.add_parser("config", help="config tools")
    csub = s.add_subparsers(dest="config_cmd", required=True)
    v = csub.add_parser("validate", help="validate a config file")
    v.add_argument("file")
    v.set_defaults(func=cmd_config_validate)

    s = sub.add_parser("db", help="database tools")
    dsub = s.add_subparsers(dest="db_cmd", required=True)
    u = dsub.add_parser("upgrade", help="apply Alembic migrations")
    u.add_argument("-c", "--config", required=True)
    u.set_defaults(func=cmd_db_upgrade)

    s = sub.add_parser("incidents", help="list recent incidents")
    s.add_argument("-c", "--config", required=True)
    s.add_argument("--limit", type=int, default=20)
    s.add_argument("--cluster")
    s.add_argument("--state")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_incidents)

    s = sub.add_parser(
        "status", help="the running arbiter's state, a table per cluster; exit 0 fine, "
        "1 something needs an operator (needs-operator, held, degraded, abstaining), "
        "2 the arbiter cannot be asked")
    s.add_argument("-c", "--config", required=True, help="the arbiter's config (for its "
                   "address and an operator token)")
    s.add_argument("--watch", type=float, nargs="?", const=2.0, default=0,
                   help="redraw every N seconds (default 2) until interrupted")
    s.add_argument("--count", type=int, default=0, help="with --watch: stop after N draws")
    s.add_argument("--json", action="store_true", help="print /status as JSON instead")
    s.set_defaults(func=cmd_status)

    s = sub.add_parser(
        "release", help="release the nodes an incident holds (recover_command runs where "
        "keepalived was stopped); exit 0 done, 1 nothing held or unknown incident, 2 error")
    s.add_argument("incident", type=int, help="incident id (GET /incidents?state=held)")
    s.add_argument("--reason", required=True, help="why: kept in the incident's timeline")
    s.add_argument("-c", "--config", required=True)
    s.add_argument("--as", dest="who", help="the operator (a name in [api] tokens) when "
                   "there are several")
    s.set_defaults(func=cmd_release)

    s = sub.add_parser("sim", help="run simulated SSH directors on 127.0.0.x for trying things")
    s.add_argument("-o", "--out", required=True, help="directory for keys, known_hosts, config")
    s.add_argument("--scenario", default="split", choices=["healthy", "split", "dual-master"])
    s.add_argument("--port", type=int, default=2222)
    s.add_argument("--seconds", type=float, default=0, help="stop after this long (0: never)")
    s.set_defaults(func=cmd_sim)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_OK
    except Exception as exc:  # noqa: BLE001 - a clear message beats a traceback for operators
        log.debug("fatal", exc_info=True)
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

