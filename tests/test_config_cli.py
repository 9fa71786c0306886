"""Config validation (errors name the field path) and the CLI against simulated nodes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from arbiter import config as config_mod
from arbiter.config import ConfigError

GOOD = """
[arbiter]
listen = "127.0.0.1:8080"
database = "sqlite:///arbiter.db"
interval = 1.0
confirm_rounds = 2
gateways = ["192.168.77.254"]
dry_run = false

[ssh]
username = "root"
client_keys = ["id_ed25519"]
known_hosts = "known_hosts"
connect_timeout = 2.0
command_timeout = 3.0

[[clusters]]
name = "web"
vips = ["192.168.77.100", "192.168.77.200"]
gateways = ["192.168.77.254"]
fence_command = "systemctl stop keepalived"
recover_command = "systemctl start keepalived"

  [[clusters.nodes]]
  name = "lb1"
  address = "192.168.77.11"
  priority = 100

  [[clusters.nodes]]
  name = "lb2"
  address = "192.168.77.12"
  priority = 90
  port = 2200
  fence_command = "pkill keepalived"
"""


@pytest.fixture
def cfgdir(tmp_path: Path) -> Path:
    (tmp_path / "id_ed25519").write_text("key")
    (tmp_path / "known_hosts").write_text("")
    return tmp_path


def write(cfgdir: Path, text: str) -> Path:
    p = cfgdir / "arbiter.toml"
    p.write_text(text)
    return p


def test_issue_example_is_valid_and_paths_resolve(cfgdir: Path) -> None:
    cfg = config_mod.load(write(cfgdir, GOOD))
    assert cfg.ssh.known_hosts == str(cfgdir / "known_hosts")
    assert cfg.arbiter.database == f"sqlite:///{cfgdir / 'arbiter.db'}"
    web = cfg.clusters[0]
    assert web.fence_command_for(web.nodes[1]) == "pkill keepalived"
    assert web.fence_command_for(web.nodes[0]) == "systemctl stop keepalived"
    assert cfg.stale_after == 7.0


@pytest.mark.parametrize(
    ("old", "new", "path", "why"),
    [
        ("priority = 90", "priority = 900", "clusters[0].nodes[1].priority", "less than or equal"),
        ("confirm_rounds = 2", "confirm_rounds = 1", "arbiter.confirm_rounds", "greater than"),
        ('address = "192.168.77.12"', 'address = "192.168.77.300"',
         "clusters[0].nodes[1].address", "not an IP address"),
        ('name = "lb2"', 'name = "lb1"', "clusters[0]", "duplicate node name"),
        ('vips = ["192.168.77.100", "192.168.77.200"]', 'vips = ["192.168.77.11"]',
         "clusters[0]", "equal a node address"),
        ("command_timeout = 3.0", "command_timeout = 0.5", "ssh", "gateway_ping_timeout"),
        ("interval = 1.0", "interval = 1.0\nstale_after = 2.0", "(top level)", "stale_after"),
        ("dry_run = false", "dry_run = false\nintervall = 3", "arbiter.intervall",
         "Extra inputs are not permitted"),
        ('listen = "127.0.0.1:8080"', 'listen = "localhost"', "arbiter.listen", "HOST:PORT"),
        ('database = "sqlite:///arbiter.db"', 'database = "::nope::"', "arbiter.database",
         "SQLAlchemy URL"),
        ("dry_run = false", 'dry_run = false\n[api]\ntokens = {ops = "pässwört-0123456789"}',
         "api.tokens", "printable ASCII"),
        ('recover_command = "systemctl start keepalived"',
         'recover_command = "systemctl start keepalived"\nfence_levels = ["ssh", "agent"]',
         "clusters[0]", "fence_levels has agent but fence_agent is not set"),
        ('recover_command = "systemctl start keepalived"',
         'recover_command = "systemctl start keepalived"\nfence_levels = ["ssh", "ssh"]',
         "clusters[0].fence_levels", "listed twice"),
        ('recover_command = "systemctl start keepalived"',
         'recover_command = "systemctl start keepalived"\nfence_levels = ["ipmi"]',
         "clusters[0].fence_levels[0]", "'ssh', 'vip-del', 'gate' or 'agent'"),
        ('fence_command = "pkill keepalived"',
         'fence_command = "pkill keepalived"\nagent_options = { action = "reboot" }',
         "clusters[0].nodes[1].agent_options", "set by the arbiter itself"),
        ('recover_command = "systemctl start keepalived"',
         'recover_command = "systemctl start keepalived"\narp_interface = "eth0; rm"',
         "clusters[0].arp_interface", "String should match pattern"),
        ("dry_run = false", 'dry_run = false\n[notify]\nsmtp_host = "mail"',
         "notify", "notify.mail_from is required"),
        ("dry_run = false", 'dry_run = false\n[notify]\n[[notify.webhooks]]\nurl = "ftp://x"',
         "notify.webhooks[0].url", "not an http:// or https:// URL"),
    ],
)
def test_bad_config_names_the_field(cfgdir: Path, old: str, new: str, path: str,
                                    why: str) -> None:
    assert old in GOOD
    with pytest.raises(ConfigError) as exc:
        config_mod.load(write(cfgdir, GOOD.replace(old, new, 1)))
    msg = str(exc.value)
    assert path in msg and why in msg, msg


def test_missing_files_and_env_secrets(cfgdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (cfgdir / "known_hosts").unlink()
    with pytest.raises(ConfigError, match="ssh.known_hosts: cannot read"):
        config_mod.load(write(cfgdir, GOOD))
    (cfgdir / "known_hosts").write_text("")
    text = GOOD.replace('"sqlite:///arbiter.db"', '"${ARBITER_TEST_DB}"')
    with pytest.raises(ConfigError, match="arbiter.database: environment variable"):
        config_mod.load(write(cfgdir, text))
    monkeypatch.setenv("ARBITER_TEST_DB", "postgresql+psycopg://u:secret@db/arbiter")
    assert config_mod.load(write(cfgdir, text)).arbiter.database.endswith("@db/arbiter")


def test_missing_tls_files_are_refused_naming_them(cfgdir: Path) -> None:
    text = GOOD.replace("dry_run = false", 'dry_run = false\n[api]\ntls_certfile = "cert.pem"\n'
                        'tls_keyfile = "key.pem"')
    with pytest.raises(ConfigError) as exc:
        config_mod.load(write(cfgdir, text))
    assert "api.tls_certfile: cannot read cert.pem" in str(exc.value)
    assert "api.tls_keyfile: cannot read key.pem" in str(exc.value)
    res = run_cli("config", "validate", str(write(cfgdir, text)))
    assert res.returncode == 2 and "cert.pem" in res.stderr


def test_serve_with_its_port_taken_stops_before_anything(cfgdir: Path) -> None:
    """Bind first: no 'serving' line and no SSH connection when the port is taken."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        text = GOOD.replace('listen = "127.0.0.1:8080"', f'listen = "127.0.0.1:{port}"')
        res = run_cli("serve", "-c", str(write(cfgdir, text)))
    assert res.returncode == 2, res.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in res.stderr
    assert "serving" not in res.stderr and "ssh connected" not in res.stderr


def test_not_toml(cfgdir: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        config_mod.load(write(cfgdir, "[arbiter\n"))


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "arbiter.cli", *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def test_cli_config_validate(cfgdir: Path) -> None:
    ok = run_cli("config", "validate", str(write(cfgdir, GOOD)))
    assert ok.returncode == 0 and "OK (1 cluster(s), 2 node(s)" in ok.stdout
    bad = run_cli("config", "validate", str(write(cfgdir, GOOD.replace("priority = 90",
                                                                       "priority = -1"))))
    assert bad.returncode == 2
    assert "clusters[0].nodes[1].priority" in bad.stderr


@pytest.mark.parametrize(("scenario", "code"), [("healthy", 0), ("split", 1),
                                                 ("dual-master", 1)])
def test_cli_check_against_simulated_nodes(tmp_path: Path, scenario: str, code: int) -> None:
    from tests.conftest import free_port

    port = free_port()
    sim = subprocess.Popen(
        [sys.executable, "-m", "arbiter.cli", "sim", "-o", str(tmp_path), "--scenario",
         scenario, "--port", str(port), "--seconds", "30"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        assert sim.stdout is not None
        first = sim.stdout.readline()
        assert "simulated nodes up" in first, first
        res = run_cli("check", "-c", str(tmp_path / "arbiter.toml"))
    finally:
        sim.terminate()
        sim.wait(10)
    assert res.returncode == code, res.stdout + res.stderr
    assert "lb1" in res.stdout and "lb2" in res.stdout
    if code == 1:
        assert "SPLIT BRAIN" in res.stdout
        assert "lb1 survives over lb2 by rule" in res.stdout
        # what it would do, as what it would do: nothing has been done
        assert "  would stop keepalived on lb2" in res.stdout
        assert "has keepalived stopped" not in res.stdout
    else:
        assert "SPLIT" not in res.stdout


def test_cli_db_upgrade_and_incidents(cfgdir: Path) -> None:
    p = write(cfgdir, GOOD)
    up = run_cli("db", "upgrade", "-c", str(p))
    head = max(f.name[:4] for f in (Path(__file__).parents[1] / "migrations/versions").glob(
        "[0-9][0-9][0-9][0-9]_*.py"))  # the newest migration
    assert up.returncode == 0 and f"revision {head}" in up.stdout, up.stdout
    inc = run_cli("incidents", "-c", str(p))
    assert inc.returncode == 0 and "no incidents" in inc.stdout
    # refused as the API refuses them, naming the parameter
    bad = run_cli("incidents", "-c", str(p), "--state", "fenced-ish")
    assert bad.returncode == 2 and "--state" in bad.stderr and "fence_failed" in bad.stderr
    bad = run_cli("incidents", "-c", str(p), "--cluster", "nope")
    assert bad.returncode == 2 and "--cluster: unknown cluster 'nope'" in bad.stderr
    bad = run_cli("incidents", "-c", str(p), "--kind", "split")
    assert bad.returncode == 2 and "--kind: 'split' is not one of" in bad.stderr
    ok = run_cli("incidents", "-c", str(p), "--kind", "vip_conflict", "--state", "open")
    assert ok.returncode == 0 and "no incidents" in ok.stdout


def test_cli_incidents_on_a_database_never_migrated(cfgdir: Path) -> None:
    p = write(cfgdir, GOOD.replace("arbiter.db", "never.db"))
    db = cfgdir / "never.db"
    res = run_cli("incidents", "-c", str(p))
    assert res.returncode == 2 and "arbiter db upgrade" in res.stderr, res.stderr
    assert not db.exists()  # no empty file left behind


def test_cli_check_unreachable_nodes_is_not_a_crash(cfgdir: Path) -> None:
    # Nodes on loopback addresses where nothing listens on the SSH port.
    from tests.conftest import free_port

    text = GOOD.replace("192.168.77.11", "127.0.0.21").replace("192.168.77.12", "127.0.0.22")
    text = text.replace('gateways = ["192.168.77.254"]', 'gateways = ["127.0.0.1"]')
    text = text.replace('username = "root"', f'username = "root"\nport = {free_port()}')
    text = text.replace("port = 2200\n", "")
    import asyncssh

    key = asyncssh.generate_private_key("ssh-ed25519")
    key.write_private_key(str(cfgdir / "id_ed25519"))
    res = run_cli("check", "-c", str(write(cfgdir, text)))
    # no holders known, no split; but a node it cannot reach is an error
    assert res.returncode == 2, res.stdout + res.stderr
    assert "connect failed" in res.stdout
    assert "SSH FAILED on web/lb1, web/lb2" in res.stdout
    assert " INFO " not in res.stderr and " WARNING " not in res.stderr, res.stderr
    asyncio.run(asyncio.sleep(0))


@pytest.mark.parametrize(("soft", "nodes", "expect"), [
    (256, 1000, 4096),   # too low for 1000 nodes + headroom: raised, to 4096 at least
    (256, 10, 4096),     # too low even for 10 nodes + headroom (266): raised
    (1024, 10, 1024),    # enough for 10 nodes: left alone
    (8192, 1000, 8192),  # enough for 1000: left alone
])
def test_serve_raises_the_open_files_limit(soft: int, nodes: int, expect: int) -> None:
    """`arbiter serve` keeps a socket per node: under a soft limit of 1024 (systemd's
    default) 1000 nodes would run out of descriptors. Run in a child with a low limit."""
    code = ("import resource, logging; from arbiter.cli.serve import ensure_open_files; "
            f"resource.setrlimit(resource.RLIMIT_NOFILE, ({soft}, 16384)); "
            f"print(ensure_open_files({nodes}), "
            "resource.getrlimit(resource.RLIMIT_NOFILE)[0])")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == [str(expect), str(expect)]


def test_cli_check_asks_the_fence_agent_for_each_nodes_status(tmp_path: Path) -> None:
    """A wrong IPMI password shows in `arbiter check`, not on the day the agent is the
    only way to fence: status is asked of every node with an agent level."""
    from tests.conftest import free_port

    agent = tmp_path / "fence_test"
    agent.write_text("#!/bin/sh\ninput=$(cat)\ncase \"$input\" in\n"
                     "  *nodename=lb2*) echo 'Unable to connect/login to fencing device'\n"
                     "    exit 1;;\nesac\nexit 0\n")
    agent.chmod(0o755)
    sim = subprocess.Popen(
        [sys.executable, "-m", "arbiter.cli", "sim", "-o", str(tmp_path), "--scenario",
         "healthy", "--port", str(free_port()), "--seconds", "30"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        assert sim.stdout is not None and "simulated nodes up" in sim.stdout.readline()
        cfg = tmp_path / "arbiter.toml"
        cfg.write_text(cfg.read_text().replace(
            "[[clusters]]\n", f'[[clusters]]\nfence_levels = ["ssh", "agent"]\n'
                              f'fence_agent = "{agent}"\n', 1))
        res = run_cli("check", "-c", str(cfg))
    finally:
        sim.terminate()
        sim.wait(10)
    assert res.returncode == 2, res.stdout + res.stderr
    assert f"fence agent {agent} on lb1 (status): on" in res.stdout
    assert "on lb2 (status): FAILED: status failed (exit 1): Unable to connect" in res.stdout
    assert "FENCE AGENT FAILED" in res.stdout


def test_the_example_config_validates() -> None:
    """`arbiter config example` prints a commented starting config, and `arbiter config
    validate` accepts it as it is (off the arbiter host: --skip-files)."""
    import tempfile

    ex = run_cli("config", "example")
    assert ex.returncode == 0 and ex.stdout.startswith("# A starting config")
    assert "[arbiter]" in ex.stdout and "[[clusters.nodes]]" in ex.stdout
    with tempfile.NamedTemporaryFile("w", suffix=".toml") as f:
        f.write(ex.stdout)
        f.flush()
        r = run_cli("config", "validate", "--skip-files", f.name)
    assert r.returncode == 0, r.stderr
    assert ": OK (1 cluster(s), 2 node(s)" in r.stdout
