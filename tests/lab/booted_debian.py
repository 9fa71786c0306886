"""A stock Debian 12 booted with systemd, inside a lab namespace (issue 30).

`debootstrap --variant=minbase bookworm` plus `systemd-sysv` (what makes a Debian
machine boot with systemd), then `systemd-nspawn`: once without booting, on the
machine's network, to fetch what apt will need; then `--boot`, with the network
namespace of a lab host, so the units run under the real systemd as shipped.
Commands reach the booted machine with `nsenter` into its PID 1 (no machined here:
`--register=no`). Everything dies with the container: stop() powers it off, and kills
the nspawn process by its id when that does not end it in time; the root is deleted.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

MIRROR = os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian")
ROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def why_not_bootable() -> str | None:
    missing = [t for t in ("debootstrap", "systemd-nspawn", "nsenter") if not shutil.which(t)]
    if missing:
        return f"needs {', '.join(missing)} (bash deploy/bootstrap.sh --test installs them)"
    return None


class BootedDebian:
    """A fresh Debian 12 root under ``work``, made when the constructor returns."""

    def __init__(self, work: Path, include: tuple[str, ...] = ("systemd-sysv", "dbus")):
        self.work = work
        self.root = work / "root"
        self.nspawn: subprocess.Popen | None = None
        self.leader: int | None = None
        self.boot_log = work / "boot.log"
        work.mkdir(parents=True, exist_ok=True)
        log = work / "debootstrap.log"
        with log.open("w") as f:
            p = subprocess.run(["debootstrap", "--variant=minbase",
                                f"--include={','.join(include)}", "bookworm",
                                str(self.root), MIRROR], stdout=f, stderr=subprocess.STDOUT,
                               timeout=900)
        if p.returncode != 0:
            raise RuntimeError("debootstrap failed:\n" + "\n".join(
                log.read_text().splitlines()[-20:]))
        # what a new machine has: localhost, but not its own name
        (self.root / "etc/hosts").write_text("127.0.0.1\tlocalhost\n")
        (self.root / "srv/extra").mkdir(parents=True, exist_ok=True)

    def put(self, src: Path, name: str | None = None, mode: int = 0o644) -> str:
        """Copy ``src`` into the root's /srv/extra; its path inside."""
        dst = self.root / "srv/extra" / (name or src.name)
        shutil.copyfile(src, dst)
        dst.chmod(mode)
        return f"/srv/extra/{dst.name}"

    def prepare(self, script: str, timeout: float = 900) -> subprocess.CompletedProcess:
        """``script`` in the root, not booted, on this machine's network (apt's mirror)."""
        return subprocess.run(
            ["systemd-nspawn", "-q", "--register=no", "--keep-unit", "--pipe",
             "--resolv-conf=copy-host", "-D", str(self.root), "--chdir=/srv/extra",
             "/usr/bin/env", "-i", f"PATH={ROOT_PATH}", "HOME=/root",
             "DEBIAN_FRONTEND=noninteractive", "bash", "-euc", script],
            capture_output=True, text=True, timeout=timeout)

    def boot(self, netns: Path, timeout: float = 90) -> None:
        """Boot with systemd, in the network namespace at ``netns``; return once
        `systemctl is-system-running` has settled."""
        with self.boot_log.open("w") as f:
            self.nspawn = subprocess.Popen(
                ["systemd-nspawn", "--boot", "--register=no", "--keep-unit", "-q",
                 "--console=pipe", f"--network-namespace-path={netns}",
                 "-D", str(self.root)],
                stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while self.leader is None and time.monotonic() < deadline:
            self.leader = self._child_systemd()
            if self.nspawn.poll() is not None:
                raise RuntimeError(f"systemd-nspawn ended ({self.nspawn.returncode}): "
                                   f"{self.boot_log.read_text()[-2000:]}")
            time.sleep(0.2)
        if self.leader is None:
            raise RuntimeError(f"no systemd in the container after {timeout} s")
        state = self.run("systemctl is-system-running --wait",
                         timeout=max(1.0, deadline - time.monotonic()))
        if state.stdout.strip() not in ("running", "degraded"):
            raise RuntimeError(f"the container did not boot: {state.stdout}{state.stderr}")

    def _child_systemd(self) -> int | None:
        assert self.nspawn is not None
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
                comm = (d / "comm").read_text().strip()
            except OSError:
                continue
            if int(fields[1]) == self.nspawn.pid and comm == "systemd":
                return int(d.name)
        return None

    def run(self, script: str, stdin: str | None = None, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess:
        """``script`` in the booted machine, as root in a new login-like shell (no LANG,
        no venv), in /srv/extra; bash -e: the first failing command fails it."""
        assert self.leader is not None, "boot() first"
        extra = [f"{k}={v}" for k, v in (env or {}).items()]
        return subprocess.run(
            ["nsenter", "-t", str(self.leader), "-a", "/usr/bin/env", "-i",
             f"PATH={ROOT_PATH}", "HOME=/root", "TERM=dumb", *extra,
             "bash", "-ec", f"cd /srv/extra\n{script}"],
            input=stdin, capture_output=True, text=True, timeout=timeout)

    def stop(self) -> None:
        """Power off, or end nspawn by its id (SIGTERM twice, then SIGKILL); remove the root."""
        try:
            if self.nspawn is not None and self.nspawn.poll() is None:
                if self.leader is not None:
                    subprocess.run(["nsenter", "-t", str(self.leader), "-a",
                                    "systemctl", "poweroff", "--no-block"],
                                   capture_output=True, timeout=20)
                for sig in (None, signal.SIGTERM, signal.SIGTERM, signal.SIGKILL):
                    if sig is not None:
                        self.nspawn.send_signal(sig)
                    try:
                        self.nspawn.wait(timeout=15)
                        break
                    except subprocess.TimeoutExpired:
                        continue
        finally:
            subprocess.run(["rm", "-rf", "--one-file-system", str(self.work)],
                           capture_output=True, timeout=120)
