"""The README's first command on a new user's machine: a fresh minimal Debian 12
(debootstrap --variant=minbase), no LANG, no hostname in /etc/hosts, its own mount and
PID namespaces with pivot_root (tests/lab/fresh-debian). The demo must install what it
needs, say what it is doing, and run through without a stall.

Before issue 20 this failed here: the lab's web hosts ran `python -m http.server`, whose
name lookup of the host waited for DNS that never answers inside the lab, and
`lab up` gave up with "web1 did not start" (tested once by hand against b8a1c24)."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.lab

PHASES = (
    "bootstrap: installing",  # apt, with the package names
    "bootstrap: Debian packages installed",
    "bootstrap: installing the arbiter and its locked Python packages",  # pip
    "bootstrap: Python packages installed",
    "lab: ready: web1 web2 lb1 lb2",
    "SPLIT BRAIN: both lb1 and lb2 hold 192.168.77.100",
    "0 of 160 samples show two holders",
)


def test_the_demo_runs_on_a_fresh_minimal_debian() -> None:
    start = time.monotonic()
    p = subprocess.run(["bash", str(REPO / "tests/lab/fresh-debian"), "--",
                        "bash", "deploy/lab/demo.sh"],
                       capture_output=True, text=True, timeout=900)
    took = time.monotonic() - start
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-4000:]
    for phase in PHASES:  # every set-up phase said what it was doing
        assert phase in out, f"missing {phase!r} in:\n{out[-3000:]}"
    assert "\033[" not in out, "colour escapes in output that is not a terminal"
    # no stall: each lab comes up in seconds (it took 10 s and more per web host when a
    # lookup waited for DNS), and the demo after the root is ready in a few minutes
    ups = [int(s) for s in re.findall(r"lab: ready: [a-z0-9 ]+\((\d+) s\)", out)]
    assert len(ups) == 2 and max(ups) <= 5, (ups, out[-3000:])
    root_ready = re.search(r"fresh-debian: root ready \((\d+) s\)", out)
    assert root_ready is not None, out[-3000:]
    assert took - int(root_ready.group(1)) < 300, took
    print(f"fresh root and demo: {took:.0f} s ({root_ready.group(1)} s of it debootstrap)")
