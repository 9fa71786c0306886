"""A view that keeps failing never means "allow everyone" (issue 29). Pure.

Each trigger shows on the arbiter as a watch error that persists: a dump of a shape
the parser does not know, a dump outside /tmp (systemd's PrivateTmp: "no dump within
0.4 s"), a pid file elsewhere ("keepalived is not running" while it runs), a sudoers
line that does not match ("no dump within 0.4 s"). Once it has lasted FAILING_AFTER
while keepalived runs, the cluster is on the documented fallback rule (deny every
backup while the holder is healthy), with a note and a ``view_failing`` incident.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from arbiter.model import IncidentKind, KeepalivedView, Verdict
from arbiter.policy.effects import ChangeState, OpenIncident
from arbiter.policy.view_health import FAILING_AFTER
from tests.unit.builders import VIP1, Driver, effects_of, make_config, node

TRIGGERS = {
    "unknown dump shape": "keepalived dump has the wrong shape at 0.data.vrid: Input "
                          "should be a valid integer",
    "dump outside /tmp (PrivateTmp)": "no dump within 0.4 s of the signal (no new "
                                      "/tmp/keepalived.json)",
    "pid file elsewhere": "keepalived is not running (no live pid in /run/keepalived.pid)",
    "sudoers mismatch": "no dump within 0.4 s of the signal (sudoers: pkill -36 -F "
                        "/run/keepalived.pid?)",
}


def exclusive(**kw: object) -> Driver:
    cfg = make_config(**kw)
    web = cfg.clusters[0].model_copy(update={"verdict": "exclusive"})
    return Driver(cfg.model_copy(update={"clusters": [web]}))


def failing(d: Driver, error: str, since: float) -> KeepalivedView:
    return KeepalivedView(error=error, failing_since=d.now - timedelta(seconds=since))


@pytest.mark.parametrize("trigger", TRIGGERS)
def test_a_view_that_keeps_failing_puts_the_cluster_on_the_fallback_rule(trigger: str) -> None:
    d = exclusive()
    err = TRIGGERS[trigger]
    # lb2's watch fails, lb1's as well (the same misconfiguration on every node)
    ca = None
    for k in range(4):
        lb1 = replace(node("lb1", (VIP1,)), keepalived=failing(d, err, FAILING_AFTER + k))
        lb2 = replace(node("lb2"), keepalived=failing(d, err, FAILING_AFTER + k))
        ca = d.web(d.round(lb1, lb2))
    assert ca is not None
    verdict, reason = ca.node("lb2").for_vip(VIP1)
    assert verdict is Verdict.DENY, reason
    assert "keepalived's view failing" in reason and err in reason
    assert any("fallback rule" in n for n in ca.notes)
    opened = [e for a in d.log for e in effects_of(d.web(a), OpenIncident)
              if e.kind is IncidentKind.VIEW_FAILING]
    assert len(opened) == 1  # once, after confirm_rounds
    # the view works again: the view rule is back, the incident resolved
    inc = d.history.cluster("web").view_fail_incident
    assert inc is not None
    ok = d.web(d.round(node("lb1", (VIP1,)), replace(node("lb2"), keepalived=None)))
    assert any(isinstance(e, ChangeState) and e.incident == inc
               for e in effects_of(ok, ChangeState))


def test_a_short_error_or_an_explained_one_changes_nothing() -> None:
    d = exclusive()
    err = TRIGGERS["sudoers mismatch"]
    for since, ka in ((FAILING_AFTER - 1, True), (FAILING_AFTER + 30, False)):
        lb1 = replace(node("lb1", (VIP1,)), keepalived=KeepalivedView(at=d.now))
        lb2 = replace(node("lb2", ka=ka), keepalived=failing(d, err, since))
        ca = d.web(d.round(lb1, lb2))
        assert not any("failing" in n for n in ca.notes)
        assert "view failing" not in ca.node("lb2").for_vip(VIP1)[1]
    assert d.history.cluster("web").view_fail_incident is None


def test_a_reactive_cluster_opens_no_incident_for_it() -> None:
    d = Driver(make_config())
    err = TRIGGERS["unknown dump shape"]
    for _ in range(4):
        d.round(node("lb1", (VIP1,)), replace(node("lb2"), keepalived=failing(d, err, 60)))
    assert d.history.cluster("web").view_fail_incident is None
