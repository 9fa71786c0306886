"""Wiring ``[notify]`` into a running arbiter: the outbox on the repository, the
sender and its jobs, TILT notices, and `arbiter notify test`."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from arbiter.api_client import base_url as api_base_url
from arbiter.config import Config
from arbiter.notify import events as ev
from arbiter.notify.channels import Channels
from arbiter.notify.outbox import Outbox
from arbiter.notify.sender import Sender, send_test
from arbiter.store.engine import StoreError

log = logging.getLogger("arbiter.notify")


def base_url(cfg: Config) -> str:
    """Links in messages: notify.base_url, else the API's own address as the CLI asks
    it (api_client.base_url: brackets for IPv6, loopback for a wildcard listen)."""
    if cfg.notify is not None and cfg.notify.base_url:
        return cfg.notify.base_url.rstrip("/")
    return api_base_url(cfg)


def outbox_for(cfg: Config) -> Outbox | None:
    n = cfg.notify
    if n is None:
        return None
    return Outbox(tuple(n.channels), frozenset(n.events), base_url(cfg),
                  cfg.ha.name if cfg.ha is not None else None)


def attach(arb: Any, cfg: Config) -> Sender | None:
    """Write notifications with every incident change, and build the sender that
    delivers them (None without [notify])."""
    box = outbox_for(cfg)
    if box is None or cfg.notify is None:
        return None
    arb.repo.outbox = box
    sender = Sender(cfg.notify, arb.ledger, Channels(cfg.notify), arb.clock,
                    on_result=arb.metrics.notification_result)
    arb.notifier = sender
    arb.metrics.watch_outbox(lambda: sender.counts)
    return sender


def schedule(sched: Any, sender: Sender) -> None:
    """The sender's jobs (APScheduler): deliver every ``send_every``, prune daily."""
    sched.add_job(sender.run_once, "interval", seconds=sender.section.send_every,
                  id="notify-send", max_instances=1, coalesce=True, misfire_grace_time=None)
    sched.add_job(sender.prune, "interval", hours=6, id="notify-retention",
                  max_instances=1, coalesce=True)


class TiltNotices:
    """TILT is no incident: its start and end are written to the outbox here, once
    each, keyed by when it started."""

    def __init__(self) -> None:
        self.noted: datetime | None = None  # the TILT's end, as last noted

    async def check(self, arb: Any, until: datetime | None, reason: str | None,
                    now: datetime) -> None:
        box = arb.repo.outbox
        if box is None:
            return
        active = until is not None and now < until
        if active and self.noted is None:
            event, msg = ev.EventKind.TILT, f"{reason}; fencing suspended until " \
                                               f"{until.isoformat() if until else '?'}"
        elif not active and self.noted is not None:
            event, msg = ev.EventKind.TILT_RESOLVED, "TILT over: fencing resumes"
        else:
            return
        started = self.noted if event is ev.EventKind.TILT_RESOLVED else until
        occurrence = f"tilt-{int(started.timestamp()) if started else 0}"
        try:
            await arb.ledger.call_unversioned(
                arb.repo.transaction,
                lambda s: box.write_event(s, event, now, msg, occurrence))
        except StoreError:
            return  # db_error is shown; the next round tries again
        self.noted = until if event is ev.EventKind.TILT else None


async def run_test(cfg: Config) -> int:
    """`arbiter notify test`: print each channel's result; exit 0 only if all worked."""
    if cfg.notify is None:
        print("no [notify] section in the config: nothing to test")
        return 2
    channels = Channels(cfg.notify)
    try:
        results = await send_test(cfg.notify, channels, base_url(cfg),
                                  cfg.ha.name if cfg.ha is not None else None)
    finally:
        await channels.aclose()
    width = max(len(ch) for ch, _ in results)
    for ch, err in results:
        print(f"{ch:<{width}}  {'ok' if err is None else 'FAILED: ' + err}")
    failed = sum(err is not None for _, err in results)
    print(f"{len(results) - failed} of {len(results)} channel(s) delivered")
    return 1 if failed else 0
