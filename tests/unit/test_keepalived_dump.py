"""keepalived's JSON dump is input from a machine we do not control: parsed strictly,
bounded, and every failure is that node's DumpError (never another exception)."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arbiter.probe.keepalived import MAX_INSTANCES, DumpError, parse_dump, watch_command

GOOD = {"data": {"iname": "VI_1", "vrid": 51, "version": 2, "state": 2, "wantstate": 2,
                 "base_priority": 100, "effective_priority": 100, "adver_int": 1,
                 "last_transition": 1796409391.9, "ifp_ifname": "eth0",
                 "vips": ["192.168.77.100/24 dev eth0 scope global set"],
                 "master_priority": 0, "garp_delay": 5},
        "stats": {"advert_rcvd": 0, "advert_sent": 42, "become_master": 1,
                  "release_master": 0, "pri_zero_rcvd": 0, "pri_zero_sent": 0}}


def test_a_real_dump_is_read() -> None:
    (i,) = parse_dump(json.dumps([GOOD]))
    assert (i.name, i.vrid, i.state, i.wantstate, i.advert_int) == ("VI_1", 51, "MASTER",
                                                                      "MASTER", 1.0)
    assert i.vips == ("192.168.77.100",) and i.advert_sent == 42 and i.interface == "eth0"


@pytest.mark.parametrize(("mutate", "words"), [
    (lambda d: d["data"].update(vrid="51"), "data.vrid"),
    (lambda d: d["data"].update(vrid=0), "data.vrid"),
    (lambda d: d["data"].update(base_priority=300), "data.base_priority"),
    (lambda d: d["data"].update(iname="x" * 65), "data.iname"),
    (lambda d: d["stats"].update(advert_rcvd=-1), "stats.advert_rcvd"),
    (lambda d: d["stats"].update(advert_sent=1.5), "stats.advert_sent"),
    (lambda d: d["data"].update(vips="192.168.77.100"), "data.vips"),
    (lambda d: d.pop("stats"), "stats"),
])
def test_a_wrong_shape_names_where(mutate, words) -> None:  # type: ignore[no-untyped-def]
    d = json.loads(json.dumps(GOOD))
    mutate(d)
    with pytest.raises(DumpError, match=words.replace(".", r"\.")):
        parse_dump(json.dumps([d]))


def test_hostile_dumps_stay_the_node_s_error() -> None:
    with pytest.raises(DumpError, match="not JSON"):
        parse_dump('[{"data": ')
    with pytest.raises(DumpError, match="more than"):
        parse_dump(" " * (256 * 1024 + 1))
    with pytest.raises(DumpError):
        parse_dump("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DumpError, match="VRRP instances"):
        parse_dump(json.dumps([GOOD] * (MAX_INSTANCES + 1)))
    (i,) = parse_dump(json.dumps([{**GOOD, "data": {**GOOD["data"], "state": 97}}]))
    assert i.state == "STATE97"  # shown as it came, never guessed


@settings(max_examples=300, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(), c,
                                                                        max_size=4)))
def test_any_json_is_a_dump_or_a_dump_error(value) -> None:  # type: ignore[no-untyped-def]
    with contextlib.suppress(DumpError):  # anything else fails the test
        parse_dump(json.dumps(value))


def test_the_watch_period_is_bounded() -> None:
    assert "sleep 0.05 " in watch_command(0.001) and "sleep 5 " in watch_command(60)
