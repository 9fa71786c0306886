"""The HTTP API through httpx, on an Arbiter that observed simulated directors."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

import httpx
import pytest

from arbiter.api.app import create_app, with_fast_verdict
from arbiter.sim.node import SimSite
from arbiter.sim.scenario import VIP1


async def rounds(arb, n: int) -> None:  # type: ignore[no-untyped-def]
    for _ in range(n):
        await arb.run_round()
        await arb.wait_fences()


async def with_round(arb, request):  # type: ignore[no-untyped-def]
    """Send a write that the loop carries out (an intent), and run that round."""

    async def round_soon() -> None:
        await asyncio.sleep(0.05)
        await rounds(arb, 1)

    r, _ = await asyncio.gather(request, round_soon())
    return r


async def after_split(site: SimSite, make_arbiter, fast: bool = False, **cfg: object):  # type: ignore[no-untyped-def]
    """An arbiter that saw a split brain and fenced lb2, and an httpx client for it:
    the app itself, or (fast) as `arbiter serve` runs it, with /verdict's fast path."""
    arb = await make_arbiter(site, **cfg)
    await rounds(arb, 1)
    site.state("lb2").add("eth0", VIP1, 24)
    await rounds(arb, 4)
    app = with_fast_verdict(create_app(arb)) if fast else create_app(arb)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://arbiter") as c:
        yield arb, c
    await arb.close()


@pytest.fixture(params=[False, True], ids=["app", "served"])
async def split_api(site: SimSite, make_arbiter, request):  # type: ignore[no-untyped-def]
    async for pair in after_split(site, make_arbiter, fast=request.param):
        yield pair


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
    first = await c.get("/verdict", params={"cluster": "web", "node": "lb1"})
    assert first.json()["verdict"] == "allow"  # and now in the verdict cache
    old = arb.view.snapshot
    arb.view = replace(arb.view, snapshot=replace(old, at=old.at - timedelta(seconds=60)))
    r = await c.get("/verdict", params={"cluster": "web", "node": "lb1"})
    assert r.json()["verdict"] == "abstain" and "stale" in r.json()["reason"]
    rz = await c.get("/readyz")
    assert rz.status_code == 503 and "stale" in rz.json()["problems"][0]


async def test_verdict_follows_each_round_not_the_cache(site: SimSite, make_arbiter) -> None:  # type: ignore[no-untyped-def]
    """The same query before and after a round that changed the answer: the cached
    answer of the old round is never served."""
    async for arb, c in after_split(site, make_arbiter, fast=True, tokens={"ops": OPS},
                                    resolve_rounds=50):
        q = {"cluster": "web", "node": "lb2", "format": "text"}
        assert (await c.get("/verdict", params=q)).text == "deny\n"
        assert (await c.get("/verdict", params=q)).text == "deny\n"  # served from the cache
        before = arb.view
        (inc,) = arb.repo.list_incidents(state="fenced")[0]
        r = await with_round(arb, c.post(f"/incidents/{inc['id']}/release",
                                         headers=bearer(OPS)))
        assert r.status_code == 200 and arb.view is not before
        assert (await c.get("/verdict", params=q)).text == "allow\n"


async def test_status(split_api) -> None:  # type: ignore[no-untyped-def]
    _, c = split_api
    s = (await c.get("/status")).json()
    assert s["arbiter"]["self_check"]["sees_gateway"] is True
    assert s["arbiter"]["last_round"]["count"] == 5
    (web,) = s["clusters"]
    assert web["holders"] == {VIP1: ["lb1"]}
    assert web["gateways"] == {"127.0.0.1": True}  # the arbiter's own view of them
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
    await arb.close()
    await asyncio.sleep(0)


# --- write endpoints and auth ----------------------------------------------------------

OPS, LB1, LB2 = "ops-token-0123456789", "lb1-token-0123456789", "lb2-token-0123456789"


@pytest.fixture
async def authed(site: SimSite, make_arbiter):  # type: ignore[no-untyped-def]
    async for pair in after_split(site, make_arbiter,
                                  tokens={"ops": OPS, "lb1": LB1, "lb2": LB2}):
        yield pair


def bearer(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


EV = {"cluster": "web", "node": "lb2", "instance": "VI_1", "state": "MASTER", "priority": 90}


@pytest.mark.parametrize(("headers", "status", "needle"), [
    ({}, 401, "missing bearer token"),
    ({"Authorization": "Basic abc"}, 401, "expected Bearer"),
    (bearer("wrong-token-0123456789"), 401, "invalid bearer token"),
    (bearer(LB1), 403, "cannot report for web/lb2"),
])
async def test_events_refused(authed, headers, status, needle, caplog) -> None:  # type: ignore[no-untyped-def]
    arb, c = authed
    r = await c.post("/events", json=EV, headers=headers)
    assert r.status_code == status and needle in r.json()["detail"]
    if status == 401:
        assert r.headers["www-authenticate"] == 'Bearer, Basic realm="keepalived-arbiter"'
    assert arb.repo.node_events("web") == []
    assert any(f"auth: {status}" in m for m in caplog.messages)


async def test_event_accepted_stored_and_wakes_the_loop(authed) -> None:  # type: ignore[no-untyped-def]
    """The loop runs with a 30 s interval: only the event's wake explains a round, and
    the event stored, within a second."""
    arb, c = authed
    arb.scheduler.interval = 30.0
    stop = asyncio.Event()
    loop = asyncio.create_task(arb.run_forever(stop))
    try:
        for _ in range(100):  # the loop's first round
            if arb.view.stats.count >= 6:
                break
            await asyncio.sleep(0.02)
        count = arb.view.stats.count
        r = await c.post("/events", json=EV, headers=bearer(LB2))
        assert r.status_code == 202 and r.json()["by"] == "web/lb2"
        for _ in range(50):
            if arb.view.stats.count > count:
                break
            await asyncio.sleep(0.02)
        assert arb.view.stats.count > count  # a round well before the 30 s interval
    finally:
        stop.set()
        await asyncio.wait_for(loop, 10)
    (ev,) = arb.repo.node_events("web")
    assert (ev["node"], ev["state"], ev["priority"]) == ("lb2", "MASTER", 90)
    s = (await c.get("/status")).json()
    assert s["clusters"][0]["nodes"][1]["last_event"]["state"] == "MASTER"
    bad = await c.post("/events", json={**EV, "state": "SLEEPY"}, headers=bearer(LB2))
    assert bad.status_code == 422 and "state" in bad.json()["detail"]


async def test_release_by_operator_runs_recover(authed, site: SimSite) -> None:  # type: ignore[no-untyped-def]
    arb, c = authed
    (inc,) = arb.repo.list_incidents(state="fenced")[0]
    assert not site.state("lb2").keepalived_running
    assert (await c.post(f"/incidents/{inc['id']}/release", headers=bearer(LB2))).status_code \
        == 403
    assert (await c.post(f"/incidents/{inc['id']}/release")).status_code == 401
    assert not site.state("lb2").keepalived_running  # refused: nothing changed
    r = await with_round(arb, c.post(f"/incidents/{inc['id']}/release",
                                     json={"reason": "cable fixed"}, headers=bearer(OPS)))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["released"] == ["lb2"] and body["recover"][0]["ok"]
    assert site.state("lb2").keepalived_running
    assert "systemctl start keepalived" in site.state("lb2").commands
    full = arb.repo.get_incident(inc["id"])
    assert full["released_by"] == "ops: cable fixed"
    assert [a["step"] for a in full["fence_attempts"]][-1] == "recover"
    v = (await c.get("/verdict", params={"cluster": "web", "node": "lb2"})).json()
    assert v["verdict"] == "allow"
    again = await with_round(arb, c.post(f"/incidents/{inc['id']}/release",
                                         headers=bearer(OPS)))
    assert again.status_code == 409

    missing = await with_round(arb, c.post("/incidents/999/release", headers=bearer(OPS)))
    assert missing.status_code == 404


@pytest.mark.parametrize("fast", [False, True], ids=["app", "served"])
async def test_protected_reads(site: SimSite, make_arbiter, fast: bool) -> None:  # type: ignore[no-untyped-def]
    arb = await make_arbiter(site, tokens={"ops": OPS})
    text = arb.config.model_copy(update={"api": arb.config.api.model_copy(
        update={"protect_reads": True})})
    arb.config = text
    app = with_fast_verdict(create_app(arb)) if fast else create_app(arb)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://arbiter") as c:
        assert (await c.get("/status")).status_code == 401
        assert (await c.get("/status", headers=bearer(OPS))).status_code == 200
        v = "/verdict?cluster=web&node=lb1"
        r = await c.get(v)
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
        assert (await c.get(v, headers=bearer(OPS))).status_code == 200
        assert (await c.get("/healthz")).status_code == 200  # probes stay open
    await arb.close()


async def test_release_survives_a_restart_of_the_arbiter(site: SimSite, make_arbiter) -> None:  # type: ignore[no-untyped-def]
    async for arb, c in after_split(site, make_arbiter, tokens={"ops": OPS},
                                    resolve_rounds=50):
        (inc,) = arb.repo.list_incidents(state="fenced")[0]
        r = await with_round(arb, c.post(f"/incidents/{inc['id']}/release",
                                         headers=bearer(OPS)))
        assert r.status_code == 200
        await arb.restore()  # as after a restart: memory rebuilt from the store
        assert arb.history.cluster("web").incident is not None  # still open
        await rounds(arb, 1)
        v = (await c.get("/verdict", params={"cluster": "web", "node": "lb2"})).json()
        assert v["verdict"] == "allow", v


async def test_incident_pages_are_reused_until_the_store_changes(authed) -> None:  # type: ignore[no-untyped-def]
    """A dashboard asking the same page gets the kept answer; any write of the ledger
    (here an operator's release) retires it, so the next answer shows the change."""
    from sqlalchemy import event

    arb, c = authed
    calls = []  # the statements that read incident pages, as the engine runs them

    @event.listens_for(arb.repo.engine, "before_cursor_execute")
    def seen(_conn, _cur, statement, *_a):  # type: ignore[no-untyped-def]
        if "FROM incidents ORDER BY incidents.id DESC" in statement:  # a page
            calls.append(statement)

    first = (await c.get("/incidents")).json()["items"][0]
    assert first["released_at"] is None
    await c.get("/incidents")
    assert len(calls) == 1  # the second answer was the kept one
    r = await with_round(arb, c.post(f"/incidents/{first['id']}/release", headers=bearer(OPS)))
    assert r.status_code == 200
    again = (await c.get("/incidents")).json()["items"][0]
    assert again["released_at"] is not None and len(calls) == 2


async def test_the_readme_release_command_works_and_bad_bodies_get_a_4xx(authed) -> None:  # type: ignore[no-untyped-def]
    """The README's `curl -d '{"reason": ...}'` sends a form content type: it once gave a
    500. The JSON is now read whatever the content type; what is not JSON gets a 422 that
    names the body and echoes none of it."""
    arb, c = authed
    (inc,) = arb.repo.list_incidents(state="fenced")[0]
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    r = await with_round(arb, c.post(f"/incidents/{inc['id']}/release",
                                     headers={**bearer(OPS), **form},
                                     content=b'{"reason":"cable fixed"}'))
    assert r.status_code == 200, r.text
    assert arb.repo.get_incident(inc["id"])["released_by"] == "ops: cable fixed"
    r = await c.post("/events", headers={**bearer(LB2), **form},
                     content=b"cluster=web&node=lb2-secret-input")
    assert r.status_code == 422 and "body: not JSON" in r.text
    assert "secret-input" not in r.text


@pytest.mark.parametrize(("headers", "body", "status", "needle"), [
    ({}, b"x" * 1_000_000, 401, "missing bearer token"),  # auth before the body is read
    ({"Authorization": f"Bearer {LB2}"}, b"x" * 20_000, 413, "too large"),
    ({"Authorization": f"Bearer {LB2}"}, b"[" * 10_000, 422, "not JSON"),
    ({"Authorization": f"Bearer {LB2}"}, b'{"cluster": "web"}', 422, "node: Field required"),
])
async def test_event_bodies_are_bounded_and_never_echoed(authed, headers, body, status,  # type: ignore[no-untyped-def]
                                                         needle) -> None:
    _, c = authed
    r = await c.post("/events", headers=headers, content=body)
    assert r.status_code == status and needle in r.text
    assert len(r.content) < 2000


async def test_a_node_posting_in_a_loop_is_rate_limited(authed) -> None:  # type: ignore[no-untyped-def]
    arb, c = authed
    codes = [(await c.post("/events", json=EV, headers=bearer(LB2))).status_code
             for _ in range(15)]
    assert codes[:10] == [202] * 10 and 429 in codes[10:]
    r = await c.post("/events", json=EV, headers=bearer(LB2))
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    other = {**EV, "node": "lb1"}  # another node is not held back by lb2's storm
    assert (await c.post("/events", json=other, headers=bearer(LB1))).status_code == 202


@pytest.mark.parametrize("path", ["/incidents/9223372036854775808",
                                  "/incidents/2147483648"])
async def test_ids_out_of_range_are_the_clients_error(authed, path: str) -> None:  # type: ignore[no-untyped-def]
    arb, c = authed
    assert (await c.get(path)).status_code == 422
    r = await c.post(f"{path}/release", headers=bearer(OPS))
    assert r.status_code == 422 and "incident_id" in r.text
    assert arb.view.db_error is None


async def test_a_held_node_is_told_which_incident_holds_it(site: SimSite, make_arbiter) -> None:  # type: ignore[no-untyped-def]
    """After the split ends, lb2 stays held: its denial names the incident (it once
    said null), and the incident says whom it holds. It is not resolved but held, so
    ?state=held finds what needs a release."""
    async for arb, c in after_split(site, make_arbiter, resolve_rounds=1):
        await rounds(arb, 2)
        assert arb.history.cluster("web").incident.state.value == "held"
        v = (await c.get("/verdict", params={"cluster": "web", "node": "lb2"})).json()
        (inc,) = (await c.get("/incidents", params={"state": "held"})).json()["items"]
        assert v["verdict"] == "deny" and v["incident"] == inc["id"]
        assert inc["state"] == "held" and inc["held"] and inc["held_nodes"] == ["lb2"]
        assert (await c.get("/incidents", params={"state": "resolved"})).json()["items"] == []
        (web,) = (await c.get("/status")).json()["clusters"]
        assert web["state"] in ("held", "needs-operator"), web["state_reason"]
        assert "no split brain" not in web["reason"]
