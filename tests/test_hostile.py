"""A director's answer is input too. Hostile or broken directors, over real SSH to the
simulated nodes: each case is that node's own error in /status, the other node's round
and verdict go on, and memory stays bounded."""

from __future__ import annotations

import contextlib
import json
import resource
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arbiter.model import Verdict
from arbiter.probe.collect import MARK, CollectParseError, parse_collect
from arbiter.sim.node import SimSite
from arbiter.sim.scenario import VIP1
from tests.test_cycle import rounds, set_ssh

DEEP = "[" * 100_000 + "]" * 100_000

WRONG_SHAPES = {
    "an object": '{"a": 1}',
    "null": "null",
    "a string prefixlen": '[{"ifname": "eth0", "addr_info": [{"local": "10.0.0.1", '
                          '"prefixlen": "24"}]}]',
    "an integer ifname": '[{"ifname": 7, "addr_info": []}]',
    "a dict as local": '[{"ifname": "eth0", "addr_info": [{"local": {"x": 1}}]}]',
    "a local that is no address": '[{"ifname": "eth0", "addr_info": [{"local": "lb1"}]}]',
    "100,000 nested brackets": DEEP,
    "thousands of addresses": json.dumps([{"ifname": "eth0", "addr_info": [
        {"local": f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", "prefixlen": 24}
        for i in range(5000)]}]),
}


def collect_text(addr: str) -> str:
    return f"{MARK}\n@@addr\n{addr}\n\n@@keepalived\nrunning\n@@gw\n@@end\n"


@pytest.mark.parametrize("addr", WRONG_SHAPES.values(), ids=WRONG_SHAPES.keys())
def test_wrong_shapes_are_a_parse_error(addr: str) -> None:
    with pytest.raises(CollectParseError):
        parse_collect(collect_text(addr), [])


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["ifname", "addr_info", "local", "prefixlen", "label", "x"]), inner,
        max_size=4),
    max_leaves=30,
)


@settings(max_examples=500, deadline=None)
@given(JSON)
def test_any_json_gives_facts_or_a_parse_error(value: object) -> None:
    try:
        facts = parse_collect(collect_text(json.dumps(value)), ["10.0.0.254"])
    except CollectParseError as exc:
        assert str(exc)
        return
    assert all(isinstance(a.address, str) and isinstance(a.prefixlen, int)
               for a in facts.addresses)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_any_text_gives_facts_or_a_parse_error(text: str) -> None:
    for out in (text, collect_text(text), f"{MARK}\n@@addr\n[]\n@@keepalived\n{text}\n@@gw\n"
                                           "@@end\n"):
        with contextlib.suppress(CollectParseError):
            parse_collect(out, [])


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize("session", [True, False], ids=["session", "channel"])
@pytest.mark.parametrize("case", ["wrong types", "never-ending output", "tens of MB"])
async def test_a_hostile_director_is_its_own_error(site: SimSite, make_arbiter, case: str,
                                                   session: bool) -> None:
    arb = await make_arbiter(site)
    set_ssh(arb, collect_session=session)
    lb2 = site.state("lb2")
    if case == "wrong types":
        lb2.addr_output = WRONG_SHAPES["a string prefixlen"]
    elif case == "never-ending output":
        lb2.flood = True
    else:
        lb2.addr_output = "[" + ",".join(['{"ifname": "eth0"}'] * 1_500_000) + "]"  # ~27 MB
    await rounds(arb, 1)
    before = peak_rss_mb()
    t0 = time.monotonic()
    await rounds(arb, 3)
    took = time.monotonic() - t0
    snap, a = arb.view.snapshot, arb.view.assessment
    bad, good = snap.cluster("web").node("lb2"), snap.cluster("web").node("lb1")
    assert not bad.ssh_ok and bad.ssh_error
    expected = {"wrong types": "wrong shape", "never-ending output": "cut off",
                "tens of MB": "cut off"}[case]
    assert expected in bad.ssh_error, bad.ssh_error
    assert good.ssh_ok and good.holds([VIP1]) == (VIP1,)
    assert a.cluster("web").node("lb1").verdict is Verdict.ALLOW
    assert arb.view.last_error is None
    assert took < 3 * arb.config.ssh.command_timeout  # each round bounded, not stalled
    assert peak_rss_mb() - before < 100  # bounded: the cap is 1 M characters per answer
    lb2.addr_output, lb2.flood = None, False
    await rounds(arb, 2)
    assert arb.view.snapshot.cluster("web").node("lb2").ssh_ok  # and back when it is sane


@pytest.mark.parametrize("session", [True, False], ids=["session", "channel"])
async def test_a_node_that_never_sends_the_banner_costs_one_connect_timeout(
    site: SimSite, make_arbiter, session: bool
) -> None:
    """lb2's address accepts TCP and says nothing. Its error names the connect timeout,
    its collect costs one connect_timeout (it once cost two: a failed connect was taken
    for a refused session and tried again), and lb1's round goes on."""
    import asyncio

    lb2 = site.state("lb2")
    await site.stop_node("lb2")
    silent: list[asyncio.StreamWriter] = []

    async def mute(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        silent.append(w)  # accepted, and never a byte back

    server = await asyncio.start_server(mute, lb2.address, site.port)
    try:
        arb = await make_arbiter(site)
        set_ssh(arb, collect_session=session)
        t0 = time.monotonic()
        await rounds(arb, 1)
        took = time.monotonic() - t0
        bad = arb.view.snapshot.cluster("web").node("lb2")
        good = arb.view.snapshot.cluster("web").node("lb1")
        assert not bad.ssh_ok and "timed out after 2.0s" in bad.ssh_error, bad.ssh_error
        assert took < 2 * arb.config.ssh.connect_timeout, took
        assert good.ssh_ok and arb.view.assessment.cluster("web").node("lb1").verdict \
            is Verdict.ALLOW
    finally:
        server.close()
        for w in silent:
            w.close()
