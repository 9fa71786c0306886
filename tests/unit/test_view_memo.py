"""keepalived's view parses a dump only when its text changed (issue 32): between two
adverts the dump is the same text, and it still counts as a sample, at its own time."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from arbiter.round.views.keepalived_view import KeepalivedViews, _Node
from tests.unit.builders import T0, make_config
from tests.unit.test_keepalived_dump import GOOD


def test_the_same_text_is_not_parsed_again_but_is_a_new_sample() -> None:
    cfg = make_config()
    now = [T0]
    views = KeepalivedViews(cfg, runner=None, wake=lambda: None,  # type: ignore[arg-type]
                            clock=lambda: now[0])
    st = _Node()
    text = json.dumps([GOOD])
    for k in range(3):
        now[0] = T0 + timedelta(seconds=0.25 * k)
        views._dump(cfg.clusters[0], "lb1", st, text)
    assert (views.dumps, views.parsed) == (3, 1)
    (track,) = st.tracks.values()
    assert [s.at for s in track.samples] == [T0 + timedelta(seconds=0.25 * k) for k in range(3)]
    changed = json.loads(text)
    changed[0]["stats"]["advert_sent"] += 1  # the next advert
    now[0] += timedelta(seconds=0.25)
    views._dump(cfg.clusters[0], "lb1", st, json.dumps(changed))
    assert (views.dumps, views.parsed) == (4, 2)
    assert track.samples[-1].advert_sent == GOOD["stats"]["advert_sent"] + 1
    # a bad dump after a good one is still that node's error, never a reuse
    views._dump(cfg.clusters[0], "lb1", st, "[{")
    assert st.error is not None and "not JSON" in st.error


class _Lines:
    """The stream transport, faked at its one seam: each stream yields these lines,
    then ends (``Runner.stream`` yields "" once the command runs)."""

    def __init__(self, lines: list[str]):
        self.lines = lines
        self.done = 0

    async def stream(self, target: object, command: str):  # type: ignore[no-untyped-def]
        yield ""
        for line in self.lines:
            yield line + "\n"
        self.done += 1


def _watch_once(lines: list[str]) -> tuple[KeepalivedViews, _Node]:
    """One stream of ``lines`` through the view's own watch loop; the arbiter's clock
    runs ahead a second at each reading (a slow delivery), so the samples' times come
    from the node's uptimes."""
    import asyncio

    from arbiter.probe.keepalived import MARK

    cfg = make_config()
    runner = _Lines([f"{MARK} 0.25", *lines])
    ticks = iter(range(10_000))
    views = KeepalivedViews(cfg, runner=runner, wake=lambda: None,  # type: ignore[arg-type]
                            clock=lambda: T0 + timedelta(seconds=next(ticks)))

    async def go() -> None:
        task = asyncio.create_task(views._watch(cfg.clusters[0], "lb1"))
        for _ in range(200):  # bounded: the stream is in memory
            if runner.done:
                break
            await asyncio.sleep(0)
        task.cancel()

    asyncio.run(go())
    return views, views._nodes[("web", "lb1")]


def test_a_same_line_is_a_sample_of_the_last_whole_dump_at_the_nodes_time() -> None:
    """Issue 32: `@@kv-same UPTIME` records the counters of this stream's last whole
    dump at the node's new time, as a whole dump of that text would, unparsed."""
    text = json.dumps([GOOD])
    views, st = _watch_once(["@@kv 100.00", text, "@@kv-end", "@@kv-same 100.25",
                             "@@kv-same 100.50"])
    assert (views.dumps, views.parsed, views.same) == (3, 1, 2)
    assert st.error == "the keepalived watch ended; reconnecting"  # no dump error
    (track,) = st.tracks.values()
    gaps = [(b.at - a.at).total_seconds() for a, b in zip(track.samples,
                                                          list(track.samples)[1:],
                                                          strict=False)]
    assert gaps == pytest.approx([0.25, 0.25], abs=1e-3)  # NodeClock's drift allowance
    assert {s.advert_rcvd for s in track.samples} == {GOOD["stats"]["advert_rcvd"]}


def test_a_same_line_never_repeats_what_this_stream_did_not_send_whole() -> None:
    # first on a stream (a reconnect: the node's memory of what it sent is gone)
    views, st = _watch_once(["@@kv-same 100.25"])
    assert views.dumps == 0 and st.error is not None and "@@kv-same" in st.error
    # after a dump that could not be read, never the good one before it
    good = json.dumps([GOOD])
    views, st = _watch_once(["@@kv 100.00", good, "@@kv-end", "@@kv 100.25", "[{",
                             "@@kv-end", "@@kv-same 100.50"])
    assert views.dumps == 1 and st.error is not None and "@@kv-same" in st.error


def test_a_held_tick_is_a_sample_of_the_dump_before_the_change() -> None:
    """Quiet ticks (issue 32): `@@kv UPTIME HELD` brings the last tick the node held
    back, with the counters of the dump before it, at its own time; then the change."""
    before = json.dumps([GOOD])
    changed = json.loads(before)
    changed[0]["stats"]["advert_sent"] += 1
    views, st = _watch_once(["@@kv 100.00", before, "@@kv-end",
                             "@@kv 101.00 100.75", json.dumps(changed), "@@kv-end"])
    (track,) = st.tracks.values()
    sent = GOOD["stats"]["advert_sent"]
    t0 = track.samples[0].at
    assert [s.advert_sent for s in track.samples] == [sent, sent, sent + 1]
    assert [(s.at - t0).total_seconds() for s in track.samples] == \
        pytest.approx([0.0, 0.75, 1.0], abs=2e-3)
    assert (views.dumps, views.held) == (2, 1)


def test_a_held_tick_never_repeats_a_dump_that_could_not_be_read() -> None:
    good = json.dumps([GOOD])
    views, st = _watch_once(["@@kv 100.00", good, "@@kv-end", "@@kv 100.25", "[{",
                             "@@kv-end", "@@kv 101.00 100.75", good, "@@kv-end"])
    assert views.held == 0
    (track,) = st.tracks.values()
    assert len(track.samples) == 2  # the two good dumps, nothing at 100.75


def test_a_watch_refused_with_quiet_ticks_is_asked_again_for_every_tick() -> None:
    """An arbiter-ssh-wrapper older than quiet ticks refuses the quiet form (the
    stream ends without a line): the next stream asks for every tick, which it runs;
    the one after asks for quiet ticks again (the wrapper may have been upgraded)."""
    import asyncio

    from arbiter.probe.keepalived import MARK

    class Refusing:
        def __init__(self) -> None:
            self.commands: list[str] = []

        async def stream(self, target: object, command: str):  # type: ignore[no-untyped-def]
            self.commands.append(command)
            yield ""
            if " quiet " in command.split(";", 1)[0]:
                return  # refused: not a line
            for line in (f"{MARK} 0.25", "@@kv 100.00", json.dumps([GOOD]), "@@kv-end"):
                yield line + "\n"

    cfg = make_config()
    runner = Refusing()
    views = KeepalivedViews(cfg, runner=runner, wake=lambda: None)  # type: ignore[arg-type]

    async def go() -> None:
        task = asyncio.create_task(views._watch(cfg.clusters[0], "lb1"))
        for _ in range(80):  # bounded: the backoffs are 1 s, then 2 s
            if len(runner.commands) >= 3:
                break
            await asyncio.sleep(0.05)
        task.cancel()

    asyncio.run(go())
    heads = [c.split(";", 1)[0] for c in runner.commands]
    assert heads[:3] == [f"echo '{MARK} 0.25 quiet 3'", f"echo '{MARK} 0.25'",
                         f"echo '{MARK} 0.25 quiet 3'"], heads
    assert views.dumps == 1  # the plain stream's dump was recorded
