"""The HTTP API through httpx, on an Arbiter that observed simulated directors."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

import httpx
import pytest

from arbiter.api.app import create_app
from arbiter.sim.node import SimSite
from arbiter.sim.scenario import VIP1


async def rounds(arb, n: int) -> None:  # type: ignore[no-untyped-def]
    for _ in range(n):
        await arb.run_round()
        await arb.wait_fences()


@pytest.fixture
async def split_api(site: SimSite, make_arbiter):  # type: ignore[no-untyped-def]
    """An arbiter that saw a split brain and fenced lb2."""
    arb = await make_arbiter(site)
    await rounds(arb, 1)
    site.state("lb2").add("eth0", VIP1, 24)
    await rounds(arb, 4)
    app = create_app(arb)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://arbiter") as c:
        yield arb, c
    await arb.runner.close()


async def test_verdicts_json_and_text(split_api) -> None:  # type: ignore[no-untyped-def]
    arb, c = split_api
    r = await c.get("/verdict", params={"cluster": "web", "node": "lb2"})
    assert r.status_code == 200
    body = r.json()
    assert body["verdict"] == "deny" and "victim" in body["reason"]
    assert body["holder"] == "lb1" and body["incident"] >= 1 and body["epoch"] >= 1
    assert body["observed_at"]
    r = await c.get("/verdict", params={"cluster": "web", "node": "lb1", "vip": VIP1})
    assert r.json()["verdict"] == "allow" and r.json()["holder"] == "lb1"
    t = await c.get("/verdict", params={"cluster": "web", "node": "lb2", "format": "text"})
    assert t.text == "deny\n" and t.headers["content-type"].startswith("text/plain")
    t = await c.get("/verdict", params={"cluster": "web", "node": "lb1"},
                    headers={"Accept": "text/plain"})
    assert t.text == "allow\n"


@pytest.mark.parametrize(
    ("params", "status", "needle"),
    [
        ({"cluster": "nope", "node": "lb1"}, 404, "unknown cluster"),
        ({"cluster": "web", "node": "lb9"}, 404, "unknown node"),
        ({"cluster": "web", "node": "lb1", "vip": "10.9.9.9"}, 404, "not a VIP"),
        ({"cluster": "web", "node": "lb1", "vip": "not-an-ip"}, 422, "vip"),
        ({"cluster": "web"}, 422, "node"),
        ({"cluster": "web", "node": "lb1", "format": "xml"}, 422, "format"),
    ],
)
async def test_verdict_bad_parameters(split_api, params, status, needle) -> None:  # type: ignore[no-untyped-def]
    _, c = split_api
    r = await c.get("/verdict", params=params)
    assert r.status_code == status
    assert needle in r.json()["detail"]


async def test_verdict_abstains_when_stale(split_api) -> None:  # type: ignore[no-untyped-def]
    arb, c = split_api
    old = arb.runtime.snapshot
    arb.runtime.snapshot = replace(old, at=old.at - timedelta(seconds=60))
    r = await c.get("/verdict", params={"cluster": "web", "node": "lb1"})
    assert r.json()["verdict"] == "abstain" and "stale" in r.json()["reason"]
    rz = await c.get("/readyz")
    assert rz.status_code == 503 and "stale" in rz.json()["problems"][0]


async def test_status(split_api) -> None:  # type: ignore[no-untyped-def]
    _, c = split_api
    s = (await c.get("/status")).json()
    assert s["arbiter"]["self_check"]["sees_gateway"] is True
    assert s["arbiter"]["last_round"]["count"] == 5
    (web,) = s["clusters"]
    assert web["holders"] == {VIP1: ["lb1"]}
    nodes = {n["name"]: n for n in web["nodes"]}
    assert nodes["lb1"]["holds"] == [VIP1] and nodes["lb1"]["keepalived_running"] is True
    assert nodes["lb2"]["keepalived_running"] is False and nodes["lb2"]["held"] is True
    assert nodes["lb1"]["icmp"]["ok"] and nodes["lb1"]["ssh"]["ok"]
    assert nodes["lb1"]["gateways"] == {"127.0.0.1": True}
    assert nodes["lb1"]["last_seen"]


async def test_incidents_list_detail_and_errors(split_api) -> None:  # type: ignore[no-untyped-def]
    _, c = split_api
    lst = (await c.get("/incidents", params={"cluster": "web", "state": "fenced"})).json()
    (inc,) = lst["items"]
    assert lst["next_cursor"] is None
    one = (await c.get(f"/incidents/{inc['id']}")).json()
    assert [(a["node"], a["step"]) for a in one["fence_attempts"]] == [
        ("lb2", "fence_command"), ("lb2", "verify"), ("lb1", "announce")]
    assert one["evidence"]["split_vips"] == [VIP1]
    assert (await c.get("/incidents/999")).status_code == 404
    assert (await c.get("/incidents/0")).status_code == 422
    r = await c.get("/incidents", params={"limit": 501})
    assert r.status_code == 422 and "limit" in r.json()["detail"]
    r = await c.get("/incidents", params={"state": "bogus"})
    assert r.status_code == 422 and "state" in r.json()["detail"]
    r = await c.get("/incidents", params={"cursor": "zzz"})
    assert r.status_code == 422 and "cursor" in r.json()["detail"]
    r = await c.get("/incidents", params={"since": "yesterday"})
    assert r.status_code == 422 and "since" in r.json()["detail"]
    r = await c.get("/incidents", params={"since": "2000-01-01T00:00:00"})
    assert r.status_code == 200 and len(r.json()["items"]) == 1
    assert (await c.get("/incidents", params={"cluster": "nope"})).status_code == 404


async def test_health_and_docs(split_api) -> None:  # type: ignore[no-untyped-def]
    _, c = split_api
    assert (await c.get("/healthz")).json() == {"status": "ok"}
    assert (await c.get("/readyz")).json() == {"status": "ready"}
    spec = (await c.get("/openapi.json")).json()
    assert {"/verdict", "/status", "/incidents", "/incidents/{incident_id}"} <= set(spec["paths"])
    assert (await c.get("/docs")).status_code == 200


async def test_before_first_round_everything_abstains(site: SimSite, make_arbiter) -> None:
    arb = await make_arbiter(site)
    app = create_app(arb)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://arbiter") as c:
        r = await c.get("/verdict", params={"cluster": "web", "node": "lb1"})
        assert r.json()["verdict"] == "abstain"
        assert (await c.get("/readyz")).status_code == 503
        s = (await c.get("/status")).json()
        assert s["arbiter"]["abstaining"] == "no round has completed yet"
    await arb.runner.close()
    await asyncio.sleep(0)
