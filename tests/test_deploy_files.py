"""The shipped deployment files are valid: keepalived snippets pass keepalived's own
config test with the scripts installed, and the example arbiter configs validate."""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from arbiter.config import from_dict

REPO = Path(__file__).resolve().parents[1]
SNIPPETS = sorted((REPO / "deploy/keepalived").glob("*.conf"))


def test_every_seed_topology_has_a_snippet() -> None:
    assert {p.stem for p in SNIPPETS} == {"active-backup", "dual-master", "lvs-dr", "unicast",
                                           "nopreempt"}


@pytest.mark.parametrize("conf", SNIPPETS, ids=[p.stem for p in SNIPPETS])
def test_keepalived_accepts_snippet_with_gate_and_notify(conf: Path, tmp_path: Path) -> None:
    if os.geteuid() != 0 or not shutil.which("keepalived"):
        pytest.skip("needs root and keepalived (bash deploy/bootstrap.sh)")
    text = conf.read_text()
    assert "arbiter-notify" in text
    if conf.stem == "dual-master":  # a gate per instance, each asking about its own VIP
        assert "chk_arbiter_vi1 weight 0" in text and "chk_arbiter_vi2 weight 0" in text
        assert text.count("arbiter-gate --vip ") == 2
    else:
        assert "chk_arbiter weight 0" in text
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
def test_example_configs_validate(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("ARBITER_OPS_TOKEN", "ARBITER_MON_TOKEN", "ARBITER_TOKEN_LB1",
                "ARBITER_TOKEN_LB2", "ARBITER_TOKEN_NODE1", "ARBITER_TOKEN_NODE2"):
        monkeypatch.setenv(var, f"{var.lower()}-0123456789abcdef")
    monkeypatch.setenv("ARBITER_DB_URL", "postgresql+psycopg://arbiter:x@db/arbiter")
    data = tomllib.loads((REPO / "deploy/examples" / name).read_text())
    cfg = from_dict(data, check_files=False)
    assert cfg.clusters and cfg.api.tokens


def test_systemd_unit_is_hardened() -> None:
    unit = (REPO / "deploy/systemd/keepalived-arbiter.service").read_text()
    for key in ("NoNewPrivileges=yes", "ProtectSystem=strict", "CapabilityBoundingSet="):
        assert key in unit
    # CAP_NET_RAW only for privileged ICMP: present but commented out by default
    assert "#AmbientCapabilities=CAP_NET_RAW" in unit
    assert "\nAmbientCapabilities=CAP_NET_RAW" not in unit


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
