"""TILT notices: TILT is no incident, so its start and end reach the outbox here."""

from __future__ import annotations

from datetime import datetime

from arbiter.policy import notify_events as ev
from arbiter.round.memory.ledger import Ledger
from arbiter.store.engine import StoreError


class TiltNotices:
    """Writes a TILT's start and its end to the outbox, once each, keyed by when it
    started (nothing without ``[notify]``)."""

    def __init__(self, ledger: Ledger):
        self.ledger = ledger
        self.noted: datetime | None = None  # the TILT's end, as last noted

    async def check(self, until: datetime | None, reason: str | None, now: datetime) -> None:
        repo = self.ledger.repo
        box = repo.outbox
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
            await self.ledger.call_unversioned(
                repo.transaction,
                lambda s: box.write_event(s, event, now, msg, occurrence))
        except StoreError:
            return  # db_error is shown; the next round tries again
        self.noted = until if event is ev.EventKind.TILT else None
