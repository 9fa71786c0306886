"""Notifications end to end, against real servers: `arbiter serve` on simulated
directors in a split brain, an SMTP server (aiosmtpd) that receives and parses
the mail, and an HTTP receiver that answers 500 before it accepts. Then a
restart of the arbiter while rows are pending: they are sent after it."""

from __future__ import annotations

import email
import email.policy
import json
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.conftest import free_port
from tests.simserve import OPS_TOKEN, SimServe, cli


class Mailbox:
    """An aiosmtpd handler keeping every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append(email.message_from_bytes(
            envelope.content, policy=email.policy.default))  # type: ignore[arg-type]
        return "250 OK"


class Receiver:
    """A webhook receiver: answers 500 to the first ``fail_first`` posts (and to all
    while ``failing``), 200 after; keeps every post with its answer."""

    def __init__(self, fail_first: int) -> None:
        self.fail_first = fail_first
        self.failing = False
        self.posts: list[tuple[int, dict[str, Any]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fail = outer.failing or len(outer.posts) < outer.fail_first
                code = 500 if fail else 200
                outer.posts.append((code, body))
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def accepted(self) -> list[dict[str, Any]]:
        return [b for code, b in self.posts if code == 200]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def wait(what: str, fn: Any, timeout: float = 40) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (res := fn()):
            return res
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def servers() -> Iterator[tuple[Mailbox, Controller, Receiver]]:
    box = Mailbox()
    smtp = Controller(box, hostname="127.0.0.1", port=free_port())
    smtp.start()
    hook = Receiver(fail_first=2)
    try:
        yield box, smtp, hook
    finally:
        smtp.stop()
        hook.close()


def status(cfg: Path) -> dict[str, Any]:
    r = cli("status", "-c", str(cfg), "--json")
    return json.loads(r.stdout) if r.stdout.startswith("{") else {}


def test_split_brain_is_mailed_and_posted_with_retries_and_survives_a_restart(
        tmp_path: Path, servers: tuple[Mailbox, Controller, Receiver]) -> None:
    box, smtp, hook = servers
    notify = f"""
[notify]
smtp_host = "127.0.0.1"
smtp_port = {smtp.port}
mail_from = "arbiter@example.test"
mail_to = ["oncall@example.test"]
send_every = 0.2
backoff_initial = 0.2
backoff_max = 1.0
timeout = 3

[[notify.webhooks]]
name = "ops"
url = "http://127.0.0.1:{hook.port}/hook"
format = "json"
"""
    with SimServe(tmp_path, notify) as served:
        cfg = served.cfg
        # the split brain, its fence and the hold, by mail and by webhook
        events = lambda: {b["event"] for b in hook.accepted()}  # noqa: E731
        wait("split_brain, fence_done and node_held posted",
             lambda: {"split_brain", "fence_done"} <= events())
        first = hook.posts[0][1]
        assert hook.posts[0][0] == 500 and hook.posts[1][0] == 500
        # the retries carried the same dedup key as the delivery that was accepted
        same = [code for code, b in hook.posts if b["dedup_key"] == first["dedup_key"]]
        assert same.count(200) == 1 and same[0] == 500, same
        split = next(b for b in hook.accepted() if b["event"] == "split_brain")
        assert split["cluster"] == "web" and split["incident"]["kind"] == "split_brain"
        assert split["dedup_key"].endswith("/split_brain/ops")
        assert split["incident"]["url"].endswith(f"/incidents/{split['incident']['id']}")
        incident = split["incident"]["id"]

        mail = wait("the split-brain mail", lambda: next(
            (m for m in box.messages if "SPLIT BRAIN" in m["Subject"]), None))
        body = mail.get_content()
        assert mail["To"] == "oncall@example.test"
        assert str(mail["Subject"]).strip().startswith("[arbiter] SPLIT BRAIN in web")
        assert f"/incidents/{incident}" in body and "Cluster:" in body
        fenced = wait("the fence mail", lambda: next(
            (m for m in box.messages if m["X-Arbiter-Event"] == "fence_done"), None))
        assert "Survivor rule and reason:" in fenced.get_content()

        st = wait("nothing pending", lambda: (lambda s: s if s.get("arbiter", {}).get(
            "notify", {}).get("pending") == 0 else None)(status(cfg)))
        n = st["arbiter"]["notify"]
        assert n["dead"] == 0 and n["channels"]["ops"]["failed"] >= 2
        assert n["channels"]["smtp"]["sent"] >= 2
        metrics = subprocess.run(["curl", "-s", "-H", f"Authorization: Bearer {OPS_TOKEN}",
                                  served.url + "/metrics"], capture_output=True, text=True,
                                 timeout=10).stdout
        assert re.search(r'arbiter_notification_deliveries_total\{channel="ops",'
                         r'outcome="failed"\} [2-9]', metrics), metrics[-2000:]
        assert 'arbiter_outbox_dead{channel="ops"}' not in metrics or \
            'arbiter_outbox_dead{channel="ops"} 0.0' in metrics

        # the receiver fails from now on: the release's notifications stay pending
        hook.failing = True
        posted = len(hook.posts)
        done = cli("release", str(incident), "--reason", "checked lb2", "-c", str(cfg))
        assert done.returncode == 0, done.stdout + done.stderr
        wait("the release tried and refused", lambda: any(
            b["event"] == "node_released" for _, b in hook.posts[posted:]))
        pending = wait("a pending release notification", lambda: (
            lambda s: s if s.get("arbiter", {}).get("notify", {}).get("pending", 0) > 0
            else None)(status(cfg)))
        assert "HTTP 500" in pending["arbiter"]["notify"]["channels"]["ops"]["last_error"]
        served.stop_serve()

        # a restart: the rows written before it are delivered after it, once each
        hook.failing = False
        served.start_serve()
        released = wait("node_released delivered after the restart", lambda: [
            b for b in hook.accepted() if b["event"] == "node_released"])
        assert len(released) == 1 and released[0]["nodes"] == ["lb2"]
        keys = [b["dedup_key"] for b in hook.accepted()]
        assert len(keys) == len(set(keys)), keys  # nothing accepted twice


def test_notify_test_reports_each_channel(
        tmp_path: Path, servers: tuple[Mailbox, Controller, Receiver]) -> None:
    box, smtp, hook = servers
    hook.fail_first = 0
    closed = free_port()  # nothing listens there: refused at once
    cfg = tmp_path / "arbiter.toml"
    cfg.write_text(f'''
[arbiter]
database = "sqlite:///{tmp_path}/a.db"
gateways = ["127.0.0.1"]
[ssh]
username = "root"
client_keys = ["{tmp_path}/key"]
known_hosts = "{tmp_path}/known_hosts"
[[clusters]]
name = "web"
vips = ["192.0.2.10"]
  [[clusters.nodes]]
  name = "lb1"
  address = "127.0.0.2"
  [[clusters.nodes]]
  name = "lb2"
  address = "127.0.0.3"
[notify]
smtp_host = "127.0.0.1"
smtp_port = {smtp.port}
mail_from = "arbiter@example.test"
mail_to = ["oncall@example.test"]
timeout = 3
[[notify.webhooks]]
url = "http://127.0.0.1:{hook.port}/"
format = "alertmanager"
[[notify.webhooks]]
name = "down"
url = "http://127.0.0.1:{closed}/"
format = "slack"
''')
    r = cli("notify", "test", "-c", str(cfg))
    assert r.returncode == 1, r.stdout + r.stderr
    lines = dict(line.split(None, 1) for line in r.stdout.splitlines()[:3])
    assert lines["smtp"] == "ok" and lines["webhook-1"] == "ok"
    assert lines["down"].startswith("FAILED: HTTP: ConnectError"), lines
    assert "2 of 3 channel(s) delivered" in r.stdout
    assert [m["X-Arbiter-Event"] for m in box.messages] == ["test"]
    (body,) = hook.accepted()
    assert body["version"] == "4" and body["alerts"][0]["labels"]["alertname"] == "ArbiterTest"
