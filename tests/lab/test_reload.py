"""A config reload on the lab, under load (issue 22): a director added and removed
live, a timing changed, a broken file refused, while the gates' kind of traffic keeps
asking /verdict and an incident stays held throughout.

The lab runs a spare director, lb3 (priority 50, in VI_1), that the arbiter's config
leaves out at first; `spare-node.toml` holds its entry.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.lab.labctl import VIP1, Lab, steady, wait_for

pytestmark = pytest.mark.lab

# Asks /verdict (every node, as the gates do) and /status in a loop from the arbiter's
# namespace, for at most argv[1] seconds or until SIGTERM, and writes what it saw.
LOAD = r"""
import json, signal, sys, time
import httpx
stop = False
def end(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, end)
codes, errors, slowest, n = {}, [], 0.0, 0
deadline = time.monotonic() + float(sys.argv[1])
paths = ["/verdict?cluster=web&node=lb1", "/verdict?cluster=web&node=lb2", "/status"]
with httpx.Client(base_url="http://127.0.0.1:8080", timeout=5) as c:
    while not stop and time.monotonic() < deadline:
        path = paths[n % len(paths)]
        t = time.monotonic()
        try:
            code = c.get(path).status_code
            codes[str(code)] = codes.get(str(code), 0) + 1
            if code >= 400:
                errors.append(f"{path}: {code}")
        except httpx.HTTPError as exc:
            errors.append(f"{path}: {exc!r}")
        slowest = max(slowest, time.monotonic() - t)
        n += 1
        time.sleep(0.02)
json.dump({"requests": n, "codes": codes, "errors": errors[:20], "slowest_s": slowest},
          open(sys.argv[2], "w"))
"""


class Load:
    def __init__(self, lab: Lab, out: Path, seconds: float = 180):
        self.out = out
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", lab.ns("arb"), sys.executable, "-c", LOAD,
             str(seconds), str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def finish(self) -> dict:
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=15)
        assert self.proc.returncode == 0, err.decode()
        return json.loads(self.out.read_text())

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def nodes(lab: Lab) -> dict[str, dict]:
    (web,) = lab.api("/status")["clusters"]
    return {n["name"]: n for n in web["nodes"]}


def reload(lab: Lab) -> tuple[int, dict]:
    return lab.post("/reload", token=lab.token("ops"))


def ssh_sessions(lab: Lab, host: str) -> int:
    """Established connections to the host's sshd (the arbiter's pooled ones)."""
    p = lab.exec(host, "ss -Htn state established '( sport = :22 )'")
    return len([ln for ln in p.stdout.splitlines() if ln.strip()])


@pytest.mark.parametrize("lab", ["active-backup+spare"], indirect=True)
def test_reload_under_load_adds_a_node_changes_a_timing_and_refuses_a_broken_file(
        lab: Lab, tmp_path: Path) -> None:
    lab.set_arbiter(auto_release=False)
    conf = lab.dir / "arbiter.toml"
    original = conf.read_text()
    spare = (lab.dir / "spare-node.toml").read_text()
    # lb3's host key comes with the reload that adds it, as an operator would add it
    known = lab.dir / "known_hosts"
    keys = known.read_text().splitlines()
    lb3_key = [k for k in keys if k.startswith("192.168.77.13 ")]
    assert len(lb3_key) == 1
    known.write_text("\n".join(k for k in keys if k not in lb3_key) + "\n")
    steady(lab)
    load = Load(lab, tmp_path / "load.json")
    try:
        # an incident to keep across every reload: lb2 alone loses VRRP, claims the VIP
        # (lb3 still hears lb1), and is fenced and held
        lab.fault("vrrp-cut", "lb2")
        (inc,) = wait_for(lambda: [i for i in lab.incidents("split_brain")
                                   if i["state"] == "held"], 30, "lb2 fenced and held")
        assert inc["held_nodes"] == ["lb2"] and lab.holders()[VIP1] == ["lb1"]
        assert "lb3" not in nodes(lab) and ssh_sessions(lab, "lb3") == 0

        # 1. add lb3 and its key (POST /reload): connected, observed, asked about,
        # the incident kept
        known.write_text(known.read_text() + lb3_key[0] + "\n")
        conf.write_text(original + spare)
        code, body = reload(lab)
        assert code == 200 and "web: node lb3 added" in body["changes"], body
        n3 = wait_for(lambda: (n := nodes(lab).get("lb3")) and n["health"] == "healthy"
                      and (n.get("keepalived") or {}).get("instances") and n, 15,
                      "lb3 observed, with its keepalived's view")
        states = {i["name"]: i["state"] for i in n3["keepalived"]["instances"]}
        assert states == {"VI_1": "BACKUP"}, n3["keepalived"]
        assert ssh_sessions(lab, "lb3") >= 1
        assert lab.verdict("lb3")["verdict"] == "allow"
        (again,) = [i for i in lab.incidents("split_brain") if i["id"] == inc["id"]]
        assert again["state"] == "held" and lab.verdict("lb2")["verdict"] == "deny"

        # 2. a timing (SIGHUP, as systemctl reload sends): rounds twice as often
        conf.write_text((original + spare).replace("interval = 1.0", "interval = 0.5"))
        lab.signal_arbiter("reload")
        wait_for(lambda: lab.api("/status")["arbiter"]["config"]["last_reload"]["changes"]
                 == ["arbiter.interval 1.0 -> 0.5"], 10, "the SIGHUP reload")
        assert "config reloaded (SIGHUP): arbiter.interval 1.0 -> 0.5" in lab.arbiter_log()

        # 3. a broken file: refused, naming the field; the running config stays
        broken = (original + spare).replace("priority = 50", "priority = 300")
        conf.write_text(broken)
        code, body = reload(lab)
        assert code == 409 and "clusters[0].nodes[2].priority" in body["detail"], body
        lab.signal_arbiter("reload")
        wait_for(lambda: "config reload (SIGHUP) refused" in lab.arbiter_log(), 10,
                 "the refused SIGHUP in the log")
        cfg = lab.api("/status")["arbiter"]["config"]
        assert cfg["last_reload"]["ok"] is False
        assert "clusters[0].nodes[2].priority" in cfg["last_reload"]["error"]
        assert "lb3" in nodes(lab) and lab.verdict("lb3")["verdict"] == "allow"

        # 4. remove lb3 again: its connections closed, the held incident still kept
        conf.write_text(original.replace("interval = 1.0", "interval = 0.5"))
        code, body = reload(lab)
        assert code == 200 and "web: node lb3 removed" in body["changes"], body
        wait_for(lambda: ssh_sessions(lab, "lb3") == 0, 10, "lb3's connections closed")
        assert "lb3" not in nodes(lab)
        (again,) = [i for i in lab.incidents("split_brain") if i["id"] == inc["id"]]
        assert again["state"] == "held" and again["held_nodes"] == ["lb2"]
        # a node that a held incident involves cannot be removed
        conf.write_text(original.split("  [[clusters.nodes]]\n  name = \"lb2\"")[0] + spare)
        code, body = reload(lab)
        assert code == 409 and "lb2 cannot be removed while" in body["detail"], body

        seen = load.finish()
    finally:
        load.kill()
        lab.heal("vrrp-cut")
    print(f"load during the reloads: {seen}")
    # the load never saw an error or a 5xx, and was never held up by a reload
    assert seen["requests"] > 200 and seen["errors"] == [], seen
    assert set(seen["codes"]) == {"200"}, seen
    assert seen["slowest_s"] < 3.0, seen  # a reload never stalls the API
