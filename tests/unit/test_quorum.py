"""The quorum of vantages, pure: table tests and properties, no I/O."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arbiter.config import ClusterConfig
from arbiter.model import FenceMethod, FencePlan, VictimAction
from arbiter.policy.quorum import NodeView, Quorum, judge, out_of_sight

VIP = "192.168.77.100"
CLUSTER = ClusterConfig.model_validate({
    "name": "web", "vips": [VIP],
    "nodes": [{"name": "lb1", "address": "10.0.0.1"}, {"name": "lb2", "address": "10.0.0.2"}],
})
PLAN = FencePlan("web", "lb1", (VictimAction("lb2", FenceMethod.STOP_KEEPALIVED, (VIP,)),),
                 (VIP,), "survivor rule: lb1 was the incumbent")


def view(lb1: str, lb2: str) -> dict[str, NodeView]:
    """Each node as 'held' (reachable, holds the VIP), 'up' (reachable, no VIP) or
    'gone' (unreachable)."""
    def node(s: str) -> NodeView:
        return NodeView(s != "gone", True, (VIP,) if s == "held" else (), 1)
    return {"lb1": node(lb1), "lb2": node(lb2)}


SPLIT = view("held", "held")


@pytest.mark.parametrize(("peers", "need", "fenced", "says"), [
    ({}, 2, False, "1 of 3 arbiters see lb1 and lb2 both holding 192.168.77.100; quorum is 2"),
    ({"a2": SPLIT}, 2, True, "2 of 3 arbiters see lb1 and lb2 both holding 192.168.77.100"),
    # a peer that sees one holder does not make a quorum
    ({"a2": view("held", "up"), "a3": view("held", "up")}, 2, False, "1 of 3 arbiters"),
    # quorum 1: this arbiter alone, as without [ha]
    ({}, 1, True, "1 of 3 arbiters see"),
    # two of three views cannot reach the victim: never fenced, whoever sees the split
    ({"a2": view("held", "gone"), "a3": view("held", "gone")}, 1, False,
     "2 of 3 views cannot reach lb2"),
    ({"a2": SPLIT, "a3": view("held", "gone")}, 2, True, "2 of 3 arbiters"),
])
def test_judge(peers: dict, need: int, fenced: bool, says: str) -> None:
    plan, why = judge(Quorum(3, need, {"web": peers}), CLUSTER, SPLIT, (VIP,), PLAN)
    assert (plan is not None) == fenced, why
    assert says in why


STATES = st.sampled_from(["held", "up", "gone"])


@settings(max_examples=400, deadline=None)
@given(peers=st.lists(st.tuples(STATES, STATES), max_size=4), need=st.integers(1, 5))
def test_never_fences_below_quorum_or_a_node_most_views_cannot_reach(
        peers: list[tuple[str, str]], need: int) -> None:
    views = [SPLIT] + [view(a, b) for a, b in peers]
    q = Quorum(len(views), need, {"web": {f"a{i}": v for i, v in enumerate(views[1:])}})
    plan, why = judge(q, CLUSTER, SPLIT, (VIP,), PLAN)
    seeing = sum(1 for v in views if v["lb1"].holds and v["lb2"].holds)
    blind = sum(1 for v in views if not v["lb2"].reachable)
    if plan is not None:
        assert seeing >= need and blind * 2 <= len(views)
        assert why.startswith(f"{seeing} of {len(views)} arbiters see")
    else:
        assert seeing < need or blind * 2 > len(views)


def test_the_survivor_rule_counts_every_view() -> None:
    """By the leader's view alone lb1 survives (incumbent, both see their gateway); the
    two other arbiters saw lb1 blind to its gateway, so over every view lb2 sees more
    of its gateways and survives."""
    from arbiter.model import ClusterHistory, ClusterObservation
    from arbiter.policy.survivor import deciding_rule, rank_candidates
    from tests.unit.builders import node

    obs = ClusterObservation("web", (node("lb1", (VIP,)), node("lb2", (VIP,))))
    hist = ClusterHistory(incumbents=((VIP, "lb1"),))
    alone = rank_candidates(CLUSTER, obs, hist, ["lb1", "lb2"], (VIP,))
    assert alone[0].name == "lb1" and deciding_rule(alone[0], alone[1]).startswith("incumbent")
    blind_lb1 = {"lb1": NodeView(True, True, (VIP,), 0), "lb2": NodeView(True, True, (VIP,), 1)}
    ranked = rank_candidates(CLUSTER, obs, hist, ["lb1", "lb2"], (VIP,),
                             {"a2": blind_lb1, "a3": blind_lb1})
    assert ranked[0].name == "lb2"
    assert deciding_rule(ranked[0], ranked[1], True) == \
        "sees more of its gateways, over every arbiter's view (3 > 1)"
    assert "reachable by 3/3 arbiters" in ranked[0].why


BLIND = {"lb1": NodeView(False, None, (), 0), "lb2": NodeView(False, None, (), 0)}
PINGS_ONLY = {"lb1": NodeView(True, None, (), 1), "lb2": NodeView(True, None, (), 1)}


@pytest.mark.parametrize(("reads", "peers", "aside", "says"), [
    # it reads a director: it can act, whatever the others see
    ({"web": True}, {"a2": SPLIT}, False, None),
    # it reads none, a peer reads them: stand aside, naming who can act
    ({"web": False}, {"a2": SPLIT}, True, "rule: out of sight: this arbiter reads none of "
     "the directors of web over SSH while a2 does"),
    ({"web": False}, {"a2": SPLIT, "a3": view("held", "gone")}, True, "while a2, a3 do"),
    # nobody reads them better: the lead would only move around
    ({"web": False}, {}, False, None),
    ({"web": False}, {"a2": BLIND, "a3": BLIND}, False, None),
    # a peer that only pings them cannot fence them either
    ({"web": False}, {"a2": PINGS_ONLY}, False, None),
    # a shard of two clusters: aside only if it reads neither and one peer reads both
    ({"web": False, "api": True}, {"a2": SPLIT}, False, None),
    ({"web": False, "api": False}, {"a2": SPLIT}, False, None),  # a2 has no view of api
    ({}, {"a2": SPLIT}, False, None),
])
def test_out_of_sight(reads: dict[str, bool], peers: dict[str, dict[str, NodeView]],
                      aside: bool, says: str | None) -> None:
    quorum = Quorum(3, 2, {"web": peers})
    why = out_of_sight(quorum, reads)
    assert (why is not None) == aside
    if says:
        assert why is not None and says in why


@given(reads=st.dictionaries(st.sampled_from(["web", "api", "db"]), st.booleans(),
                             max_size=3),
       seers=st.dictionaries(st.sampled_from(["a2", "a3"]),
                             st.sets(st.sampled_from(["web", "api", "db"])), max_size=2))
@settings(max_examples=200, deadline=None)
def test_out_of_sight_only_when_blind_and_another_reads_every_cluster(
        reads: dict[str, bool], seers: dict[str, set[str]]) -> None:
    peers: dict[str, dict[str, dict[str, NodeView]]] = {}
    for arbiter, clusters in seers.items():
        for c in clusters:
            peers.setdefault(c, {})[arbiter] = SPLIT
    why = out_of_sight(Quorum(3, 2, peers), reads)
    someone = any(set(reads) <= cs for cs in seers.values())
    assert (why is not None) == (bool(reads) and not any(reads.values()) and someone)
