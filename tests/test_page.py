"""The status page in a real browser: headless Chromium (Debian's package) driven by
playwright, against `arbiter serve` on simulated directors in a split brain. The
page must follow the cluster from the split brain to its end without a reload,
load nothing from elsewhere, and escape what it shows."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.simserve import SimServe, cli
from tests.test_notify import wait

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    with SimServe(tmp_path) as s:
        yield s.cfg, s.url


def word(page) -> str:  # type: ignore[no-untyped-def]
    return page.locator('section[data-cluster="web"] .word').inner_text()


def test_the_page_follows_a_split_brain_to_its_end_without_a_reload(
        served: tuple[Path, str], tmp_path: Path) -> None:
    if not os.path.exists(CHROMIUM):
        if os.environ.get("ARBITER_LAB_REQUIRED"):
            pytest.fail(f"{CHROMIUM} is missing (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    cfg, url = served
    outside: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("request", lambda r: None if r.url.startswith(url) or
                    r.url.startswith("data:") else outside.append(r.url))
            wait("the arbiter answering", lambda: cli("status", "-c", str(cfg)).returncode
                 in (0, 1), 30)
            page.goto(url + "/")
            page.evaluate("window.__loaded_once = true")  # gone if the page reloads
            # the split brain is fenced, and lb2 is held for an operator
            wait("NEEDS-OPERATOR on the page", lambda: word(page) == "NEEDS-OPERATOR", 40)
            assert page.evaluate("window.__loaded_once") is True
            assert "lb2" in page.locator('section[data-cluster="web"] table').inner_text()
            assert page.locator("details .timeline li").count() >= 2  # the timeline
            page.screenshot(path=str(tmp_path / "split-brain-held.png"), full_page=True)

            incident = re.search(r"incident #(\d+)",
                                 page.locator('section[data-cluster="web"]').inner_text())
            assert incident is not None
            done = cli("release", incident.group(1), "--reason", "checked", "-c", str(cfg))
            assert done.returncode == 0, done.stdout + done.stderr
            wait("OK on the page", lambda: word(page) == "OK", 40)
            assert page.evaluate("window.__loaded_once") is True  # still no reload
            assert page.title() == "keepalived-arbiter: OK"
            page.screenshot(path=str(tmp_path / "split-brain-resolved.png"), full_page=True)
            if os.environ.get("ARBITER_SCREENSHOT_DIR"):  # the README's picture
                shutil.copy(tmp_path / "split-brain-held.png",
                            Path(os.environ["ARBITER_SCREENSHOT_DIR"]) / "status-page.png")
        finally:
            browser.close()
    assert outside == [], outside  # nothing from outside the arbiter


def test_every_value_is_escaped() -> None:
    from arbiter.web.page import _env

    evil = "<script>alert(1)</script>"
    html = _env.get_template("live.html.j2").render(
        status={"arbiter": {"last_round": {"finished_at": None, "duration_ms": 0, "count": 0},
                            "dry_run": False, "ha": None},
                "clusters": [{"name": "web", "state": "ok", "state_reason": evil,
                              "nodes": [], "held": []}]},
        overall="ok", advice={"ok": evil}, arbiter_problems=[evil],
        open_incidents=[{"id": 1, "kind": "split_brain", "cluster": "web", "state": "open",
                         "held_nodes": [], "reason": evil}],
        recent=[{"id": 1, "kind": "split_brain", "cluster": "web", "state": "open",
                 "opened_at": "2026-01-01T00:00:00", "timeline": [
                     {"at": "2026-01-01T00:00:00.000", "state": "open", "message": evil}]}],
        now="now", age=lambda ts: "never", yes=str, role=str, gateways=str)
    assert evil not in html
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;") == 5
