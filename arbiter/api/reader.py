"""Heavy reads of the store (incident pages, one incident), off the event loop, and
at most once per change.

The gates' ``GET /verdict`` is answered on the event loop and must stay fast while
a dashboard pulls ``/incidents?limit=500`` (about 40 ms of CPU per page). The
query and the JSON encoding run in worker threads, never on the loop. And since
a dashboard asks the same page again and again while nothing changes, each answer
is kept as JSON bytes. After the ledger writes anything (its ``generation``) the
next request waits for a fresh read, so an operator sees a release at once. When
only ``TTL`` seconds passed (for writers outside this process), the kept answer
is served and read again behind it.

Tried and measured before this (BENCHMARKS.md, section 3): the same reads in a
process of their own. On the benchmark's single pinned core the reader process
then competes with the loop under the kernel's fair scheduler, and /verdict's p99
got worse, not better.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from arbiter.store.repository import Repository

TTL = 1.0  # seconds an unchanged answer is reused; bounds staleness from other writers
MAX_ENTRIES = 256


class Reader:
    def __init__(self, repo: Repository, generation: Callable[[], int],
                 clock: Callable[[], float] = time.monotonic, threads: int = 4):
        self._repo = repo
        self._generation = generation
        self._clock = clock
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="reader")
        self._cache: dict[tuple, tuple[int, float, bytes | None]] = {}
        self._refreshing: set[tuple] = set()

    async def incidents(self, **query: Any) -> bytes:
        """A page of incidents as JSON; CursorError and StoreError as the store raises them."""
        body = await self._cached(("page", tuple(sorted(query.items()))), self._page, query)
        assert body is not None
        return body

    async def incident(self, incident_id: int) -> bytes | None:
        return await self._cached(("one", incident_id), self._one, incident_id)

    def _page(self, query: dict[str, Any]) -> bytes:
        items, nxt = self._repo.list_incidents(**query)
        return json.dumps({"items": items, "next_cursor": nxt}).encode()

    def _one(self, incident_id: int) -> bytes | None:
        inc = self._repo.get_incident(incident_id)
        return None if inc is None else json.dumps(inc).encode()

    async def _cached(self, key: tuple, fn: Callable[[Any], bytes | None],
                      arg: Any) -> bytes | None:
        gen, now = self._generation(), self._clock()
        hit = self._cache.get(key)
        if hit is not None and hit[0] == gen:
            if now - hit[1] >= TTL and key not in self._refreshing:
                # Only time passed, and this process wrote nothing: answer with what we
                # have and read again behind it (for writers outside this process).
                self._refreshing.add(key)
                asyncio.get_running_loop().create_task(self._refresh(key, fn, arg, gen, now))
            return hit[2]
        return await self._read(key, fn, arg, gen, now)

    async def _read(self, key: tuple, fn: Callable[[Any], bytes | None], arg: Any, gen: int,
                    now: float) -> bytes | None:
        body = await asyncio.get_running_loop().run_in_executor(self._executor, fn, arg)
        if len(self._cache) >= MAX_ENTRIES:
            self._cache.clear()
        self._cache[key] = (gen, now, body)  # the generation from before the read began
        return body

    async def _refresh(self, key: tuple, fn: Callable[[Any], bytes | None], arg: Any,
                       gen: int, now: float) -> None:
        try:
            await self._read(key, fn, arg, gen, now)
        except Exception:  # noqa: BLE001 - the next request reads (and reports) again
            self._cache.pop(key, None)
        finally:
            self._refreshing.discard(key)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
