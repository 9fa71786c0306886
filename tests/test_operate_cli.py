"""`arbiter pause`, `resume` and `reload`, and SIGHUP, as an operator runs them: real
processes (`arbiter sim` directors, `arbiter serve`), the CLI talking to the API."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from tests.simserve import SimServe, cli


def status(cfg: Path) -> dict:
    """/status through `arbiter status --json` ({} while the arbiter cannot be asked)."""
    r = cli("status", "-c", str(cfg), "--json")
    try:
        return json.loads(r.stdout)
    except ValueError:
        return {}


def wait(pred, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def test_pause_resume_and_reload_from_the_command_line(tmp_path: Path) -> None:
    with SimServe(tmp_path) as s:
        cfg = str(s.cfg)
        wait(lambda: status(s.cfg).get("arbiter", {}).get("last_round", {}).get("count"),
             30, "a round")
        p = cli("pause", "-c", cfg, "--for", "30m", "--reason", "firewall work")
        assert p.returncode == 0, p.stdout + p.stderr
        assert "paused every cluster until" in p.stdout
        shown = cli("status", "-c", cfg)
        assert "PAUSED: paused for maintenance (every cluster) by ops" in shown.stdout
        bad = cli("pause", "-c", cfg, "--for", "soon", "--reason", "x")
        assert bad.returncode == 2 and "--for: 'soon' is not a duration" in bad.stdout
        r = cli("resume", "-c", cfg)
        assert r.returncode == 0 and "resumed every cluster" in r.stdout, r.stdout
        assert cli("resume", "-c", cfg).returncode == 1  # nothing left to resume
        # reload: a new timing, then a file that is broken (refused, named, old stays)
        text = s.cfg.read_text()
        s.cfg.write_text(text.replace("interval = 1.0", "interval = 0.5"))
        r = cli("reload", "-c", cfg)
        assert r.returncode == 0 and "arbiter.interval 1.0 -> 0.5" in r.stdout, r.stdout
        assert status(s.cfg)["arbiter"]["interval"] == 0.5
        s.cfg.write_text(text.replace("priority = 90", "priority = 900"))
        r = cli("reload", "-c", cfg)
        assert r.returncode == 2 and "clusters[0].nodes[1].priority" in r.stderr
        # SIGHUP (systemctl reload): the running arbiter reads its file itself
        s.cfg.write_text(text.replace("interval = 1.0", "interval = 0.8"))
        assert s.serve is not None
        s.serve.send_signal(signal.SIGHUP)
        last = wait(lambda: (status(s.cfg)["arbiter"]["config"] or {}).get("last_reload")
                    if status(s.cfg)["arbiter"]["interval"] == 0.8 else None, 20, "SIGHUP")
        assert last["by"] == "SIGHUP" and last["ok"] is True


def test_tokens_from_the_environment_file_as_the_unit_has_them(tmp_path: Path) -> None:
    """Issue 30: with `tokens = { ops = "${ARBITER_T_OPS}" }` (the recommended way) the
    service has the variable from its EnvironmentFile, the operator's shell does not.
    A read needs no token; a write says where the token comes from and how to get it;
    --env-file FILE gives it, as the unit does."""
    from tests.simserve import OPS_TOKEN

    env_file = tmp_path / "arbiter.env"
    env_file.write_text(f"# as /etc/arbiter/arbiter.env\nARBITER_T_OPS='{OPS_TOKEN}'\n")
    with SimServe(tmp_path, env={"ARBITER_T_OPS": OPS_TOKEN},
                  edit=lambda t: t.replace(f'ops = "{OPS_TOKEN}"',
                                           'ops = "${ARBITER_T_OPS}"')) as s:
        cfg = str(s.cfg)
        wait(lambda: status(s.cfg).get("arbiter", {}).get("last_round", {}).get("count"),
             30, "a round (a read, without the variable)")
        p = cli("pause", "-c", cfg, "--for", "5m", "--reason", "x")
        assert p.returncode == 2, p.stdout
        assert "[api] tokens.ops comes from ${ARBITER_T_OPS}, which is not set here" in \
            p.stdout and "--env-file" in p.stdout
        p = cli("--env-file", str(env_file), "pause", "-c", cfg, "--for", "5m", "--reason", "x")
        assert p.returncode == 0, p.stdout + p.stderr
        p = cli("resume", "-c", cfg, f"--env-file={env_file}")
        assert p.returncode == 0, p.stdout + p.stderr
        p = cli("--env-file", str(tmp_path / "none.env"), "status", "-c", cfg)
        assert p.returncode == 2 and "none.env: cannot read file" in p.stderr


def test_a_write_without_any_token_says_how_to_add_one(tmp_path: Path) -> None:
    with SimServe(tmp_path, edit=lambda t: t.replace("[api]\ntokens = ", "[api]\n#")) as s:
        wait(lambda: status(s.cfg).get("arbiter", {}).get("last_round", {}).get("count"),
             30, "a round")
        p = cli("pause", "-c", str(s.cfg), "--for", "5m", "--reason", "x")
        assert p.returncode == 2 and "[api] tokens has none: add one" in p.stdout, p.stdout


def test_reload_reaches_the_running_service_after_listen_and_token_edits(
        tmp_path: Path) -> None:
    """Issue 30: `arbiter reload` read the address and token from the edited file, so
    after editing `listen` it could not reach the service, and after rotating the
    token it was refused. Now the service publishes where it runs (RuntimeDirectory),
    and reload is SIGHUP to it, its answer read from /status; the unit's environment
    file is read again on reload, so a rotated token is reloadable."""
    from tests.conftest import free_port
    from tests.simserve import OPS_TOKEN

    run = tmp_path / "run"
    run.mkdir()
    env_file = tmp_path / "arbiter.env"
    env_file.write_text(f"ARBITER_T_OPS={OPS_TOKEN}\n")
    rt = {"ARBITER_RUNTIME_FILE": str(run / "serve.json")}
    with SimServe(tmp_path, env={"ARBITER_T_OPS": OPS_TOKEN, "RUNTIME_DIRECTORY": str(run),
                                 "ARBITER_ENV_FILE": str(env_file)},
                  edit=lambda t: t.replace(f'ops = "{OPS_TOKEN}"',
                                           'ops = "${ARBITER_T_OPS}"')) as s:
        cfg = str(s.cfg)
        wait(lambda: (run / "serve.json").exists(), 30, "the runtime file")
        published = json.loads((run / "serve.json").read_text())
        assert published["url"] == s.url and published["pid"] == s.serve.pid
        text = s.cfg.read_text()
        # 1. listen edited: the running service says it needs a restart (before: the
        # CLI could not reach the new address at all)
        s.cfg.write_text(text.replace(s.listen, f"127.0.0.1:{free_port()}"))
        r = cli("--env-file", str(env_file), "reload", "-c", cfg, env=rt)
        assert r.returncode == 1 and "needs a restart" in r.stdout, r.stdout + r.stderr
        s.cfg.write_text(text)
        # 2. the token rotated in the environment file: reloadable
        new = "rotated-token-fedcba9876543210"
        env_file.write_text(f"ARBITER_T_OPS={new}\n")
        r = cli("--env-file", str(env_file), "reload", "-c", cfg, env=rt)
        assert r.returncode == 0 and "reloaded (SIGHUP to pid" in r.stdout, r.stdout + r.stderr
        p = cli("--env-file", str(env_file), "pause", "-c", cfg, "--for", "5m",
                "--reason", "x", env=rt)
        assert p.returncode == 0, p.stdout + p.stderr  # the new token is in force
    assert not (run / "serve.json").exists()  # removed at exit
