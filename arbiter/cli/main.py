"""The ``arbiter`` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from pathlib import Path

from arbiter import config as config_mod
from arbiter.cli.argv import prepare
from arbiter.cli.durations import duration_arg
from arbiter.cli.exits import EXIT_ERROR, EXIT_OK
from arbiter.config import Config, ConfigError, envfile

log = logging.getLogger("arbiter")


CONFIG_HELP = "the arbiter's TOML config (e.g. /etc/arbiter/arbiter.toml)"


class UsageError(Exception):
    """A bad option or a state the command cannot work in: one line, exit 2."""


def _setup_logging(level: str, fmt: str = "text") -> None:
    from arbiter.cli.logs import setup

    setup(level, fmt)


def _load(path: str) -> Config:
    return config_mod.load(path)


def _api_config(path: str) -> Config:
    """The config as a command that only talks to the running arbiter needs it: no
    SSH files, and a secret this shell lacks left for the command to explain if it
    needs it (a read does not)."""
    return config_mod.load(path, check_files=False, lenient_env=True)


# --- wiring -------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    from arbiter.cli.serve import ensure_open_files, loop_factory, prepare_database, serve

    cfg = _load(args.config)
    _setup_logging(args.log_level, cfg.arbiter.log_format)
    url = cfg.arbiter.database
    # An embedded SQLite is ours to upgrade; a shared server database is upgraded explicitly.
    rev = prepare_database(url, auto=url.startswith("sqlite") or args.upgrade)
    log.info("database schema at revision %s", rev)
    ensure_open_files(sum(len(c.nodes) for c in cfg.clusters))
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(serve(cfg, args.config))


def cmd_check(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    # the table is the output: log lines (on stderr) only for errors, unless asked
    _setup_logging("error" if args.log_level == "info" else args.log_level)
    from arbiter.cli.check import run_check

    return asyncio.run(run_check(cfg))


# --- config, db, incidents ---------------------------------------------------------


def cmd_config_validate(args: argparse.Namespace) -> int:
    # --env-file: read before the command (main), as for every command
    cfg = config_mod.load(args.file, check_files=not args.skip_files)
    nodes = sum(len(c.nodes) for c in cfg.clusters)
    extra = []
    if cfg.notify is not None:
        extra.append(f"notify: {', '.join(cfg.notify.channels)}")
    if cfg.ha is not None:
        extra.append(f"ha: {cfg.ha.name} of {len(cfg.ha.members)}")
    print(f"{args.file}: OK ({len(cfg.clusters)} cluster(s), {nodes} node(s); "
          f"stale_after {cfg.stale_after:g}s, tilt_after {cfg.tilt_after:g}s"
          + "".join(f"; {e}" for e in extra) + ")")
    if args.skip_files:
        print("  not checked (--skip-files): ssh.client_keys, ssh.known_hosts and the TLS "
              "files are readable; check again on the arbiter host")
    return EXIT_OK


def cmd_config_example(args: argparse.Namespace) -> int:
    from importlib import resources

    print(resources.files("arbiter.config").joinpath("data/example.toml").read_text(), end="")
    return EXIT_OK


def cmd_keys_init(args: argparse.Namespace) -> int:
    from arbiter.cli.keys import cmd_keys_init as run

    return run(_api_config(args.config), args.user, args.yes)


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from arbiter.cli.serve import prepare_database

    cfg = _load(args.config)
    _setup_logging(args.log_level)
    rev = prepare_database(cfg.arbiter.database, auto=True)
    print(f"database at revision {rev}")
    return EXIT_OK


def cmd_incidents(args: argparse.Namespace) -> int:
    from arbiter.model import IncidentKind, IncidentState
    from arbiter.store import migrate
    from arbiter.store.engine import make_engine, sqlite_file
    from arbiter.store.repository import Repository

    cfg = _load(args.config)
    # refused as the API refuses them, naming the parameter
    states = [s.value for s in IncidentState]
    if args.state is not None and args.state not in states:
        raise UsageError(f"--state: {args.state!r} is not one of {', '.join(states)}")
    if args.cluster is not None and cfg.cluster(args.cluster) is None:
        names = ", ".join(c.name for c in cfg.clusters)
        raise UsageError(f"--cluster: unknown cluster {args.cluster!r} (the config has {names})")
    kinds = [k.value for k in IncidentKind]
    if args.kind is not None and args.kind not in kinds:
        raise UsageError(f"--kind: {args.kind!r} is not one of {', '.join(kinds)}")
    url = cfg.arbiter.database
    upgrade = f"run `arbiter db upgrade -c {args.config}` first"
    if url.startswith("sqlite") and (path := sqlite_file(url)) and not path.exists():
        # reading would create an empty file, and the next answer would be "no incidents"
        raise UsageError(f"the database {path} does not exist: {upgrade}")
    engine = make_engine(url)
    try:
        if migrate.current_revision(engine) != migrate.head_revision():
            raise UsageError(f"the database schema is not at the code's revision: {upgrade}")
        items, _ = Repository(engine).list_incidents(cluster=args.cluster, state=args.state,
                                                     limit=args.limit, kind=args.kind)
    finally:
        engine.dispose()
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
    from arbiter.cli.status import cmd_status as run

    return run(_api_config(args.config),
               args.watch if args.watch else None, args.json, args.count, args.wait)


def cmd_release(args: argparse.Namespace) -> int:
    from arbiter.cli.status import cmd_release as run

    return run(_api_config(args.config), args.incident, args.reason,
               args.who)


def cmd_reload(args: argparse.Namespace) -> int:
    from arbiter.cli.operate import cmd_reload as run

    # read here first: an invalid file is named field by field, and nothing is sent
    return run(_api_config(args.config), args.config, args.who)


def cmd_pause(args: argparse.Namespace) -> int:
    from arbiter.cli.operate import cmd_pause as run

    return run(_api_config(args.config), args.cluster, args.duration,
               args.reason, args.who)


def cmd_resume(args: argparse.Namespace) -> int:
    from arbiter.cli.operate import cmd_resume as run

    return run(_api_config(args.config), args.cluster, args.who)


def cmd_notify_test(args: argparse.Namespace) -> int:
    from arbiter.cli.notify import run_test

    cfg = _api_config(args.config)
    _setup_logging(args.log_level)
    return asyncio.run(run_test(cfg))


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

    s = sub.add_parser("serve", help="run rounds and the HTTP API until SIGTERM; exit 0 on a "
                       "clean stop, 2 when it cannot start (config, database, listen "
                       "address, CAP_NET_RAW for the ARP view)")
    s.add_argument("-c", "--config", required=True, help=CONFIG_HELP)
    s.add_argument("--upgrade", action="store_true",
                   help="also upgrade a non-SQLite database schema before serving")
    s.set_defaults(func=cmd_serve)

    s = sub.add_parser("check", help="one round, printed as a table, with what would be "
                       "fenced; exit 0 all fine, 1 a split brain is seen, 2 the arbiter "
                       "cannot judge (abstaining), a node's SSH failed, or a fence agent failed")
    s.add_argument("-c", "--config", required=True, help=CONFIG_HELP)
    s.set_defaults(func=cmd_check)

    s = sub.add_parser("config", help="config tools")
    csub = s.add_subparsers(dest="config_cmd", required=True)
    v = csub.add_parser("validate", help="validate a config file; exit 0 valid, 2 not "
                        "(each problem named by its field path)")
    v.add_argument("file")
    v.add_argument("--env-file", help="read ${NAME} values from this KEY=VALUE file first "
                   "(as systemd's EnvironmentFile=), e.g. deploy/examples/arbiter.env")
    v.add_argument("--skip-files", action="store_true", help="do not check that the key, "
                   "known_hosts and TLS files are readable (validating off the arbiter host)")
    v.set_defaults(func=cmd_config_validate)
    x = csub.add_parser("example", help="print a commented starting config (every key with "
                        "its default); `arbiter config example > /etc/arbiter/arbiter.toml`")
    x.set_defaults(func=cmd_config_example)

    s = sub.add_parser("keys", help="SSH key and known_hosts for the service")
    ksub = s.add_subparsers(dest="keys_cmd", required=True)
    k = ksub.add_parser(
        "init", help="make the key in ssh.client_keys if missing (owned by the service "
        "user, mode 0600) and pin each configured director's host key in ssh.known_hosts "
        "after showing its fingerprint; exit 0 done, 1 not confirmed, 2 a director did not "
        "answer or offered a key other than the one pinned")
    k.add_argument("-c", "--config", required=True, help=CONFIG_HELP)
    k.add_argument("--user", default="arbiter", help="the service's user (default arbiter)")
    k.add_argument("--yes", action="store_true", help="pin without asking (the "
                   "fingerprints were checked out of band)")
    k.set_defaults(func=cmd_keys_init)

    s = sub.add_parser("db", help="database tools")
    dsub = s.add_subparsers(dest="db_cmd", required=True)
    u = dsub.add_parser("upgrade", help="apply Alembic migrations")
    u.add_argument("-c", "--config", required=True, help=CONFIG_HELP)
    u.set_defaults(func=cmd_db_upgrade)

    s = sub.add_parser("incidents", help="list recent incidents")
    s.add_argument("-c", "--config", required=True, help=CONFIG_HELP)
    s.add_argument("--limit", type=int, default=20, help="newest N (1-500, default 20)")
    s.add_argument("--cluster", help="only this cluster (a name from the config)")
    s.add_argument("--state", help="only this state: open, decided, fencing, fenced, "
                   "fence_failed, held, watching, resolved")
    s.add_argument("--kind", help="only this kind: split_brain, orphan_vip, "
                   "arbiter_isolated, vip_conflict, view_failing")
    s.add_argument("--json", action="store_true", help="print the rows as JSON")
    s.set_defaults(func=cmd_incidents)

    s = sub.add_parser(
        "status", help="the running arbiter's state, a table per cluster; exit 0 fine, "
        "1 something needs an operator (needs-operator, held, degraded, abstaining, "
        "or a dead notification), "
        "2 the arbiter cannot be asked")
    s.add_argument("-c", "--config", required=True, help="the arbiter's config (for its "
                   "address and an operator token)")
    s.add_argument("--watch", type=float, nargs="?", const=2.0, default=0,
                   help="redraw every N seconds (default 2) until interrupted")
    s.add_argument("--count", type=int, default=0, help="with --watch: stop after N draws")
    s.add_argument("--json", action="store_true", help="print /status as JSON instead")
    s.add_argument("--wait", type=duration_arg("--wait"), default=0.0, metavar="DURATION",
                   help="while the arbiter does not answer (just started), ask again for "
                   "up to DURATION (e.g. 30s) before giving up")
    s.set_defaults(func=cmd_status)

    s = sub.add_parser(
        "release", help="release the nodes an incident holds (recover_command runs where "
        "keepalived was stopped); exit 0 done, 1 nothing held or unknown incident, 2 error")
    s.add_argument("incident", type=int, help="incident id (GET /incidents?state=held)")
    s.add_argument("--reason", required=True, help="why: kept in the incident's timeline")
    s.add_argument("-c", "--config", required=True, help=CONFIG_HELP)
    s.add_argument("--as", dest="who", help="the operator (a name in [api] tokens) when "
                   "there are several")
    s.set_defaults(func=cmd_release)

    s = sub.add_parser(
        "reload", help="make the running arbiter read its config file again and swap it in "
        "between rounds (as SIGHUP and systemctl reload do); exit 0 reloaded, 1 refused "
        "(a field that needs a restart, a cluster with a hold removed), 2 invalid file or "
        "arbiter unreachable")
    s.add_argument("-c", "--config", required=True, help=CONFIG_HELP + "; validated here first")
    s.add_argument("--as", dest="who", help="the operator (a name in [api] tokens)")
    s.set_defaults(func=cmd_reload)

    s = sub.add_parser(
        "pause", help="maintenance: watch, record and notify, but fence nothing, until the "
        "pause ends (it always has an expiry); exit 0 paused, 2 error")
    s.add_argument("-c", "--config", required=True, help=CONFIG_HELP)
    s.add_argument("--cluster", help="only this cluster (default: every cluster)")
    s.add_argument("--for", dest="duration", required=True,
                   help="how long, with a unit: 90s, 30m, 2h, 1h30m (at most [arbiter] "
                   "max_pause)")
    s.add_argument("--reason", required=True, help="why: kept with the pause, shown in "
                   "/status and in every incident opened meanwhile")
    s.add_argument("--as", dest="who", help="the operator (a name in [api] tokens)")
    s.set_defaults(func=cmd_pause)

    s = sub.add_parser("resume", help="end a maintenance pause now; exit 0 resumed, 1 no "
                       "such pause, 2 error")
    s.add_argument("-c", "--config", required=True, help=CONFIG_HELP)
    s.add_argument("--cluster", help="the cluster's pause (default: the pause of every "
                   "cluster)")
    s.add_argument("--as", dest="who", help="the operator (a name in [api] tokens)")
    s.set_defaults(func=cmd_resume)

    s = sub.add_parser("notify", help="notification tools")
    nsub = s.add_subparsers(dest="notify_cmd", required=True)
    n = nsub.add_parser("test", help="send a test message to every [notify] channel and "
                        "report each result; exit 0 all delivered, 1 some failed, 2 no "
                        "[notify] or a bad config")
    n.add_argument("-c", "--config", required=True, help=CONFIG_HELP)
    n.set_defaults(func=cmd_notify_test)

    s = sub.add_parser("sim", help="run simulated SSH directors on 127.0.0.x for trying things")
    s.add_argument("-o", "--out", required=True, help="directory for keys, known_hosts, config")
    s.add_argument("--scenario", default="split", choices=["healthy", "split", "dual-master"],
                   help="what the two directors hold (default split: both hold the VIP)")
    s.add_argument("--port", type=int, default=2222, help="their SSH port (default 2222)")
    s.add_argument("--seconds", type=float, default=0, help="stop after this long (0: never)")
    s.set_defaults(func=cmd_sim)
    return p


def main(argv: list[str] | None = None) -> int:
    argv, env_file = prepare(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    try:
        envfile.apply(env_file)
    except envfile.EnvFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    try:
        return args.func(args)
    except (ConfigError, UsageError) as exc:
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

