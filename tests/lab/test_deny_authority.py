"""A deny is written only by a round that could act on it (issue 29), on the lab with
exclusive verdicts and track files. Once the arbiter abstains (TILT after a stall;
isolation from its gateways while it still reaches the directors) it writes nothing,
so the node's gate lifts the deny after its TTL and keepalived decides alone.
"""

from __future__ import annotations

import time

import pytest

from tests.lab.labctl import VIP1, Lab, wait_for
from tests.lab.test_exclusive import DENY_TTL, GATE_INTERVAL, MASTER_DOWN, gated_steady, vi1

pytestmark = pytest.mark.lab
GATED = pytest.mark.parametrize("lab", ["active-backup+gate"], indirect=True)


def track_value(lab: Lab) -> str:
    return lab.exec("lb2", "cat /run/arbiter-verdict/VI_1").stdout.strip()


@GATED
def test_no_deny_is_refreshed_during_tilt_so_the_backup_takes_over(lab: Lab) -> None:
    """lb2 is denied during a cut; the arbiter's VM pauses for 6 s (past tilt_after)
    and TILT suspends it; then lb1 stops. Before issue 29 the refresh rewrote the deny
    all through TILT, and nobody held the VIP; now lb2 takes it within the TTL, the
    gate's interval and its master-down."""
    gated_steady(lab)
    lab.fault("vrrp-cut")
    wait_for(lambda: (vi1(lab, "lb2") or {}).get("state") == "FAULT", 10, "lb2 denied")
    lab.signal_arbiter("pause")
    time.sleep(6.0)
    lab.signal_arbiter("resume")
    t0 = time.monotonic()
    lab.fault("keepalived-stop", "lb1")
    wait_for(lambda: "TILT" in lab.verdict("lb2")["reason"] or
             lab.verdict("lb2")["verdict"] == "abstain", 5, "the arbiter in TILT")
    bound = DENY_TTL + GATE_INTERVAL + MASTER_DOWN + 1.0
    wait_for(lambda: lab.holders()[VIP1] == ["lb2"], bound + 5, "lb2 holds the VIP",
             every=0.1)
    took = time.monotonic() - t0
    print(f"\nlb2 holds the VIP {took:.1f}s after the arbiter resumed in TILT "
          f"(bound {bound:.1f}s)")
    assert took <= bound
    assert lab.verdict("lb2")["verdict"] == "abstain"
    assert track_value(lab) == "0"


@GATED
def test_an_arbiter_cut_from_its_gateway_writes_no_deny(lab: Lab) -> None:
    """The arbiter loses its gateway but still reaches the directors over SSH: it
    abstains, and no refresh keeps lb2's deny alive (before issue 29 it did, with no
    time limit at all)."""
    gated_steady(lab)
    lab.fault("vrrp-cut")
    wait_for(lambda: track_value(lab) == "1", 10, "lb2 denied")
    lab.fault("arbiter-gw-cut")
    wait_for(lambda: lab.verdict("lb2")["verdict"] == "abstain", 10, "the arbiter abstains")
    t0 = time.monotonic()
    wait_for(lambda: track_value(lab) == "0", DENY_TTL + GATE_INTERVAL + 3, "the deny lifted")
    took = time.monotonic() - t0
    print(f"\nthe deny lifted {took:.1f}s after the arbiter began to abstain")
    assert took <= DENY_TTL + GATE_INTERVAL + 1.0
    st = lab.api("/status")
    assert all(n["ssh"]["ok"] for n in st["clusters"][0]["nodes"])  # SSH still works
    time.sleep(3)
    assert track_value(lab) == "0"  # and nothing wrote it back
