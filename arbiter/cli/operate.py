"""`arbiter reload`, `arbiter pause` and `arbiter resume`: an operator's writes to the
running arbiter, through its API (the operator token from the config)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from arbiter.cli.api_client import ApiError, call, call_url, operator_token
from arbiter.cli.durations import parse_duration
from arbiter.cli.exits import EXIT_ERROR, EXIT_OK, EXIT_OPERATOR
from arbiter.config import Config

RUNTIME = "/run/keepalived-arbiter/serve.json"  # the unit's RuntimeDirectory


def running_service(path: str) -> dict | None:
    """What the service running ``path`` published (``serve.publish_runtime``): its
    pid and the address it actually listens on; None when there is no such service."""
    f = Path(os.environ.get("ARBITER_RUNTIME_FILE", RUNTIME))
    try:
        rt = json.loads(f.read_text())
        pid = int(rt["pid"])
        os.kill(pid, 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if rt.get("config") not in (None, str(Path(path).resolve())):
        return None  # a service of another config file
    return rt


def cmd_reload(cfg: Config, path: str, who: str | None) -> int:
    """``cfg`` was read from ``path`` here first, so its errors were already shown; the
    running arbiter reads its own file again, and says what changed or why not. With
    the packaged unit this is SIGHUP to the service's pid (as `systemctl reload`), and
    the answer is read from /status at the address it runs on: an edited ``listen``
    or a rotated token cannot make the reload unreachable (issue 30)."""
    rt = running_service(path)
    if rt is not None:
        try:
            return _reload_by_signal(cfg, rt, path)
        except PermissionError:
            pass  # another user's service: ask it over the API instead
    base = cfg.api_url if rt is None else rt["url"]
    try:
        res = call_url(base, "POST", "/reload", {}, operator_token(cfg, who), timeout=40.0)
    except ApiError as exc:
        print(f"error: {exc}")
        return EXIT_OPERATOR if exc.status == 409 else EXIT_ERROR
    if res.get("queued"):
        print(f"{path}: validated; the next round swaps it in")
        return EXIT_OK
    return _reloaded(f"{path}: reloaded", res.get("changes", []))


def _reloaded(head: str, changes: list[str]) -> int:
    print(head)
    for c in changes:
        print(f"  {c}")
    return EXIT_OK


def _reload_by_signal(cfg: Config, rt: dict, path: str) -> int:
    url = rt["url"]

    def last() -> dict:
        st = call_url(url, "GET", "/status", token=None)
        return ((st.get("arbiter") or {}).get("config") or {}).get("last_reload") or {}

    try:
        before = last().get("at")
    except ApiError as exc:
        print(f"error: {exc}")
        return EXIT_ERROR
    os.kill(int(rt["pid"]), signal.SIGHUP)
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        time.sleep(0.2)
        try:
            got = last()
        except ApiError:
            continue
        if got.get("at") and got.get("at") != before:
            if not got.get("ok"):
                print(f"error: {path}: {got.get('error')}")
                return EXIT_OPERATOR  # refused by the running arbiter, as over the API
            return _reloaded(f"{path}: reloaded (SIGHUP to pid {rt['pid']}, serving on "
                             f"{url})", got.get("changes", []))
    print(f"error: sent SIGHUP to pid {rt['pid']}, but {url}/status shows no reload "
          "after 40 s (see the journal: journalctl -u keepalived-arbiter)")
    return EXIT_ERROR


def cmd_pause(cfg: Config, cluster: str | None, duration: str, reason: str,
              who: str | None) -> int:
    try:
        seconds = parse_duration(duration)
    except ValueError as exc:
        print(f"error: {exc}")
        return EXIT_ERROR
    body = {"cluster": cluster, "seconds": seconds, "reason": reason}
    try:
        res = call(cfg, "POST", "/pause", body, operator_token(cfg, who), timeout=40.0)
    except ApiError as exc:
        print(f"error: {exc}")
        return EXIT_ERROR
    print(f"paused {res['scope']} until {res['until']} by {res['by']}: nothing is fenced "
          "there meanwhile (it is still watched, recorded and notified)")
    return EXIT_OK


def cmd_resume(cfg: Config, cluster: str | None, who: str | None) -> int:
    try:
        res = call(cfg, "POST", "/resume", {"cluster": cluster}, operator_token(cfg, who),
                   timeout=40.0)
    except ApiError as exc:
        print(f"error: {exc}")
        return EXIT_OPERATOR if exc.status == 409 else EXIT_ERROR
    print(f"resumed {res['scope']}: fencing is on again")
    return EXIT_OK
