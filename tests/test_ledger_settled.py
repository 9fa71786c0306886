"""The Ledger after a client-side timeout: the call runs on in its thread, and
``settled`` must say so until the thread has returned (CI saw a late commit land
after the memory was read back: the tracking looked at the asyncio future, which
wait_for cancels at once, not at the call itself)."""

from __future__ import annotations

import threading

import pytest

from arbiter.round.ledger import Ledger
from arbiter.store.engine import StoreError


class SlowStore:
    """A stand-in for the repository's two methods the Ledger needs here: a call that
    blocks until released, as a frozen database holds a commit."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.landed = False

    def ping(self) -> None:
        pass

    def write(self) -> None:
        self.release.wait(10)
        self.landed = True


async def test_settled_waits_for_the_call_itself_not_the_cancelled_future() -> None:
    store = SlowStore()
    ledger = Ledger(store, timeout=0.0)  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="did not answer"):
        await ledger.call(store.write)
    assert ledger.unknown_outcome
    assert await ledger.settled(0.2) is False  # still running in its thread
    assert not store.landed
    store.release.set()
    assert await ledger.settled(5) is True
    assert store.landed  # it did land: the memory must be read back after this
