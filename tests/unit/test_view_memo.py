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
