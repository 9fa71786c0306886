"""`arbiter serve` on simulated directors in a split brain, as real processes: what
the CLI, notification and status-page tests run against."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from tests.conftest import free_port

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}
OPS_TOKEN = "ops-token-0123456789abcdef"


def cli(*args: str, timeout: float = 60,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "arbiter.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env={**ENV, **(env or {})})


def start(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "arbiter.cli", *args], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def stop(p: subprocess.Popen[str] | None) -> None:
    """Terminate, and kill after 15 s."""
    if p is None:
        return
    p.terminate()
    try:
        p.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()


class SimServe:
    """Two simulated directors in a split brain, and `arbiter serve` on a free port
    with an operator token and ``auto_release = false`` (a fenced node waits for an
    operator). ``extra``: more TOML appended to the config; ``edit``: a last change to
    its text (keys inside a section)."""

    def __init__(self, tmp_path: Path, extra: str = "", seconds: int = 180,
                 edit: Callable[[str], str] | None = None,
                 env: dict[str, str] | None = None):
        self.tmp_path, self.extra, self.seconds = tmp_path, extra, seconds
        self.env = {**ENV, **(env or {})}  # the service's own (its unit's EnvironmentFile)
        self.edit = edit or (lambda text: text)
        self.cfg = tmp_path / "arbiter.toml"
        self.listen = f"127.0.0.1:{free_port()}"
        self.url = f"http://{self.listen}"
        self.sim: subprocess.Popen[str] | None = None
        self.serve: subprocess.Popen[str] | None = None

    def __enter__(self) -> SimServe:
        self.sim = start(["sim", "-o", str(self.tmp_path), "--scenario", "split",
                          "--port", str(free_port()), "--seconds", str(self.seconds)])
        try:
            assert self.sim.stdout is not None and "config:" in self.sim.stdout.readline()
            text = re.sub(r'listen = ".*"', f'listen = "{self.listen}"', self.cfg.read_text())
            text = text.replace("[arbiter]\n", "[arbiter]\nauto_release = false\n", 1)
            text += f'\n[api]\ntokens = {{ ops = "{OPS_TOKEN}" }}\n{self.extra}'
            self.cfg.write_text(self.edit(text))
            self.start_serve()
        except BaseException:
            stop(self.sim)
            raise
        return self

    def start_serve(self) -> None:
        # its log to a file: a pipe nobody reads would stop it once full
        log = self.tmp_path / "serve.log"
        with log.open("a") as f:
            self.serve = subprocess.Popen(
                [sys.executable, "-m", "arbiter.cli", "serve", "-c", str(self.cfg)],
                env=self.env, stdout=f, stderr=subprocess.STDOUT, text=True)

    def stop_serve(self) -> str:
        stop(self.serve)
        self.serve = None
        log = self.tmp_path / "serve.log"
        return log.read_text() if log.exists() else ""

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        out = self.stop_serve()
        stop(self.sim)
        if e is not None and "Traceback" in out:
            print(out[-4000:])
