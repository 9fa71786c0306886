"""How busy the arbiter's one thread is (issue 32).

Python runs the loop on one core: rounds, keepalived's view (a dump from every
director every ``keepalived_watch_every``), SSH, the API. The process's CPU-seconds
per second of wall time, over the last ``WINDOW`` seconds, is how much of that core
is spent; near 1.0 rounds start late, TILT follows and the arbiter abstains. At
``WARN_AT`` /status warns and says what moves the limit. Measured on the 2-core
reference machine (BENCHMARKS §2): 1000 directors with the view on use 0.7-0.9 (quiet ticks).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

WINDOW = 30.0  # seconds the rate is taken over
WARN_AT = 0.6  # CPU-s per second: rounds still fit, but a burst (a split, a reload) may not
MIN_SPAN = 5.0  # seconds of samples before a rate is given


@dataclass(frozen=True, slots=True)
class Load:
    cpu_per_s: float | None = None  # None until MIN_SPAN seconds were seen
    dumps_per_s: float | None = None  # keepalived's view: dumps recorded per second
    warning: str | None = None

    def as_json(self) -> dict[str, object]:
        return {"cpu_s_per_s": None if self.cpu_per_s is None else round(self.cpu_per_s, 3),
                "keepalived_dumps_per_s": None if self.dumps_per_s is None
                else round(self.dumps_per_s, 1),
                "warn_at": WARN_AT, "warning": self.warning}


class LoadMeter:
    def __init__(self, mono: Callable[[], float] = time.monotonic,
                 cpu: Callable[[], float] = time.process_time):
        self._mono, self._cpu = mono, cpu
        self._samples: deque[tuple[float, float, int]] = deque()

    def sample(self, dumps: int) -> Load:
        """The load over the last WINDOW seconds; ``dumps``: the view's count so far."""
        now = self._mono()
        self._samples.append((now, self._cpu(), dumps))
        while len(self._samples) > 2 and now - self._samples[1][0] >= WINDOW:
            self._samples.popleft()
        t0, c0, d0 = self._samples[0]
        span = now - t0
        if span < MIN_SPAN:
            return Load()
        cpu = (self._samples[-1][1] - c0) / span
        rate = (dumps - d0) / span
        warning = None
        if cpu >= WARN_AT:
            view = f" (keepalived's view: {rate:.0f} dumps/s)" if rate else ""
            warning = (f"the arbiter used {cpu:.2f} CPU-s per second over the last "
                       f"{span:.0f} s of the one core its loop runs on{view}: near the "
                       "budget, rounds will start late; give it fewer directors (README "
                       "\"Capacity\") or raise arbiter.keepalived_watch_every")
        return Load(cpu, rate, warning)
