"""keepalived's view parses a dump only when its text changed (issue 32): between two
adverts the dump is the same text, and it still counts as a sample, at its own time."""

from __future__ import annotations

import json
from datetime import timedelta

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
