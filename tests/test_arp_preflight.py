"""`arbiter serve` checks the ARP view before anything else: an interface that does
not exist, or no CAP_NET_RAW, refuses to start, naming the field."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from arbiter.probe.arp import off_segment
from arbiter.round.views.arp_view import preflight
from tests.unit.builders import make_config


def with_arp(iface: str):  # type: ignore[no-untyped-def]
    cfg = make_config()
    c = cfg.clusters[0].model_copy(update={"arp_interface": iface})
    return cfg.model_copy(update={"clusters": [c]})


def test_an_interface_that_does_not_exist_is_named() -> None:
    (problem,) = preflight(with_arp("nosuch0"))
    assert problem.startswith("clusters[0].arp_interface: cannot bind to interface 'nosuch0'")


def test_loopback_opens_and_no_arp_interface_needs_nothing() -> None:
    assert preflight(with_arp("lo")) == []
    assert preflight(make_config()) == []


def test_without_cap_net_raw_serve_says_which_capability(tmp_path: Path) -> None:
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.fail("setpriv (util-linux) is missing")
    code = ("from arbiter.round.views.arp_view import preflight; from tests.unit.builders import "
            "make_config; c = make_config(); cl = c.clusters[0].model_copy(update="
            "{'arp_interface': 'lo'}); print(preflight(c.model_copy(update={'clusters': "
            "[cl]})))")
    # root still, but with no capability at all (an empty bounding set): the files of
    # this checkout stay readable wherever it is, and AF_PACKET is refused
    r = subprocess.run([setpriv, "--inh-caps=-all", "--bounding-set=-all", sys.executable,
                        "-c", code],
                       capture_output=True, text=True, timeout=30,
                       cwd=Path(__file__).resolve().parents[1])
    assert r.returncode == 0, r.stderr
    assert "clusters[0].arp_interface: an AF_PACKET socket needs CAP_NET_RAW" in r.stdout


def test_vips_off_the_interfaces_subnet_are_named() -> None:
    import ipaddress

    net = ipaddress.IPv4Network("192.168.77.0/24")
    assert off_segment(["192.168.77.100", "10.0.0.5"], net) == ["10.0.0.5"]
    assert off_segment(["10.0.0.5"], None) == []
