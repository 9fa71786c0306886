"""Heavy reads of the store (incident pages, one incident), off the event loop.

The gates' ``GET /verdict`` is answered on the event loop and must stay fast while
a dashboard pulls ``/incidents?limit=500`` (about 40 ms of CPU per page). In a
worker thread that page still holds the GIL, which a thread gives back only every
5 ms, and that hand-off was /verdict's tail under mixed load. In a process of its
own the kernel preempts the reader as soon as the loop has a request.

``Reader.in_process`` runs the same functions in a thread (tests, embedding);
``Reader.subprocess`` is what ``arbiter serve`` uses. Both answer with the JSON
bytes, encoded where the query ran.
"""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
from concurrent.futures import Executor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool, ProcessPoolExecutor
from typing import Any

from arbiter.store.repository import Repository, StoreError

log = logging.getLogger("arbiter.api.reader")

_repo: Repository | None = None  # the reader process's own connection pool


def _init(url: str) -> None:
    global _repo
    _repo = Repository.from_url(url)


def _page(repo: Repository | None, query: dict[str, Any]) -> bytes:
    assert repo is not None
    items, nxt = repo.list_incidents(**query)
    return json.dumps({"items": items, "next_cursor": nxt}).encode()


def _one(repo: Repository | None, incident_id: int) -> bytes | None:
    assert repo is not None
    inc = repo.get_incident(incident_id)
    return None if inc is None else json.dumps(inc).encode()


def _page_in_reader(query: dict[str, Any]) -> bytes:
    return _page(_repo, query)


def _one_in_reader(incident_id: int) -> bytes | None:
    return _one(_repo, incident_id)


class Reader:
    def __init__(self, executor: Executor, repo: Repository | None, url: str | None = None):
        self._executor = executor
        self._repo = repo  # None: the functions run in the reader process, on its own
        self._url = url

    @classmethod
    def in_process(cls, repo: Repository) -> Reader:
        return cls(ThreadPoolExecutor(4, thread_name_prefix="reader"), repo)

    @classmethod
    def subprocess(cls, url: str) -> Reader:
        return cls(cls._process_pool(url), None, url)

    @staticmethod
    def _process_pool(url: str) -> ProcessPoolExecutor:
        # spawn, not fork: the serving process has threads and an event loop
        return ProcessPoolExecutor(1, multiprocessing.get_context("spawn"),
                                   initializer=_init, initargs=(url,))

    async def incidents(self, **query: Any) -> bytes:
        """A page of incidents as JSON; CursorError and StoreError as the store raises them."""
        if self._repo is not None:
            return await self._run(_page, self._repo, query)
        return await self._run(_page_in_reader, query)

    async def incident(self, incident_id: int) -> bytes | None:
        if self._repo is not None:
            return await self._run(_one, self._repo, incident_id)
        return await self._run(_one_in_reader, incident_id)

    async def _run(self, fn: Any, *args: Any) -> Any:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        except BrokenProcessPool:
            # the reader process died (OOM killer, a crash): start a new one, and answer
            # this request as the database being unavailable
            log.error("reader process died; starting a new one")
            assert self._url is not None
            self._executor = self._process_pool(self._url)
            raise StoreError("the reader process died; try again") from None

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
