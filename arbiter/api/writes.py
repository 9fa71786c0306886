"""The write endpoints' common steps, in the order that keeps input harmless:
authenticate (before a byte of the body is read), read at most ``MAX_BODY`` bytes,
parse JSON (whatever the content type: `curl -d` sends a form type), validate with
the endpoint's model. Every refusal is a 4xx that names the problem and never
echoes the input back.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import HTTPException, Request
from pydantic import BaseModel, ValidationError

MAX_BODY = 16 * 1024
M = TypeVar("M", bound=BaseModel)


async def read_body(request: Request, limit: int = MAX_BODY) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"body too large: at most {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"body too large: at most {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse(model: type[M], body: bytes, empty_ok: bool = False) -> M | None:
    if not body.strip():
        if empty_ok:
            return None
        raise HTTPException(422, "body: a JSON object is required")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise HTTPException(422, "body: not JSON (send a JSON object, e.g. with "
                                 "-H 'Content-Type: application/json')") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        fields = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors())
        raise HTTPException(422, f"body: {fields}") from None


class RateLimit:
    """A token bucket per key: ``burst`` at once, then ``per_second``. keepalived
    reports a handful of transitions per failover; a node posting in a loop must not
    run rounds (and write rows) as fast as it can."""

    def __init__(self, burst: float = 10, per_second: float = 1.0,
                 clock: Callable[[], float] = time.monotonic, max_keys: int = 10_000):
        self.burst, self.rate, self.clock, self.max_keys = burst, per_second, clock, max_keys
        self._buckets: dict[Any, tuple[float, float]] = {}

    def take(self, key: Any) -> float | None:
        """None if allowed; else the seconds until the next one would be."""
        now = self.clock()
        tokens, at = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / self.rate
        if len(self._buckets) >= self.max_keys and key not in self._buckets:
            self._buckets.clear()
        self._buckets[key] = (tokens - 1, now)
        return None
