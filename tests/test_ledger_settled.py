"""The Ledger after a client-side timeout: the call runs on in its thread, and
``settled`` must say so until the thread has returned (CI saw a late commit land
after the memory was read back: the tracking looked at the asyncio future, which
wait_for cancels at once, not at the call itself)."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

from arbiter.round.memory.ledger import Ledger
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


async def test_a_late_call_that_fails_leaves_no_unread_exception(
        caplog: pytest.LogCaptureFixture) -> None:
    """The soak's database faults left 45 "Future exception was never retrieved"
    tracebacks at ERROR in one arbiter's log: ``settled`` waited on wrappers of the late
    calls and never read their failures (which unknown_outcome already accounts for)."""
    import gc

    store = SlowStore()

    def write_fails() -> None:
        store.release.wait(10)
        raise StoreError("OperationalError: server closed the connection unexpectedly")

    ledger = Ledger(store, timeout=0.0)  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="did not answer"):
        await ledger.call(write_fails)
    caplog.set_level(logging.ERROR, "asyncio")
    assert await ledger.settled(0.1) is False  # its wrapper gives up waiting
    store.release.set()
    await asyncio.sleep(0.2)  # the call fails late: the wrapper holds the failure
    assert await ledger.settled(5) is True
    gc.collect()
    await asyncio.sleep(0.05)
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]
