"""Issue 30: under `log_format = "json"` every stderr line is JSON, tested with an
unlocked install as the issue saw it: `pip install .` from `pyproject.toml`'s ranges
into a new venv (on 2026-12-07 pip chose cryptography 51, whose
CryptographyDeprecationWarning asyncssh 2.24 raises at import, before any logging is
set up). Then `arbiter sim` directors and that venv's `arbiter serve` for a few
rounds, stopped with SIGTERM as systemd stops it. Everything on 127.0.0.1."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[1]


def test_an_unlocked_install_logs_only_json(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = subprocess.run([str(venv / "bin/pip"), "install", "-q", "--no-cache-dir", str(REPO)],
                         capture_output=True, text=True, timeout=900)
    assert pip.returncode == 0, pip.stderr[-3000:]
    versions = subprocess.run([str(venv / "bin/pip"), "list", "--format=json"],
                              capture_output=True, text=True, check=True).stdout
    print({p["name"]: p["version"] for p in json.loads(versions)
           if p["name"] in ("cryptography", "asyncssh")})
    arbiter = str(venv / "bin/arbiter")
    sim = subprocess.Popen([arbiter, "sim", "-o", str(tmp_path / "sim"), "--scenario",
                            "healthy", "--port", str(free_port()), "--seconds", "60"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    serve = None
    try:
        assert sim.stdout is not None
        # its own warnings (text: the sim has no log_format) come first
        first = [sim.stdout.readline() for _ in range(1)]
        while "config:" not in first[-1] and len(first) < 50 and first[-1]:
            first.append(sim.stdout.readline())
        assert "config:" in first[-1], first
        cfg = tmp_path / "sim" / "arbiter.toml"
        text = re.sub(r'listen = ".*"', f'listen = "127.0.0.1:{free_port()}"', cfg.read_text())
        cfg.write_text(text.replace("[arbiter]\n", '[arbiter]\nlog_format = "json"\n', 1))
        err = tmp_path / "serve.err"
        with err.open("w") as f:
            serve = subprocess.Popen([arbiter, "serve", "-c", str(cfg)], stderr=f,
                                     stdout=subprocess.DEVNULL)
        time.sleep(4.0)  # a few rounds: start-up, the first collect, the view
        serve.terminate()
        assert serve.wait(30) == 0
    finally:
        for p in (serve, sim):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(10)
    lines = err.read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every line parses, or this fails
    assert any(r["logger"].startswith("arbiter") for r in records), lines[:5]
    warned = [r for r in records if r["logger"] == "py.warnings"]
    print(f"{len(records)} JSON lines, {len(warned)} of them Python warnings")
