"""`arbiter reload`, `arbiter pause` and `arbiter resume`: an operator's writes to the
running arbiter, through its API (the operator token from the config)."""

from __future__ import annotations

from arbiter.cli.api_client import ApiError, call, operator_token
from arbiter.cli.durations import parse_duration
from arbiter.cli.exits import EXIT_ERROR, EXIT_OK, EXIT_OPERATOR
from arbiter.config import Config


def cmd_reload(cfg: Config, path: str, who: str | None) -> int:
    """``cfg`` was read from ``path`` here first, so its errors were already shown; the
    running arbiter reads its own file again, and says what changed or why not."""
    try:
        res = call(cfg, "POST", "/reload", {}, operator_token(cfg, who), timeout=40.0)
    except ApiError as exc:
        print(f"error: {exc}")
        return EXIT_OPERATOR if exc.status == 409 else EXIT_ERROR
    if res.get("queued"):
        print(f"{path}: validated; the next round swaps it in")
        return EXIT_OK
    print(f"{path}: reloaded")
    for c in res.get("changes", []):
        print(f"  {c}")
    return EXIT_OK


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
