"""Several arbiters on the lab (issue 12): three arbiter hosts and a PostgreSQL host,
real keepalived, sshd, arbiter-ssh-wrapper and arbiter-gate (asking all three).

Verdicts are reactive here, so a VRRP cut makes a real split brain for the arbiters
to fence. Lease: the defaults, 5 s, renewed every second.
"""

from __future__ import annotations

import time

import pytest

from tests.lab.labctl import VIP1, Lab, wait_for

pytestmark = pytest.mark.lab
HA = "active-backup+gate+ha3"
LEASE_TTL = 5.0  # [ha] lease_ttl's default


def start_all(lab: Lab, first_env: dict[str, str] | None = None) -> None:
    """Start the three arbiters, arb first: it takes the lease and leads."""
    lab.set_cluster(verdict="reactive")
    lab.set_arbiter(fence_retry_after=2.0, auto_release=False)
    wait_for(lambda: lab.holders()[VIP1] == ["lb1"], 20, "keepalived to elect lb1")
    lab.start_arbiter("arb", env=first_env)
    wait_for(lambda: leader(lab, "arb") == "arb", 10, "arb to lead")
    for h in ("arb2", "arb3"):
        lab.start_arbiter(h)

    def ok() -> bool:
        (web,) = lab.api("/status")["clusters"]
        views = lab.api("/status")["arbiter"]["ha"]["views"]
        return (web["holders"] == {VIP1: ["lb1"]} and
                all(n["health"] == "healthy" for n in web["nodes"]) and
                sum(v["counts"] for v in views.values()) == 2)

    wait_for(ok, 20, "steady state, every arbiter's view counted")


def leader(lab: Lab, ask: str) -> str | None:
    try:
        return lab.api("/status", ask)["arbiter"]["ha"]["shards"]["default"]["leader"]
    except (RuntimeError, ValueError, KeyError):
        return None


def leading(lab: Lab, host: str) -> bool:
    try:
        return lab.api("/status", host)["arbiter"]["ha"]["shards"]["default"]["leading"]
    except (RuntimeError, ValueError, KeyError):
        return False


def split_incidents(lab: Lab, ask: str) -> list[dict]:
    return [lab.api(f"/incidents/{i['id']}", ask) for i in lab.incidents("split_brain", ask)]


def fence_commands(incident: dict) -> list[dict]:
    return [a for a in incident["fence_attempts"] if a["step"] == "fence_command"]


@pytest.mark.parametrize("lab", [HA], indirect=True)
def test_leader_killed_during_a_vrrp_cut_a_follower_fences_once(lab: Lab) -> None:
    start_all(lab)
    lab.fault("vrrp-cut")
    lab.kill_arbiter("arb")  # at once: the split brain is the followers' to handle
    killed = time.monotonic()
    new = wait_for(lambda: next((h for h in ("arb2", "arb3") if leading(lab, h)), None),
                   LEASE_TTL + 5, "a follower to take over")
    took_over = time.monotonic() - killed
    (inc,) = wait_for(lambda: [i for i in split_incidents(lab, new)
                               if i["state"] in ("fenced", "held")], 20, "the split fenced")
    assert took_over <= LEASE_TTL + 2.5, took_over  # the TTL, a renewal, a round
    assert inc["term"] >= 2 and inc["victims"] == ["lb2"]
    assert len(fence_commands(inc)) == 1
    assert inc["reason"].startswith("2 of 3 arbiters see lb1 and lb2 both holding"), inc
    assert lab.holders()[VIP1] == ["lb1"]
    wait_for(lambda: not lab.keepalived_running("lb2"), 5, "lb2's keepalived to exit")
    assert len(lab.incidents("split_brain", new)) == 1


@pytest.mark.parametrize("lab", [HA], indirect=True)
def test_a_leader_paused_between_decision_and_fence_is_refused_by_the_node(lab: Lab) -> None:
    marker = lab.dir / "arb" / "before-fence"
    start_all(lab, first_env={"ARBITER_FAILPOINT_BEFORE_FENCE_COMMAND": str(marker)})
    lab.fault("vrrp-cut")
    wait_for(marker.exists, 20, "arb to decide and reach its fence command")
    lab.signal_arbiter("pause", "arb")  # decided, lease checked, command not yet sent
    try:
        new = wait_for(lambda: next((h for h in ("arb2", "arb3") if leading(lab, h)), None),
                       LEASE_TTL + 5, "a follower to take over")
        # the new leader announces its term to every node as it takes over
        wait_for(lambda: lab.exec("lb2", "cat /run/arbiter/term").stdout.strip() >= "2", 10,
                 "the new term announced to lb2")
    finally:
        marker.unlink(missing_ok=True)
        lab.signal_arbiter("resume", "arb")
    # (its track file writes, in flight when it was paused, are refused the same way)
    wait_for(lambda: "refused for a stale term" in lab.arbiter_log("arb"), 10,
             "the old leader's late fence refused by lb2's wrapper")
    assert "stale term 1 <" in lab.arbiter_log("arb")
    (inc,) = split_incidents(lab, new)
    # decided by the old leader (term 1); the new one took it over, as after a restart
    assert inc["victims"] == ["lb2"] and inc["term"] == 1
    refused = [a for a in inc["fence_attempts"] if a["exit_status"] == 125]
    assert refused == []  # the deposed leader recorded nothing
    assert lab.holders()[VIP1] == ["lb1"] and lab.keepalived_running("lb1")


@pytest.mark.parametrize("lab", [HA], indirect=True)
def test_one_arbiter_that_cannot_read_lb1_never_fences_alone(lab: Lab) -> None:
    """The leader loses SSH to lb1 (ICMP still answers): for `degraded_hold` it keeps
    lb1's last VIPs. lb1 then hands the VIP to lb2. Alone, the leader would see two
    holders; the other two arbiters see one, so there is no quorum and no fence."""
    start_all(lab)
    lab.fault("arbiter-ssh-cut", "arb", "lb1")
    time.sleep(2)
    lab.fault("keepalived-stop", "lb1")
    wait_for(lambda: lab.holders()[VIP1] == ["lb2"], 15, "lb2 to take the VIP")
    def reason() -> str:
        return lab.api("/status")["clusters"][0]["reason"]

    wait_for(lambda: "quorum is 2" in reason(), 15, "the leader to see its lone split")
    assert "1 of 3 arbiters see lb1 and lb2 both holding" in reason()
    time.sleep(4)
    assert lab.keepalived_running("lb2") and lab.holders()[VIP1] == ["lb2"]
    assert all(i["state"] == "open" for i in lab.incidents("split_brain"))


@pytest.mark.parametrize("lab", [HA], indirect=True)
def test_without_the_database_nobody_fences_and_failover_still_works(lab: Lab) -> None:
    start_all(lab)
    lab.fault("db-stop")
    wait_for(lambda: not any(leading(lab, h) for h in lab.arbiters), LEASE_TTL + 3,
             "every arbiter to step down")
    v = wait_for(lambda: (v := lab.verdict("lb2"))["verdict"] == "abstain" and v, 10,
                 "verdicts to abstain")
    assert "shared database" in v["reason"]
    # failover through the gates' fallback: lb1 stops, lb2 takes over
    lab.fault("keepalived-stop", "lb1")
    wait_for(lambda: lab.holders()[VIP1] == ["lb2"], 15, "failover to lb2")
    lab.heal("keepalived-stop", "lb1")
    wait_for(lambda: lab.holders()[VIP1] == ["lb1"], 15, "lb1 back (preempts)")
    lab.fault("vrrp-cut")
    wait_for(lambda: lab.holders()[VIP1] == ["lb1", "lb2"], 15, "the split brain")
    time.sleep(4)
    assert lab.keepalived_running("lb1") and lab.keepalived_running("lb2")  # no fence
    lab.heal("db-stop")
    (inc,) = wait_for(lambda: [i for i in split_incidents(lab, "arb")
                               if i["state"] in ("fenced", "held")], 30,
                      "a leader elected and the split fenced")
    assert len(fence_commands(inc)) == 1 and inc["victims"] == ["lb2"]


@pytest.mark.parametrize("lab", [HA], indirect=True)
def test_a_partition_one_against_two_only_the_majority_acts(lab: Lab) -> None:
    start_all(lab)
    lab.fault("arbiter-partition", "arb")  # the leader, alone with the directors
    new = wait_for(lambda: next((h for h in ("arb2", "arb3") if leading(lab, h)), None),
                   LEASE_TTL + 5, "the majority side to elect a leader")
    wait_for(lambda: lab.verdict("lb1")["verdict"] == "abstain", 10,
             "the lone arbiter to abstain")
    lab.fault("vrrp-cut")
    (inc,) = wait_for(lambda: [i for i in split_incidents(lab, new)
                               if i["state"] in ("fenced", "held")], 25, "the split fenced")
    assert inc["term"] >= 2 and len(fence_commands(inc)) == 1
    assert len(lab.incidents("split_brain", new)) == 1
