"""The Grafana dashboard and the alert rules, evaluated by a real Prometheus (issue 22).

Debian's `prometheus` scrapes a real `arbiter serve` on loopback every second. The
arbiter watches two simulated directors in a split brain that its fence cannot end
(the fence command does not exist there), with everything a panel reads switched on:
`[ha]` on PostgreSQL, `[notify]` with a webhook to a local receiver, exclusive
verdicts with track files, keepalived's view, and gates asking /verdict. Then every
query of `deploy/grafana/keepalived-arbiter.json` must return a series through
Prometheus's HTTP API, and the alert rules of `deploy/prometheus/arbiter-rules.yml`
must fire: SplitBrain after its `for: 30s`, ArbiterPaused during a pause.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port, fresh_pg
from tests.simserve import OPS_TOKEN, SimServe

REPO = Path(__file__).resolve().parents[1]
DASHBOARD = REPO / "deploy/grafana/keepalived-arbiter.json"
RULES = REPO / "deploy/prometheus/arbiter-rules.yml"


def panel_queries(cluster: str = ".*") -> list[tuple[str, str]]:
    """Each panel's query as Grafana sends it: the cluster variable substituted (All:
    its allValue, ``.*``; or one cluster)."""
    board = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["expr"].replace("$cluster", cluster))
            for p in board["panels"] for t in p["targets"]]


def test_the_dashboard_imports_as_grafana_users_expect() -> None:
    """Issue 30: an import asks for the data source (__inputs), a cluster variable
    filters the panels, stat panels turn red (or amber) on a bad value, and the VRRP
    instance label no longer collides with Prometheus's own `instance`."""
    board = json.loads(DASHBOARD.read_text())
    assert [i["name"] for i in board["__inputs"]] == ["DS_PROMETHEUS"]
    names = {v["name"]: v for v in board["templating"]["list"]}
    assert names["cluster"]["includeAll"] and names["cluster"]["allValue"] == ".*"
    stats = [p for p in board["panels"] if p["type"] == "stat"]
    for p in stats:
        steps = p["fieldConfig"]["defaults"]["thresholds"]["steps"]
        assert steps[0]["color"] == "green" and len(steps) >= 2, p["title"]
    split = next(p for p in stats if p["title"] == "Split brains active")
    assert split["fieldConfig"]["defaults"]["thresholds"]["steps"][1] == \
        {"color": "red", "value": 1}
    exprs = " ".join(e for _, e in panel_queries())
    assert "by (node, vrrp_instance, state)" in exprs and "{{instance}}" not in json.dumps(
        [p for p in board["panels"] if p["title"] == "keepalived state"])
    assert exprs.count('cluster=~".*"') >= 8


@pytest.fixture
def pg_url() -> str:
    return fresh_pg()


class Receiver:
    """A webhook endpoint on loopback that answers 200 and counts the POSTs."""

    def __init__(self) -> None:
        self.posts: list[bytes] = []
        posts = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the http.server name)
                posts.append(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Prometheus:
    """Debian's prometheus on loopback, scraping ``target`` every second."""

    def __init__(self, tmp_path: Path, target: str):
        binary = shutil.which("prometheus")
        if binary is None:
            pytest.fail("prometheus is missing (apt-get install prometheus; "
                        "deploy/bootstrap.sh --test installs it)")
        cfg = tmp_path / "prometheus.yml"
        cfg.write_text(f"""global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: ["{RULES}"]
scrape_configs:
  - job_name: keepalived-arbiter
    static_configs: [{{targets: ["{target}"]}}]
""")
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = tmp_path / "prometheus.log"
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                [binary, f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                 f"--web.listen-address={self.url.removeprefix('http://')}"],
                stdout=out, stderr=subprocess.STDOUT)
        self.http = httpx.Client(base_url=self.url, timeout=5)
        self.wait(lambda: self.http.get("/-/ready").status_code == 200, 30, "prometheus ready")

    def query(self, expr: str) -> list[dict]:
        r = self.http.get("/api/v1/query", params={"query": expr})
        assert r.status_code == 200, (expr, r.text)  # a bad query is a 400 with its error
        return r.json()["data"]["result"]

    def alerts(self) -> dict[str, str]:
        """Alert name -> its state (pending or firing)."""
        return {a["labels"]["alertname"]: a["state"]
                for a in self.http.get("/api/v1/alerts").json()["data"]["alerts"]}

    def wait(self, pred, timeout: float, what: str):  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if (got := pred()):
                    return got
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                pytest.fail(f"prometheus exited: {self.log.read_text()[-2000:]}")
            time.sleep(0.5)
        pytest.fail(f"timed out after {timeout:g} s waiting for {what}")

    def close(self) -> None:
        self.http.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def test_every_panel_returns_a_series_and_the_alerts_fire(tmp_path: Path, pg_url: str) -> None:
    receiver = Receiver()
    extra = f"""
[ha]
name = "a1"
members = ["a1"]
lease_ttl = 4.0
renew_every = 1.0

[notify]
send_every = 0.5
webhooks = [{{ url = "{receiver.url}" }}]
"""

    def edit(text: str) -> str:
        text = text.replace('database = "sqlite', f'database = "{pg_url}"\n# was "sqlite')
        # the cluster: exclusive verdicts through track files, and a fence that fails
        return text.replace('name = "web"\n', 'name = "web"\nverdict = "exclusive"\n'
                            'track_files = true\nfence_levels = ["ssh"]\n'
                            'fence_command = "no-such-fence"\n', 1)

    prom = None
    try:
        with SimServe(tmp_path, extra=extra, edit=edit) as s:
            api = httpx.Client(base_url=s.url, timeout=5)
            prom = Prometheus(tmp_path, s.listen)
            prom.wait(lambda: prom.query('up{job="keepalived-arbiter"} == 1'), 30,
                      "the arbiter scraped")
            st = prom.wait(lambda: (r := api.get("/status").json())["clusters"][0][
                "split_vips"] and r, 30, "the split brain seen")
            assert st["arbiter"]["ha"]["name"] == "a1"

            # every panel query returns a series (a gate asks /verdict meanwhile)
            def empty() -> list[str]:
                for node in ("lb1", "lb2"):
                    api.get("/verdict", params={"cluster": "web", "node": node})
                return [f"{title}: {expr}" for title, expr in panel_queries()
                        if not prom.query(expr)]

            # the cluster variable's values, and the panels filtered to one cluster
            r = prom.http.get("/api/v1/label/cluster/values",
                              params={"match[]": "arbiter_vip_holders"})
            assert r.json()["data"] == ["web"], r.text
            assert prom.query(dict(panel_queries("web"))["VIP holders"])
            missing: list[str] = []

            def all_answer() -> bool:
                missing[:] = empty()
                return not missing

            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not all_answer():
                time.sleep(1)
            assert not missing, f"panel queries without a series: {missing}"
            assert receiver.posts, "the webhook received nothing"

            # the alert rules: SplitBrain fires once the split has lasted 30 s
            prom.wait(lambda: prom.alerts().get("SplitBrain") == "firing", 60,
                      "the SplitBrain alert to fire")
            assert prom.alerts().get("FenceStepFailed") == "firing"
            assert "ArbiterPaused" not in prom.alerts()
            r = api.post("/pause", json={"seconds": 600, "reason": "dashboard test"},
                         headers={"Authorization": f"Bearer {OPS_TOKEN}"})
            assert r.status_code == 200, r.text
            prom.wait(lambda: prom.alerts().get("ArbiterPaused") == "firing", 20,
                      "the ArbiterPaused alert to fire")
            api.close()
    finally:
        if prom is not None:
            prom.close()
        receiver.close()


def test_the_dashboard_file_is_what_build_py_writes() -> None:
    """The JSON is generated: a panel edited by hand would drift from build.py."""
    import runpy

    build = runpy.run_path(str(REPO / "deploy/grafana/build.py"))["build"]
    assert json.loads(DASHBOARD.read_text()) == build(), \
        "run: python deploy/grafana/build.py"
