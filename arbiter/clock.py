"""The wall clock, in one place: UTC-aware datetimes for records and the policy.

The loop's own timing (intervals, TILT) uses the monotonic clock; see
``arbiter.policy.schedule``. Both are injected where tests need to control them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)
