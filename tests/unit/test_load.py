"""The loop's load (issue 32): CPU-seconds per second over the last 30 s, and the
warning /status and `arbiter status` show near the budget. Fake clocks: the meter
reads whatever it is given."""

from __future__ import annotations

from arbiter.policy.cluster_state import arbiter_problems
from arbiter.round.outputs.load import MIN_SPAN, WARN_AT, WINDOW, LoadMeter


class Clocks:
    def __init__(self) -> None:
        self.wall, self.cpu = 0.0, 0.0

    def run(self, seconds: float, busy: float) -> None:
        self.wall += seconds
        self.cpu += seconds * busy


def meter() -> tuple[LoadMeter, Clocks]:
    c = Clocks()
    return LoadMeter(mono=lambda: c.wall, cpu=lambda: c.cpu), c


def test_no_rate_before_a_few_seconds_were_seen() -> None:
    m, c = meter()
    assert m.sample(0).cpu_per_s is None
    c.run(MIN_SPAN / 2, 0.9)
    assert m.sample(100).cpu_per_s is None and m.sample(100).warning is None


def test_the_rate_is_over_the_last_window_only() -> None:
    m, c = meter()
    dumps = 0
    for _ in range(60):  # a minute at 0.9: near the budget
        c.run(1.0, 0.9)
        dumps += 4000
        load = m.sample(dumps)
    assert abs(load.cpu_per_s - 0.9) < 1e-9 and abs(load.dumps_per_s - 4000) < 1e-6
    assert load.warning is not None and "0.90 CPU-s per second" in load.warning
    assert "4000 dumps/s" in load.warning and "Capacity" in load.warning
    for _ in range(int(WINDOW) + 2):  # then quiet: the old minute leaves the window
        c.run(1.0, 0.1)
        load = m.sample(dumps)
    assert load.cpu_per_s is not None and load.cpu_per_s < WARN_AT and load.warning is None
    assert load.dumps_per_s == 0


def test_the_warning_is_one_of_the_arbiters_problems() -> None:
    m, c = meter()
    m.sample(0)
    c.run(10.0, 0.75)
    load = m.sample(0)
    assert load.warning is not None and "keepalived's view" not in load.warning  # view off
    status = {"arbiter": {"load": load.as_json()}}
    assert arbiter_problems(status) == [f"Load: {load.warning}"]
    assert arbiter_problems({"arbiter": {"load": m.sample(0).as_json() | {"warning": None}}}) == []
