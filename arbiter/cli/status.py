"""`arbiter status` and `arbiter release`: the running arbiter, for the operator at
3 a.m. One table per cluster, like `patronictl list`; the exit code says whether
anything needs an operator.

Exit codes: 0 nothing needs an operator; 1 something does (a cluster is
needs-operator, held, degraded or abstaining; or a release found nothing to
release); 2 the arbiter cannot be asked, or the request is refused.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from arbiter.cli.api_client import ApiError, call, operator_token, read_token
from arbiter.cli.exits import EXIT_ERROR, EXIT_OK, EXIT_OPERATOR
from arbiter.config import Config
from arbiter.policy.cluster_state import arbiter_problems


def _age(iso: str | None, now: datetime) -> str:
    if not iso:
        return "never"
    return f"{(now - datetime.fromisoformat(iso)).total_seconds():.1f}s"


def _yes(v: object) -> str:
    return {True: "ok", False: "FAIL", None: "?"}.get(v, "?")  # type: ignore[arg-type]


def render(status: dict[str, Any], now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    out = []
    arb = status.get("arbiter", {})
    out += [f"! {p}" for p in arbiter_problems(status)] if arb else []
    if arb.get("dry_run"):
        out.append("dry run: decisions are recorded, nothing is fenced (dry_run = true)")
    ha = arb.get("ha")
    if ha:
        shards = ", ".join(f"{s}: {v['leader']} (term {v['term']})"
                           f"{' <- this arbiter' if v['leading'] else ''}"
                           for s, v in ha["shards"].items())
        out.append(f"arbiter {ha['name']}; leaders: {shards}")
    for c in status.get("clusters", []):
        out.append("")
        out.append(f"+ cluster {c['name']}: {c['state'].upper()}  {c.get('state_reason') or ''}")
        if c.get("paused"):
            out.append(f"  PAUSED: {c['paused']['summary']}")
        cols = ("node", "role", "VIPs held", "icmp", "ssh", "gateway", "keepalived",
                "verdict", "seen", "gate")
        rows = []
        for n in c.get("nodes", []):
            holds = n.get("holds") or []
            gws = n.get("gateways") or {}
            rows.append((
                n["name"] + (" (held)" if n.get("held") else ""),
                vrrp_role(n) or ("MASTER" if holds else "backup"),
                ",".join(holds) or "-",
                _yes((n.get("icmp") or {}).get("ok")),
                _yes((n.get("ssh") or {}).get("ok")),
                f"{sum(1 for v in gws.values() if v)}/{len(gws)}" if gws else "?",
                {True: "running", False: "stopped"}.get(n.get("keepalived_running"), "?"),
                n.get("verdict") or "?",
                _age(n.get("last_seen"), now),
                ((n.get("gate") or {}).get("summary") or "gate: never asked").removeprefix(
                    "gate: "),
            ))
        widths = [max(len(str(x)) for x in col) for col in zip(cols, *rows, strict=True)]
        for r in (cols, *rows):
            out.append("| " + " | ".join(str(x).ljust(w) for x, w in zip(r, widths,
                                                                          strict=True)) + " |")
        inc = c.get("incident")
        if inc:
            out.append(f"  incident #{inc['id']}: {inc['state']}, survivor {inc['survivor']}, "
                       f"victims {', '.join(inc['victims']) or '-'}")
        kv = c.get("keepalived") or {}
        if kv.get("exclusive_rule"):
            out.append(f"  exclusive: {kv['exclusive_rule']}")
        for d in kv.get("denials") or []:
            probe = " (probing)" if d.get("probing_since") else ""
            out.append(f"  denied: {d['node']} on vrid {d['vrid']} since "
                       f"{_age(d['since'], now)} ago{probe}")
        for w in c.get("warnings", []):
            out.append(f"  WARNING: {w}")
    return "\n".join(out).lstrip("\n")


def vrrp_role(n: dict[str, Any]) -> str | None:
    """keepalived's own word for each instance ("VI_1 MASTER"), from its view. None
    while keepalived is not running: its last states would be stale news."""
    kv = n.get("keepalived") or {}
    if n.get("keepalived_running") is False or (kv.get("error") and not kv.get("instances")):
        return None
    stale = " (stale)" if kv.get("error") else ""
    return ", ".join(f"{i['name']} {i['state']}" for i in kv.get("instances", [])) + stale \
        if kv.get("instances") else None


def needs_operator(status: dict[str, Any]) -> bool:
    """What /status says (``overall``: a cluster in a state only an operator ends, or
    a notification given up)."""
    return bool((status.get("overall") or {}).get("needs_operator"))


def _first_status(cfg: Config, wait: float) -> dict[str, Any]:
    """/status; while there is no answer at all (a service starting: `systemctl start`
    returns before the API listens), or the answer is from before the first round (it
    would only say "no round has completed yet"), asked again every 0.5 s for ``wait``
    seconds; then what there is. An answer with an HTTP error is final at once."""
    deadline = time.monotonic() + wait
    while True:
        try:
            status = call(cfg, "GET", "/status", token=read_token(cfg))
            if _rounds_done(status) or time.monotonic() + 0.5 > deadline:
                return status
        except ApiError as exc:
            if exc.status is not None or time.monotonic() + 0.5 > deadline:
                raise
        time.sleep(0.5)


def _rounds_done(status: dict[str, Any]) -> int:
    return int(((status.get("arbiter") or {}).get("last_round") or {}).get("count") or 0)


def cmd_status(cfg: Config, watch: float | None, as_json: bool, count: int,
               wait: float = 0.0) -> int:
    shown = 0
    while True:
        try:
            status = _first_status(cfg, wait if shown == 0 else 0.0)
        except ApiError as exc:
            print(f"error: {exc}")
            return EXIT_ERROR
        if watch is not None:
            print("\033[2J\033[H", end="")  # clear the screen, as `watch` does
        print(json.dumps(status, indent=2) if as_json else render(status), flush=True)
        shown += 1
        if watch is None or (count and shown >= count):
            return EXIT_OPERATOR if needs_operator(status) else EXIT_OK
        time.sleep(watch)


def cmd_release(cfg: Config, incident: int, reason: str, who: str | None) -> int:
    try:
        res = call(cfg, "POST", f"/incidents/{incident}/release", {"reason": reason},
                   operator_token(cfg, who), timeout=40.0)
    except ApiError as exc:
        print(f"error: {exc}")
        return EXIT_OPERATOR if exc.status in (404, 409) else EXIT_ERROR
    if res.get("queued"):
        print(f"incident #{incident}: release accepted; the next round carries it out")
        return EXIT_OK
    print(f"incident #{incident}: released {', '.join(res.get('released', []))}")
    for r in res.get("recover", []):
        print(f"  recover {r['node']}: {'ok' if r.get('ok') else 'FAILED: ' + str(r.get('error'))}")
    return EXIT_OK if all(r.get("ok") for r in res.get("recover", [])) else EXIT_OPERATOR
