"""Driving the network-namespace lab from Python: used by the lab tests and by
bench/window.py. Traffic stays inside the lab's namespaces: the API is reached with
`ip netns exec <arbiter ns> curl http://127.0.0.1:8080`.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LAB = REPO / "deploy" / "lab" / "lab"
VIP1, VIP2 = "192.168.77.100", "192.168.77.200"
VIP6 = "fd77:77:77::100"  # lab up --ipv6 / --dual-stack
DIRECTORS = ("lb1", "lb2")


class Lab:
    def __init__(self, variant: str, up: tuple[str, ...] = ()):
        """``variant``: "active-backup", "dual-master+gate", "active-backup+ha3",
        "active-backup+spare" (lb3, left out of the arbiter's config), ...;
        ``up``: more `lab up` options (``--advert-int 0.5 --vrrp-version 3``)."""
        variant, _, extra = variant.partition("+")
        self.variant = variant
        self.env = {**os.environ, "PYTHON": sys.executable,
                    "ARBITER_BIN": str(Path(sys.executable).parent / "arbiter")}
        extras = extra.split("+") if extra else []
        flags = ["--gate"] if "gate" in extras else []
        flags += ["--spare"] if "spare" in extras else []
        self.directors = DIRECTORS + (("lb3",) if "spare" in extras else ())
        ha = next((e[2:] for e in extras if e.startswith("ha")), "")
        if ha:
            flags += ["--ha", ha]
        self.arbiters = ("arb", "arb2", "arb3")[:int(ha)] if ha else ("arb",)
        # --ipv6/--dual-stack: the arbiter listens on [::] and is asked on ::1
        self.ipv6 = bool({"--ipv6", "--dual-stack"} & set(up))
        self.loopback = "[::1]" if self.ipv6 else "127.0.0.1"
        out = self._run("up", "--variant", variant, *flags, *up, "--owner", str(os.getpid()))
        self.id = out.strip().splitlines()[-1]
        self.env["LAB_ID"] = self.id
        self.dir = Path(self._run("dir").strip())

    def _run(self, *args: str, check: bool = True, timeout: float = 60) -> str:
        p = subprocess.run(["bash", str(LAB), *args], capture_output=True, text=True,
                           env=self.env, timeout=timeout)
        if check and p.returncode != 0:
            raise RuntimeError(f"lab {' '.join(args)} failed ({p.returncode}): {p.stderr}")
        return p.stdout

    def ns(self, host: str) -> str:
        return f"al-{self.id}-{host}"

    # --- control -----------------------------------------------------------------
    def fault(self, name: str, *hosts: str) -> None:
        """``hosts``: the host the fault is on, and for arbiter-cut the target."""
        self._run("fault", name, *[h for h in hosts if h])

    def heal(self, name: str, *hosts: str) -> None:
        self._run("heal", name, *[h for h in hosts if h])

    def configs(self) -> list[Path]:
        """Every arbiter's config (with --ha, one per arbiter host)."""
        return [self.dir / "arbiter.toml", *sorted(self.dir.glob("arbiter-*.toml"))]

    def set_arbiter(self, **values: object) -> None:
        """Edit the [arbiter] section of every arbiter's config before starting it."""
        self._set("[arbiter]", values)

    def set_cluster(self, **values: object) -> None:
        """Edit keys of the [[clusters]] section of every arbiter's config."""
        self._set("[[clusters]]", values)

    def set_ha(self, host: str | None = None, **values: object) -> None:
        """Edit keys of the [ha] section of one arbiter's config (``host``), or of
        every arbiter's."""
        self._set("[ha]", values, [self.dir / f"arbiter-{host}.toml"] if host else None)

    def _set(self, section: str, values: dict[str, object],
             paths: list[Path] | None = None) -> None:
        for p in paths or self.configs():
            if section not in p.read_text().splitlines():
                continue
            text = p.read_text()
            for k, v in values.items():
                lines = [ln for ln in text.splitlines() if not ln.startswith(f"{k} =")]
                i = lines.index(section)
                value = json.dumps(v) if not isinstance(v, dict) else \
                    "{ " + ", ".join(f"{ik} = {json.dumps(iv)}" for ik, iv in v.items()) + " }"
                lines.insert(i + 1, f"{k} = {value}")
                text = "\n".join(lines) + "\n"
            p.write_text(text)

    def token(self, who: str) -> str:
        return (self.dir / f"{who}.token").read_text().strip()

    def post(self, path: str, body: dict | None = None,
             token: str | None = None, host: str = "arb") -> tuple[int, dict]:
        cmd = ["ip", "netns", "exec", self.ns(host), "curl", "-sS", "--max-time", "10",
               "-o", "-", "-w", "\n%{http_code}", "-X", "POST",
               "-H", "Content-Type: application/json", "-d", json.dumps(body or {})]
        if token is not None:
            cmd += ["-H", f"Authorization: Bearer {token}"]
        p = subprocess.run(cmd + [f"http://{self.loopback}:8080{path}"], capture_output=True,
                           text=True, timeout=15)
        out, _, code = p.stdout.rpartition("\n")
        return int(code), json.loads(out) if out else {}

    def start_arbiter(self, host: str = "arb", env: dict[str, str] | None = None) -> None:
        saved, self.env = self.env, {**self.env, **(env or {})}
        try:
            self._run("arbiter", "start", "--host", host)
        finally:
            self.env = saved

    def reconf(self, *args: str) -> None:
        """Rewrite the directors' keepalived.conf (e.g. ``--gate-rise 2``) and reload."""
        self._run("reconf", *args)

    def kill_arbiter(self, host: str = "arb") -> None:
        self._run("arbiter", "kill", "--host", host)

    def signal_arbiter(self, what: str, host: str = "arb") -> None:
        """pause (SIGSTOP) or resume (SIGCONT)."""
        self._run("arbiter", what, "--host", host)

    def arbiter_log(self, host: str = "arb") -> str:
        return self._run("arbiter", "log", "--host", host, check=False)

    def dump_logs(self, lines: int = 15) -> None:
        """The holders and the tails of keepalived's and the arbiter's logs, on stderr:
        what a failed benchmark run needs to be understood."""
        print(f"---- holders {self.holders()}", file=sys.stderr)
        for h in DIRECTORS:
            log = (self.dir / h / "log" / "keepalived.log").read_text().splitlines()
            keep = [ln for ln in log if "gratuitous" not in ln][-lines:]
            print(f"---- {h} keepalived.log ----\n" + "\n".join(keep), file=sys.stderr)
        print("---- arbiter ----\n" + "\n".join(self.arbiter_log().splitlines()[-lines:]),
              file=sys.stderr)

    def down(self) -> None:
        self._run("down", check=False)

    # --- observe (real state, read with ip inside the namespaces) ----------------
    def holders(self) -> dict[str, list[str]]:
        """VIP -> directors holding it on a non-loopback interface."""
        out: dict[str, list[str]] = {VIP1: [], VIP2: [], **({VIP6: []} if self.ipv6 else {})}
        for h in self.directors:
            for a in self.addresses(h):
                if a["ifname"] != "lo" and a["address"] in out:
                    out[a["address"]].append(h)
        return out

    def addresses(self, host: str) -> list[dict[str, str]]:
        p = subprocess.run(["ip", "-n", self.ns(host), "-j", "addr", "show"],
                           capture_output=True, text=True, check=True)
        return [{"ifname": link["ifname"], "address": ai["local"]}
                for link in json.loads(p.stdout) for ai in link.get("addr_info", [])]

    def exec(self, host: str, script: str) -> subprocess.CompletedProcess:
        """Run a shell script on a lab host (its own namespaces), as `lab exec` does."""
        return subprocess.run(["bash", str(LAB), "exec", host, "sh", "-c", script],
                              capture_output=True, text=True, env=self.env, timeout=30)

    def allow_on(self, host: str, command: str) -> None:
        """Let the host's forced-command wrapper run ``command`` (an `allow` line)."""
        line = f"allow {command}".replace("'", "'\\''")
        p = self.exec(host, f"printf '%s\\n' '{line}' >> /run/arbiter/ssh-wrapper.conf")
        if p.returncode != 0:
            raise RuntimeError(f"allow on {host}: {p.stderr}")

    def keepalived_running(self, host: str) -> bool:
        p = subprocess.run(["bash", str(LAB), "exec", host, "pidof", "keepalived"],
                           capture_output=True, text=True, env=self.env)
        return p.returncode == 0

    def api(self, path: str, host: str = "arb") -> dict:
        p = subprocess.run(
            ["ip", "netns", "exec", self.ns(host), "curl", "-sS", "--max-time", "5",
             f"http://{self.loopback}:8080{path}"],
            capture_output=True, text=True, timeout=10,
        )
        if p.returncode != 0:
            raise RuntimeError(f"API {path}: {p.stderr}")
        return json.loads(p.stdout)

    def metric(self, name: str, host: str = "arb") -> float:
        """The sum of a metric's samples on the arbiter's /metrics (every label)."""
        p = subprocess.run(
            ["ip", "netns", "exec", self.ns(host), "curl", "-sS", "--max-time", "5",
             f"http://{self.loopback}:8080/metrics"],
            capture_output=True, text=True, timeout=10, check=True)
        return sum(float(line.rsplit(" ", 1)[1]) for line in p.stdout.splitlines()
                   if line.startswith((name + "{", name + " ")))

    def sql(self, query: str) -> list[dict]:
        """Rows of ``query`` on the lab's PostgreSQL (--ha), as dicts: asked from the db
        host's own namespace with psql."""
        p = subprocess.run(
            ["ip", "netns", "exec", self.ns("db"), "su", "postgres", "-s", "/bin/sh", "-c",
             "cd / && psql -h 192.168.77.5 -d arbiter -Atq -v ON_ERROR_STOP=1 -f -"],
            input=f"SELECT coalesce(json_agg(t), '[]') FROM ({query}) t;\n",
            capture_output=True, text=True, timeout=20)
        if p.returncode != 0:
            raise RuntimeError(f"sql: {p.stderr.strip()}")
        return json.loads(p.stdout)

    def incidents(self, kind: str | None = None, host: str = "arb") -> list[dict]:
        items = self.api("/incidents?limit=500", host)["items"]
        return [i for i in items if kind is None or i["kind"] == kind]

    def verdict(self, node: str) -> dict:
        return self.api(f"/verdict?cluster=web&node={node}")


def wait_for(pred: Callable[[], object], timeout: float, what: str, every: float = 0.1):
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = pred()
        except (RuntimeError, json.JSONDecodeError, KeyError) as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class Window:
    """Measures the split-brain window from real VIP ownership, polled every 50 ms:
    from the first moment a VIP has two holders to the moment one remains."""

    def __init__(self, lab: Lab, vips: tuple[str, ...] = (VIP1,)):
        self.lab, self.vips = lab, vips
        self.dual_at: float | None = None
        self.single_at: float | None = None

    def _dual(self) -> bool:
        h = self.lab.holders()
        return any(len(h[v]) >= 2 for v in self.vips)

    def watch(self, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dual = self._dual()
            now = time.monotonic()
            if dual and self.dual_at is None:
                self.dual_at = now
            if self.dual_at is not None and not dual:
                self.single_at = now
                window = self.single_at - self.dual_at
                print(f"\nsplit-brain window: {window:.2f}s")
                return window
            time.sleep(0.05)
        raise AssertionError(
            f"split brain {'never appeared' if self.dual_at is None else 'never ended'} "
            f"within {timeout}s; holders {self.lab.holders()}"
        )


def release_recovers(lab: Lab, incident_id: int, node: str, reason: str) -> None:
    """An operator's release of ``node``: answered 200 with recover_command's success,
    keepalived running on the node again, and the incident resolved."""
    code, body = lab.post(f"/incidents/{incident_id}/release", {"reason": reason},
                          lab.token("ops"))
    assert code == 200 and body["released"] == [node] and body["recover"][0]["ok"], body
    wait_for(lambda: lab.keepalived_running(node), 10, f"keepalived back on {node}")
    assert lab.api(f"/incidents/{incident_id}")["state"] == "resolved"


def steady(lab: Lab, holders: dict[str, list[str]] | None = None, timeout: float = 20) -> None:
    """Wait for keepalived to elect its masters, start the arbiter, and wait until it
    has observed that state (starting it earlier would record the election itself
    as an orphaned VIP)."""
    want = holders or {VIP1: ["lb1"]}
    wait_for(lambda: all(lab.holders()[v] == h for v, h in want.items()), timeout,
             f"keepalived to elect {want}")
    lab.start_arbiter()

    def ok() -> bool:
        st = lab.api("/status")
        (web,) = st["clusters"]
        return web["holders"] == want and all(n["health"] == "healthy" for n in web["nodes"])

    wait_for(ok, timeout, f"steady state {want}")


def sshd_down_then_cut(lab: Lab, host: str = "lb2") -> tuple[dict, float]:
    """Stop ``host``'s sshd, wait until the arbiter sees its SSH down, then cut VRRP:
    the split-brain incident that opens, and when the cut was made."""
    lab.fault("sshd-stop", host)
    wait_for(lambda: not next(n for n in lab.api("/status")["clusters"][0]["nodes"]
                              if n["name"] == host)["ssh"]["ok"], 15, f"{host}'s SSH down")
    t0 = time.time()
    lab.fault("vrrp-cut")
    (inc,) = wait_for(lambda: lab.incidents("split_brain"), 15, "split brain opened")
    return inc, t0


class AddrEvents:
    """Kernel address events for one VIP (VIP1 by default) on both directors, with their
    timestamps."""

    def __init__(self, lab: Lab, vip: str = VIP1):
        self.vip = vip
        self.q: queue.Queue[tuple[str, str, float]] = queue.Queue()
        self.procs = []
        for h in ("lb1", "lb2"):
            p = subprocess.Popen(["ip", "-n", lab.ns(h), "-ts", "-o", "monitor", "address"],
                                 stdout=subprocess.PIPE, text=True, env={**os.environ,
                                                                         "TZ": "UTC"})
            self.procs.append(p)
            threading.Thread(target=self._read, args=(h, p), daemon=True).start()

    def _read(self, host: str, p: subprocess.Popen) -> None:
        assert p.stdout is not None
        for line in p.stdout:
            if f" {self.vip}/" not in line:
                continue
            ts = datetime.fromisoformat(line[1:line.index("]")] + "+00:00").timestamp()
            self.q.put((host, "del" if "Deleted" in line else "add", ts))

    def wait(self, kind: str, timeout: float, host: str | None = None) -> tuple[str, float]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                h, k, ts = self.q.get(timeout=0.1)
            except queue.Empty:
                continue
            if k == kind and (host is None or h == host):
                return h, ts
        raise TimeoutError(f"no VIP {kind} event within {timeout}s")

    def drain(self) -> None:
        while not self.q.empty():
            self.q.get_nowait()

    def close(self) -> None:
        for p in self.procs:
            p.kill()
