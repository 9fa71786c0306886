"""GET /metrics against a real arbiter on simulated directors: the counts follow what
happened, and the state gauges follow the View. Parsed with prometheus_client's own
parser, so a malformed exposition fails here."""

from __future__ import annotations

import httpx
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from arbiter.api.app import create_app
from arbiter.sim.node import SimSite
from arbiter.sim.scenario import VIP1
from tests.test_cycle import rounds


def samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_metrics_follow_a_split_brain_and_its_fence(site: SimSite, make_arbiter) -> None:
    arb = await make_arbiter(site)
    await rounds(arb, 2)
    site.state("lb2").add("eth0", VIP1, 24)
    await rounds(arb, 1)
    app = create_app(arb)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://arbiter") as c:
        during = samples((await c.get("/metrics")).text)
        await rounds(arb, 4)
        for _ in range(3):
            assert (await c.get("/verdict", params={"cluster": "web", "node": "lb2"})
                    ).status_code == 200
        r = await c.get("/metrics")
    assert r.headers["content-type"] == CONTENT_TYPE_LATEST
    after = samples(r.text)
    assert during[("arbiter_vip_holders", (("cluster", "web"), ("vip", VIP1)))] == 2
    assert during[("arbiter_split_brain_active", (("cluster", "web"),))] == 1
    assert after[("arbiter_vip_holders", (("cluster", "web"), ("vip", VIP1)))] == 1
    assert after[("arbiter_split_brain_active", (("cluster", "web"),))] == 0
    assert after[("arbiter_rounds_total", ())] == arb.view.stats.count == 7
    assert after[("arbiter_round_duration_seconds_count", ())] == 7
    assert after[("arbiter_split_brains_detected_total", (("cluster", "web"),))] == 1
    fence = (("action", "fence_command"), ("cluster", "web"), ("outcome", "ok"))
    assert after[("arbiter_fence_steps_total", fence)] == 1
    assert after[("arbiter_verdicts_served_total", (("verdict", "deny"),))] == 3
    for probe in ("icmp", "ssh", "gateway"):
        assert after[("arbiter_node_reachable",
                      (("cluster", "web"), ("node", "lb1"), ("probe", probe)))] == 1
    assert after[("arbiter_isolated", ())] == 0 and after[("arbiter_tilt", ())] == 0


async def test_metrics_need_a_token_when_reads_are_protected(site: SimSite,
                                                             make_arbiter) -> None:
    arb = await make_arbiter(site, tokens={"ops": "o" * 24})
    arb.config = arb.config.model_copy(update={"api": arb.config.api.model_copy(
        update={"protect_reads": True})})
    app = create_app(arb)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://arbiter") as c:
        assert (await c.get("/metrics")).status_code == 401
        ok = await c.get("/metrics", headers={"Authorization": f"Bearer {'o' * 24}"})
        assert ok.status_code == 200 and "arbiter_rounds_total" in ok.text


def test_the_alert_rules_use_only_metrics_the_arbiter_exports() -> None:
    """deploy/prometheus/arbiter-rules.yml: valid YAML, every rule named and with an
    expression, and every arbiter_ name in it is one /metrics exposes."""
    import re
    from pathlib import Path

    import yaml

    from arbiter.model import History
    from arbiter.round.outputs.metrics import Metrics
    from arbiter.round.outputs.view import View
    from tests.unit.builders import make_config

    path = Path(__file__).resolve().parents[1] / "deploy/prometheus/arbiter-rules.yml"
    rules = [r for g in yaml.safe_load(path.read_text())["groups"] for r in g["rules"]]
    assert rules and all(r["alert"] and r["expr"] for r in rules)
    view = View(make_config(), History())
    m = Metrics(lambda: view, lambda: None)  # with [notify]: the outbox gauges too
    exported = {fam.name for fam in m.registry.collect()}  # the View's gauges included
    used = {n for r in rules for n in re.findall(r"\barbiter_[a-z_]+", r["expr"])}
    assert used and used <= exported | {f"{n}_total" for n in exported}, used - exported


def test_promtool_accepts_the_alert_rules() -> None:
    """Prometheus's own check of deploy/prometheus/arbiter-rules.yml (Debian's
    prometheus package; tests/run.sh installs it)."""
    import os
    import shutil
    import subprocess
    from pathlib import Path

    import pytest

    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("ARBITER_LAB_REQUIRED"):
            pytest.fail("promtool is missing (apt-get install prometheus)")
        pytest.skip("promtool is missing (apt-get install prometheus)")
    rules = Path(__file__).resolve().parents[1] / "deploy/prometheus/arbiter-rules.yml"
    r = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout
