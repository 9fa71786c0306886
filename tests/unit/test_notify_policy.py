"""The pure parts of notifications: which incident changes raise which events, the
backoff, the dedup key, and each channel's shape. No I/O."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from arbiter.config.notify import DEFAULT_EVENTS
from arbiter.notify import render
from arbiter.policy import notify_events as ev
from arbiter.store.outbox import backoff

AT = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
INCIDENT = {"id": 7, "kind": "split_brain", "state": "fenced", "vips": ["192.0.2.10"],
            "survivor": "lb1", "victims": ["lb2"], "held_nodes": ["lb2"],
            "reason": "lb1 survives: higher priority (100 > 90)"}


@pytest.mark.parametrize(("kind", "src", "dst", "event"), [
    ("split_brain", "fencing", "fenced", ev.EventKind.FENCE_DONE),
    ("split_brain", "fencing", "fence_failed", ev.EventKind.FENCE_FAILED),
    ("split_brain", "fence_failed", "fenced", ev.EventKind.FENCE_DONE),
    ("split_brain", "fenced", "held", ev.EventKind.NODE_HELD),
    ("split_brain", "held", "held", None),
    ("split_brain", "held", "resolved", ev.EventKind.SPLIT_BRAIN_RESOLVED),
    ("split_brain", "open", "fencing", None),
    ("split_brain", "open", "decided", None),
    ("arbiter_isolated", "open", "resolved", ev.EventKind.ARBITER_ISOLATED_RESOLVED),
    ("orphan_vip", "open", "resolved", ev.EventKind.ORPHAN_VIP_RESOLVED),
])
def test_state_changes_raise_events(kind: str, src: str, dst: str,
                                    event: ev.EventKind | None) -> None:
    assert ev.on_change(kind, src, dst) is event


def test_every_default_problem_has_its_resolution_in_the_defaults() -> None:
    resolved = {ev.RESOLVES[e] for e in DEFAULT_EVENTS if e in ev.RESOLVES}
    problems = {e for e in DEFAULT_EVENTS if e not in ev.RESOLVES}
    assert problems <= resolved, problems - resolved


@given(st.integers(1, 200), st.floats(0.01, 100), st.floats(1, 10_000),
       st.floats(0, 1))
def test_backoff_is_bounded_and_jittered(attempt: int, initial: float, cap: float,
                                         r: float) -> None:
    cap = max(cap, initial)
    wait = backoff(attempt, initial, cap, lambda: r)
    base = min(cap, initial * 2 ** (attempt - 1))
    assert base / 2 <= wait <= base + 1e-9
    assert wait <= cap + 1e-9


@given(st.integers(1, 30), st.floats(0.01, 10))
def test_backoff_never_shrinks_from_one_try_to_the_next(attempt: int, initial: float) -> None:
    fixed = lambda: 0.5  # noqa: E731 - the same draw both times
    assert backoff(attempt + 1, initial, 1e9, fixed) >= backoff(attempt, initial, 1e9, fixed)


def test_dedup_keys_differ_by_channel_event_and_occurrence_only() -> None:
    k = ev.dedup_key("incident-7", "event-3", ev.EventKind.FENCE_DONE, "ops")
    assert k == ev.dedup_key("incident-7", "event-3", ev.EventKind.FENCE_DONE, "ops")
    others = {ev.dedup_key("incident-7", "event-3", ev.EventKind.FENCE_DONE, "smtp"),
              ev.dedup_key("incident-7", "event-4", ev.EventKind.FENCE_DONE, "ops"),
              ev.dedup_key("incident-7", "event-3", ev.EventKind.NODE_HELD, "ops"),
              ev.dedup_key("incident-8", "event-3", ev.EventKind.FENCE_DONE, "ops")}
    assert k not in others and len(others) == 4


def payload(event: ev.EventKind) -> dict:
    p = ev.payload(event, AT, "lb2 fenced: keepalived stopped", cluster="web",
                   incident=INCIDENT, base_url="http://arb:8080/", arbiter=None)
    return {**p, "dedup_key": "incident-7/event-3/fence_done/smtp"}


def test_the_mail_names_the_cluster_the_rule_and_links_the_incident() -> None:
    msg = render.mail(payload(ev.EventKind.FENCE_DONE), "a@x.test", ["b@x.test", "c@x.test"])
    text = msg.get_content()
    assert msg["Subject"] == "[arbiter] web: fenced lb2; lb1 keeps 192.0.2.10"
    assert msg["To"] == "b@x.test, c@x.test"
    assert msg["X-Arbiter-Dedup-Key"] == "incident-7/event-3/fence_done/smtp"
    assert "Cluster:  web" in text or "Cluster:   web" in text
    assert "lb1 survives: higher priority (100 > 90)" in text
    assert "http://arb:8080/incidents/7" in text
    assert msg.get_content_type() == "text/plain"


def test_alertmanager_resolution_closes_the_alert_it_opened() -> None:
    firing = render.alertmanager(payload(ev.EventKind.SPLIT_BRAIN))
    resolved = render.alertmanager(payload(ev.EventKind.SPLIT_BRAIN_RESOLVED))
    assert firing["version"] == "4" and firing["status"] == "firing"
    assert resolved["status"] == "resolved"
    a, b = firing["alerts"][0], resolved["alerts"][0]
    assert a["labels"] == b["labels"] and a["fingerprint"] == b["fingerprint"]
    assert a["labels"]["alertname"] == "ArbiterSplitBrain"
    assert a["endsAt"] == render.ZERO_TIME and b["endsAt"] == AT.isoformat()
    assert {"status", "labels", "annotations", "startsAt", "endsAt", "generatorURL",
            "fingerprint"} <= set(a)


def test_slack_is_one_text_field_with_the_link() -> None:
    body = render.slack(payload(ev.EventKind.FENCE_FAILED))
    assert set(body) == {"text"}
    assert "FENCE FAILED in web" in body["text"]
    assert "<http://arb:8080/incidents/7|incident #7>" in body["text"]


def test_json_is_our_own_payload_with_the_dedup_key() -> None:
    p = payload(ev.EventKind.NODE_HELD)
    assert render.webhook_body(p, "json") is p
    assert p["version"] == ev.PAYLOAD_VERSION and p["severity"] == "warning"
    assert p["status"] == "firing" and p["dedup_key"]
