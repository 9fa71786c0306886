"""Failpoints: places where a test can stop the arbiter at an exact step (test only).

A failpoint is off unless ``ARBITER_FAILPOINT_<NAME>`` names a file path. When
the arbiter reaches it, it creates that file and waits until the file is gone
(at most ``MAX_WAIT``), so a test can see the arbiter there and act on it, for
example SIGSTOP it. The lab's HA tests use ``BEFORE_FENCE_COMMAND``: the arbiter
has decided and checked its lease, and is about to send a fence command. Nothing
in a deployment sets these.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

log = logging.getLogger("arbiter.failpoints")
MAX_WAIT = 120.0
POLL = 0.05


async def reach(name: str) -> None:
    path = os.environ.get(f"ARBITER_FAILPOINT_{name}")
    if not path:
        return
    marker = Path(path)
    marker.touch()  # noqa: ASYNC240 - test only, a local file
    log.warning("failpoint %s reached: waiting until %s is removed", name, marker)
    for _ in range(int(MAX_WAIT / POLL)):
        if not marker.exists():  # noqa: ASYNC240 - test only, a local file
            return
        await asyncio.sleep(POLL)
