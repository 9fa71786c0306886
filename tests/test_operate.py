"""Running it as a service (issue 22): maintenance pauses and config reloads through
the API, on an Arbiter that observes simulated directors (real SSH, real store)."""

from __future__ import annotations

from pathlib import Path

import httpx

from arbiter.api.app import create_app
from arbiter.sim.node import SimSite
from arbiter.sim.scenario import VIP1
from tests.test_api import rounds, with_round

OPS = "ops-token-0123456789"
AUTH = {"Authorization": f"Bearer {OPS}"}


def client(arb, path: Path | None = None) -> httpx.AsyncClient:  # type: ignore[no-untyped-def]
    app = create_app(arb, config_path=str(path) if path else None)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://arbiter")


async def test_a_pause_watches_and_records_but_fences_nothing_until_it_ends(
        site: SimSite, make_arbiter) -> None:  # type: ignore[no-untyped-def]
    arb = await make_arbiter(site, tokens={"ops": OPS})
    await rounds(arb, 1)
    async with client(arb) as c:
        r = await with_round(arb, c.post("/pause", json={"cluster": "web", "seconds": 600,
                                                         "reason": "firewall work"},
                                         headers=AUTH))
        assert r.status_code == 200, r.text
        assert r.json()["scope"] == "web" and r.json()["by"] == "ops"
        site.state("lb2").add("eth0", VIP1, 24)  # a split brain during the pause
        await rounds(arb, 4)
        assert "systemctl stop keepalived" not in site.state("lb2").commands  # not fenced
        (web,) = (await c.get("/status")).json()["clusters"]
        assert web["paused"]["reason"] == "firewall work" and web["split_vips"] == [VIP1]
        assert "not fencing until it ends" in web["reason"]
        inc = (await c.get("/incidents")).json()["items"][0]
        assert inc["state"] == "open" and "during a maintenance pause" in inc["reason"]
        assert 'arbiter_paused{cluster="web"} 1.0' in (await c.get("/metrics")).text
        r = await with_round(arb, c.post("/resume", json={"cluster": "web"}, headers=AUTH))
        assert r.status_code == 200, r.text
        await rounds(arb, 2)  # the split still there: fenced at once
        assert "systemctl stop keepalived" in site.state("lb2").commands
        (web,) = (await c.get("/status")).json()["clusters"]
        assert web["paused"] is None


async def test_pause_refuses_bad_input_naming_the_field(site: SimSite, make_arbiter) -> None:  # type: ignore[no-untyped-def]
    arb = await make_arbiter(site, tokens={"ops": OPS}, max_pause=3600)
    await rounds(arb, 1)
    async with client(arb) as c:
        cases = [
            ({"seconds": 7200, "reason": "x"}, AUTH, 422, "seconds: 7200 is more than"),
            ({"seconds": 0, "reason": "x"}, AUTH, 422, "seconds"),
            ({"seconds": 60}, AUTH, 422, "reason"),
            ({"seconds": 60, "reason": "x", "cluster": "nope"}, AUTH, 404, "unknown cluster"),
            ({"seconds": 60, "reason": "x"}, {}, 401, "missing bearer token"),
        ]
        for body, headers, code, words in cases:
            r = await c.post("/pause", json=body, headers=headers)
            assert r.status_code == code and words in r.json()["detail"], (body, r.text)
        r = await with_round(arb, c.post("/resume", json={}, headers=AUTH))
        assert r.status_code == 409 and "no maintenance pause" in r.json()["detail"]


async def test_a_pause_survives_a_restart(site: SimSite, make_arbiter, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    db = f"sqlite:///{tmp_path / 'keep.db'}"
    arb = await make_arbiter(site, database=db, tokens={"ops": OPS})
    await rounds(arb, 1)
    async with client(arb) as c:
        await with_round(arb, c.post("/pause", json={"seconds": 600, "reason": "upgrade"},
                                     headers=AUTH))
    await arb.close()
    again = await make_arbiter(site, database=db, tokens={"ops": OPS})
    await rounds(again, 1)
    (p,) = again.pauses.active
    assert p.scope is None and p.reason == "upgrade" and p.by == "ops"


async def test_reload_swaps_timings_and_refuses_what_needs_a_restart(
        site: SimSite, make_arbiter, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    arb = await make_arbiter(site, tokens={"ops": OPS})
    await rounds(arb, 1)
    path = tmp_path / "arbiter.toml"
    original = path.read_text()
    async with client(arb, path) as c:
        path.write_text(original.replace("interval = 1.0", "interval = 0.5"))
        r = await with_round(arb, c.post("/reload", headers=AUTH))
        assert r.status_code == 200, r.text
        assert "arbiter.interval 1.0 -> 0.5" in r.json()["changes"]
        assert arb.config.arbiter.interval == 0.5 and arb.scheduler.interval == 0.5
        # a field that needs a restart: refused, nothing applied, /status says why
        path.write_text(original.replace("127.0.0.1:8080", "127.0.0.1:8081"))
        r = await c.post("/reload", headers=AUTH)
        assert r.status_code == 409 and "arbiter.listen: changed; it needs a restart" in \
            r.json()["detail"]
        assert arb.config.arbiter.interval == 0.5
        # an invalid file: refused, naming the field path
        path.write_text(original.replace("priority = 90", "priority = 300"))
        r = await c.post("/reload", headers=AUTH)
        assert r.status_code == 409 and "clusters[0].nodes[1].priority" in r.json()["detail"]
        st = (await c.get("/status")).json()["arbiter"]["config"]
        assert st["last_reload"]["ok"] is False and st["last_reload"]["by"] == "ops"
        assert "priority" in st["last_reload"]["error"] and st["path"] == str(path)
        assert (await c.post("/reload")).status_code == 401


async def test_reload_never_drops_a_cluster_that_holds_a_node(
        site: SimSite, make_arbiter, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    arb = await make_arbiter(site, tokens={"ops": OPS}, auto_release=False)
    await rounds(arb, 1)
    site.state("lb2").add("eth0", VIP1, 24)
    await rounds(arb, 4)  # fenced, lb2 held
    path = tmp_path / "arbiter.toml"
    text = path.read_text()
    cluster = text[text.index("[[clusters]]"):]
    renamed = cluster.replace('name = "web"', 'name = "web2"', 1)
    async with client(arb, path) as c:
        path.write_text(text.replace(cluster, renamed))
        r = await c.post("/reload", headers=AUTH)
    assert r.status_code == 409
    assert "clusters: web cannot be removed while it has" in r.json()["detail"]
    assert arb.config.cluster("web") is not None and arb.history.cluster("web").held


async def test_openapi_shows_the_pause_limit_of_the_running_config(
        site: SimSite, make_arbiter) -> None:  # type: ignore[no-untyped-def]
    arb = await make_arbiter(site, tokens={"ops": OPS}, max_pause=3600)
    async with client(arb) as c:
        doc = (await c.get("/openapi.json")).json()
    body = doc["paths"]["/pause"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["properties"]["seconds"]["maximum"] == 3600


async def test_a_reload_reaches_every_unit(
        site: SimSite, make_arbiter, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Issue 33: one place holds the running config. After a reload of a value every
    unit uses (the interval), every object of the Arbiter that has a ``config`` sees
    the new one: a unit a reload could forget fails here by name."""
    arb = await make_arbiter(site, tokens={"ops": OPS})
    await rounds(arb, 1)
    path = tmp_path / "arbiter.toml"
    async with client(arb, path) as c:
        path.write_text(path.read_text().replace("interval = 1.0", "interval = 0.5"))
        r = await with_round(arb, c.post("/reload", headers=AUTH))
        assert r.status_code == 200, r.text
    new = arb.config
    assert new.arbiter.interval == 0.5
    units = {name: unit for name, unit in vars(arb).items()
             if hasattr(type(unit), "config") or "config" in getattr(unit, "__dict__", {})}
    assert {"observer", "fencer", "push", "arp", "keepalived", "track", "view"} <= set(units)
    stale = [name for name, unit in units.items() if unit.config is not new]
    assert stale == [], f"units that kept the old config: {stale}"
