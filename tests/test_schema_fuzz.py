"""Schemathesis against a running `arbiter serve`: every operation of the OpenAPI
schema, every check, 200 examples each, without a token and with an operator token.
The result must be 0 server errors and 0 schema violations."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.common import stop_process
from tests.conftest import free_port

OPS = "ops-token-0123456789abcdef"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    work = tmp_path_factory.mktemp("fuzz")
    port, ssh_port = free_port(), free_port()
    sim = subprocess.Popen([sys.executable, "-m", "arbiter.cli", "sim", "-o", str(work),
                            "--scenario", "split", "--port", str(ssh_port), "--seconds", "900"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    srv = None
    try:
        assert sim.stdout is not None
        sim.stdout.readline()
        cfg = work / "arbiter.toml"
        cfg.write_text(cfg.read_text().replace('listen = "127.0.0.1:8080"',
                                               f'listen = "127.0.0.1:{port}"')
                       + f'\n[api]\ntokens = {{ops = "{OPS}"}}\n')
        srv = subprocess.Popen([sys.executable, "-m", "arbiter.cli", "--log-level", "warning",
                                "serve", "-c", str(cfg)], stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{url}/healthz", timeout=1).read()
                break
            except OSError:
                time.sleep(0.2)
        yield url
    finally:
        stop_process(srv)
        stop_process(sim)


@pytest.mark.parametrize("token", [None, OPS], ids=["anonymous", "operator"])
def test_schemathesis_finds_nothing(served: str, token: str | None, tmp_path: Path) -> None:
    st = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert st, "schemathesis is a test dependency (pip install -e .[test])"
    auth = ["-H", f"Authorization: Bearer {token}"] if token else []
    res = subprocess.run([st, "run", f"{served}/openapi.json", "--checks", "all",
                          "--max-examples", "200", "--request-timeout", "40", "--seed", "1",
                          "--no-color", *auth], capture_output=True, text=True, timeout=900,
                         cwd=tmp_path)
    summary = "\n".join(res.stdout.splitlines()[-25:])
    assert res.returncode == 0, res.stdout[-6000:]
    assert " passed" in summary and "failures" not in summary.split("generated")[-1], summary
