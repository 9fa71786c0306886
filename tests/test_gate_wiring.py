"""Exclusive verdicts through the API (issue 11), on simulated directors: per-VIP
answers, the gate's last question in /status, and the warning for a silent gate."""

from __future__ import annotations

import logging

import httpx
import pytest

from arbiter.api.app import create_app, with_fast_verdict
from arbiter.config import Config
from arbiter.round.outputs.gate_log import GateLog, gate_deadline
from arbiter.sim.node import SimSite
from arbiter.sim.scenario import VIP1


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def exclusive(cfg: Config) -> Config:
    # the simulated directors stream no keepalived dump: the rule that holds every
    # backup (keepalived's view is tested in tests/unit/test_vrrp_policy.py and the lab)
    web = cfg.clusters[0].model_copy(update={"verdict": "exclusive",
                                             "keepalived_view": False})
    return cfg.model_copy(update={"clusters": [web]})


@pytest.fixture(params=[False, True], ids=["app", "served"])
async def gated(site: SimSite, make_arbiter, request):  # type: ignore[no-untyped-def]
    arb = await make_arbiter(site)
    arb.config = exclusive(arb.config)
    clock = FakeClock()
    arb.gates = GateLog(clock)
    await arb.run_round()
    app = create_app(arb)
    app = with_fast_verdict(app) if request.param else app
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://arbiter") as c:
        yield arb, c, clock


async def test_backup_denied_while_the_holder_is_healthy(gated) -> None:  # type: ignore[no-untyped-def]
    arb, c, _ = gated
    v = (await c.get("/verdict", params={"cluster": "web", "node": "lb2", "vip": VIP1})).json()
    assert v["verdict"] == "deny"
    assert v["reason"].startswith(f"deny: lb1 holds {VIP1} and is healthy (keepalived running")
    v = (await c.get("/verdict", params={"cluster": "web", "node": "lb1"})).json()
    assert v["verdict"] == "allow"


async def test_status_shows_each_gate_and_warns_about_a_silent_one(gated, caplog) -> None:  # type: ignore[no-untyped-def]
    arb, c, clock = gated
    for _ in range(2):  # the second answer comes from the verdict cache: noted all the same
        await c.get("/verdict", params={"cluster": "web", "node": "lb1", "format": "text"})
    clock.t += 0.8
    (web,) = (await c.get("/status")).json()["clusters"]
    gates = {n["name"]: n["gate"] for n in web["nodes"]}
    assert gates["lb1"]["summary"] == "gate: wired, last asked 0.8 s ago, allow"
    assert gates["lb2"]["summary"] == "gate: never asked" and not gates["lb2"]["wired"]
    # early on a silent gate is no warning: it may simply not have asked yet
    assert web["warnings"] == [] and web["verdict_mode"] == "exclusive"

    clock.t += gate_deadline(arb.config)
    with caplog.at_level(logging.INFO, logger="arbiter.gate"):
        arb.gates.log_changes(arb.config)
        arb.gates.log_changes(arb.config)  # logged once, not every run
    (web,) = (await c.get("/status")).json()["clusters"]
    assert len(web["warnings"]) == 2  # lb1 went silent too: it last asked long ago
    assert "web/lb2" in web["warnings"][1] and "never asked" in web["warnings"][1]
    assert web["state"] == "degraded" and "arbiter-gate" in web["state_reason"]
    assert [r.levelname for r in caplog.records].count("WARNING") == 2
    await c.get("/verdict", params={"cluster": "web", "node": "lb2"})
    with caplog.at_level(logging.INFO, logger="arbiter.gate"):
        arb.gates.log_changes(arb.config)
    assert "web/lb2: its arbiter-gate asks again" in caplog.text


def test_arbiter_check_reports_each_gate_from_the_running_arbiter(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`arbiter check` on an exclusive cluster reads the running `arbiter serve`'s
    /status (the only process that knows who asked) and prints each gate."""
    import urllib.request

    from arbiter import config as config_mod
    from arbiter.cli.check import gate_report
    from bench.verdict import arbiter_server

    toml = 'verdict = "exclusive"\nkeepalived_view = false\n'  # the sim streams no dump
    with arbiter_server(tmp_path, cluster_toml=toml) as (port, _):
        cfg = config_mod.load(tmp_path / "arbiter.toml")
        before = gate_report(cfg)
        url = f"http://127.0.0.1:{port}/verdict?cluster=web&node=lb2&vip={VIP1}&format=text"
        with urllib.request.urlopen(url, timeout=5) as r:
            assert r.read() == b"deny\n"
        after = gate_report(cfg)
    assert f"127.0.0.1:{port}/status" in before[0]
    assert "  web/lb2: gate: never asked" in before
    assert any(line.startswith("  web/lb2: gate: wired, last asked") and line.endswith("deny")
               for line in after), after
    cfg_down = config_mod.load(tmp_path / "arbiter.toml")  # nothing listens any more
    assert "cannot tell whether the gates are wired" in " ".join(gate_report(cfg_down))
