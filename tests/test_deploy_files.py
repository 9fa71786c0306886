"""The shipped deployment files are valid: keepalived snippets pass keepalived's own
config test with the scripts installed, and the example arbiter configs validate."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SNIPPETS = sorted((REPO / "deploy/keepalived").glob("*.conf"))


def test_every_seed_topology_has_a_snippet() -> None:
    assert {p.stem for p in SNIPPETS} == {"active-backup", "dual-master", "lvs-dr", "unicast",
                                           "nopreempt", "dual-stack"}


@pytest.mark.parametrize("conf", SNIPPETS, ids=[p.stem for p in SNIPPETS])
def test_keepalived_accepts_snippet_with_gate_and_notify(conf: Path, tmp_path: Path) -> None:
    if os.geteuid() != 0 or not shutil.which("keepalived"):
        pytest.skip("needs root and keepalived (bash deploy/bootstrap.sh)")
    text = conf.read_text()
    assert "arbiter-notify" in text
    if conf.stem == "dual-master":  # a gate per instance, each asking about its own VIP
        assert "chk_arbiter_vi1 weight 0" in text and "chk_arbiter_vi2 weight 0" in text
        assert text.count("arbiter-gate --track /run/arbiter-verdict/VI_") == 2
        assert text.count(" --vip 192.168.77.") == 2
    elif conf.stem == "dual-stack":  # VI_4 and VI_6 share vrid 51; IPv6 VIP as a /128
        assert "chk_arbiter_vi4 weight 0" in text and "chk_arbiter_vi6 weight 0" in text
        assert text.count("virtual_router_id 51") == 2
        assert " --vip 192.168.77.100 " in text and " --vip fd77:77:77::100 " in text
        assert "fd77:77:77::100/128 dev eth0" in text and "http://[fd77:77:77::2]:8080" in text
    else:
        assert "chk_arbiter weight 0" in text
    # each instance tracks its own track file (track_files = true), with weight 0
    assert text.count("track_file {") == text.count("vrrp_instance ")
    assert text.count(" weight 0\n    }") >= text.count("vrrp_instance ")
    # Install the scripts where the snippets expect them, in a private mount namespace,
    # so keepalived's script security checks see them exactly as on a director.
    script = f"""
        set -e
        mount -t tmpfs tmpfs /usr/local/bin
        install -m 755 {REPO}/deploy/keepalived/arbiter-gate /usr/local/bin/
        install -m 755 {REPO}/deploy/keepalived/arbiter-notify /usr/local/bin/
        mkdir -p /run/cfgtest && cp {conf} /run/cfgtest/keepalived.conf
        keepalived --config-test -f /run/cfgtest/keepalived.conf
    """
    p = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                       capture_output=True, text=True, timeout=30)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    assert "Disabling" not in out and "rror" not in out, out


@pytest.mark.parametrize("name", ["arbiter.toml", "arbiter-dual-master-postgres.toml"])
def test_example_configs_validate_off_the_target_host(name: str) -> None:
    """As the README says: with the example env file, without the host's key files."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARBITER_")}
    r = subprocess.run([sys.executable, "-m", "arbiter.cli", "config", "validate",
                        "--env-file", "deploy/examples/arbiter.env", "--skip-files",
                        f"deploy/examples/{name}"], capture_output=True, text=True,
                       cwd=REPO, env=env, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"deploy/examples/{name}: OK" in r.stdout


def test_the_example_env_file_covers_every_variable_the_examples_use() -> None:
    import re

    from arbiter.config.loading import read_env_file

    env = read_env_file(REPO / "deploy/examples/arbiter.env")
    used = {v for f in (REPO / "deploy/examples").glob("*.toml")
            for v in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", f.read_text())}
    assert used and used <= set(env), used - set(env)


def test_systemd_unit_is_hardened() -> None:
    unit = (REPO / "deploy/systemd/keepalived-arbiter.service").read_text()
    for key in ("NoNewPrivileges=yes", "ProtectSystem=strict"):
        assert key in unit
    # issue 30: CAP_NET_RAW (ICMP on a stock Debian 12, the ARP view) and nothing else
    lines = [ln.strip() for ln in unit.splitlines() if ln.strip() and ln[0] != "#"]
    assert "AmbientCapabilities=CAP_NET_RAW" in lines
    assert "CapabilityBoundingSet=CAP_NET_RAW" in lines
    assert [ln for ln in lines if "Capabilit" in ln] == [
        "AmbientCapabilities=CAP_NET_RAW", "CapabilityBoundingSet=CAP_NET_RAW"]
    assert any(ln.startswith("RestrictAddressFamilies=") and "AF_PACKET" in ln for ln in lines)
    # nothing the unit runs needs procps (/bin/kill), which a minimal Debian lacks
    assert "/bin/kill" not in "\n".join(ln for ln in lines if ln.startswith("Exec"))
    assert "Documentation=file:/usr/share/doc/keepalived-arbiter/README.md" in lines


def test_lab_help_and_a_second_down_succeed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os
    import subprocess

    env = {**os.environ, "ARBITER_LAB_STATE": str(tmp_path / "labs")}
    lab = ["bash", "deploy/lab/lab"]
    h = subprocess.run([*lab, "--help"], capture_output=True, text=True, env=env, timeout=30)
    assert h.returncode == 0 and "lab up" in h.stdout and "set -euo" not in h.stdout
    for _ in range(2):  # idempotent, as its help says
        d = subprocess.run([*lab, "down"], capture_output=True, text=True, env=env, timeout=30)
        assert d.returncode == 0 and "nothing to tear down" in d.stderr
    bad = subprocess.run([*lab, "bogus"], capture_output=True, text=True, env=env, timeout=30)
    assert bad.returncode == 2 and "unknown command: bogus" in bad.stderr


def test_vrrp_rules_use_the_protocol_number() -> None:
    """/etc/protocols comes from netbase, which a minimal Debian may lack: nft rules
    that name VRRP say 112."""
    from pathlib import Path

    for f in [Path("deploy/lab/lab"), *Path("deploy").rglob("*.conf"), Path("README.md")]:
        assert "protocol vrrp" not in f.read_text(), f


def test_every_package_folder_ships_in_the_wheel() -> None:
    """pyproject lists the packages by hand: a new folder left out would be missing
    from the .deb and from `pip install .` while the editable checkout works."""
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
                 ["packages"])
    folders = {".".join(p.parent.relative_to(REPO).parts)
               for p in (REPO / "arbiter").rglob("__init__.py")}
    assert folders <= listed, sorted(folders - listed)
