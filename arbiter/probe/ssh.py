"""Persistent asyncssh connections, strict host keys, and the one collect command.

One connection per node, kept open with keepalives and reused every round.
A failed connect or command closes the connection and returns a failed
result; the next round reconnects. Nothing here raises into the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import shlex
import time
from dataclasses import dataclass
from typing import Protocol

import asyncssh

from arbiter.model import Address

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    address: str
    port: int
    username: str


@dataclass(frozen=True, slots=True)
class CommandResult:
    ok: bool  # connected and the command ran (whatever its exit status)
    exit_status: int | None
    stdout: str
    stderr: str
    error: str | None
    duration_ms: float


class Runner(Protocol):
    """How the arbiter runs commands on directors. ``SshPool`` is the real one; tests
    wrap it (never replace it with a mock)."""

    async def run(self, target: Target, command: str, timeout: float) -> CommandResult: ...

    async def run_in_session(self, target: Target, command: str,
                             timeout: float) -> CommandResult: ...

    def stream(self, target: Target, command: str): ...  # type: ignore[no-untyped-def]

    def sessionless(self) -> set[tuple[str, str]]: ...

    async def close(self) -> None: ...


def _describe(exc: BaseException, connect_timeout: float) -> str:
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        return f"host key not verifiable (strict known_hosts): {exc.reason}"
    if isinstance(exc, asyncssh.PermissionDenied):
        return f"authentication failed: {exc.reason}"
    if isinstance(exc, asyncssh.DisconnectError):
        return f"disconnected: {exc.reason}"
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return f"timed out after {connect_timeout}s"
    if isinstance(exc, OSError):
        return f"connect failed: {exc.strerror or exc}"
    return f"{type(exc).__name__}: {exc}"


# AES-GCM first: asyncssh builds new cipher objects for every chacha20-poly1305
# packet, while GCM keeps one context per direction. Profiled at 100 nodes, chacha20
# was the largest single CPU cost of a round. The rest stay acceptable as fallbacks.
ENCRYPTION_ALGS = [
    "aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com",
    "aes128-ctr", "aes256-ctr",
]


def session_line(command: str, done: str) -> str:
    """One line for a long-lived `sh`: run `command`, then write its output, the done
    marker and the exit status in one printf, so the answer leaves the node as one
    write and arrives as one SSH packet (per line of output it was several: at 1000
    nodes, packets received are most of a round's CPU)."""
    return f"o=$({command}); s=$?; printf '%s\\n{done} %s\\n' \"$o\" \"$s\"\n"


class SshPool:
    """A node -> connection map. Safe for concurrent use by rounds and fences."""

    def __init__(
        self,
        client_keys: list[str],
        known_hosts: str,
        connect_timeout: float,
        keepalive_interval: float = 5.0,
        max_concurrent_connects: int = 100,
    ):
        self._keys = [asyncssh.read_private_key(k) for k in client_keys]
        self._known_hosts = asyncssh.read_known_hosts(known_hosts)
        self.connect_timeout = connect_timeout
        self.keepalive_interval = keepalive_interval
        self._conns: dict[Target, asyncssh.SSHClientConnection] = {}
        self._sessions: dict[Target, asyncssh.SSHClientProcess] = {}
        self._no_session: set[Target] = set()  # refused a session once: use run()
        self._locks: dict[Target, asyncio.Lock] = {}
        # Bounded connect storms: sshd's MaxStartups drops excess unauthenticated
        # connections, and a cold start of 1000 nodes must not trip it.
        self._connect_slots = asyncio.Semaphore(max_concurrent_connects)

    async def _connection(self, t: Target) -> asyncssh.SSHClientConnection:
        conn = self._conns.get(t)
        if conn is not None and not conn.is_closed():
            return conn
        lock = self._locks.setdefault(t, asyncio.Lock())
        async with lock:
            conn = self._conns.get(t)
            if conn is not None and not conn.is_closed():
                return conn
            async with self._connect_slots:
                conn = await asyncio.wait_for(
                    asyncssh.connect(
                        t.address, port=t.port, username=t.username,
                        client_keys=self._keys, known_hosts=self._known_hosts,
                        agent_path=None, config=None,
                        keepalive_interval=self.keepalive_interval, keepalive_count_max=3,
                        connect_timeout=self.connect_timeout,
                        encryption_algs=ENCRYPTION_ALGS,
                    ),
                    self.connect_timeout,
                )
            self._conns[t] = conn
            log.info("ssh connected to %s (%s:%d)", t.name, t.address, t.port)
            return conn

    def drop(self, t: Target) -> None:
        proc = self._sessions.pop(t, None)
        if proc is not None:
            proc.close()
        conn = self._conns.pop(t, None)
        if conn is not None:
            conn.close()

    def sessionless(self) -> set[tuple[str, str]]:
        """(name, address) of nodes that refused a collect session: a channel per round."""
        return {(t.name, t.address) for t in self._no_session}

    async def run_in_session(self, target: Target, command: str, timeout: float) -> CommandResult:
        """Run a one-line command in this node's long-lived `sh`: no channel setup per
        round. Falls back to run() for nodes that refuse a session (e.g. a forced
        command that only allows exact commands)."""
        if target in self._no_session:
            return await self.run(target, command, timeout)
        start = time.perf_counter()
        done = f"@@arbiter-done {id(self)}"
        fresh = False
        try:
            proc = self._sessions.get(target)
            if proc is None or proc.is_closing():
                conn = await self._connection(target)
                # stderr is discarded: nothing reads it between rounds, and unread it
                # would fill the channel window and stall the session after a while
                proc = await conn.create_process("sh", encoding="utf-8",
                                                 stderr=asyncssh.DEVNULL)
                self._sessions[target] = proc
                fresh = True
            proc.stdin.write(session_line(command, done))
            async with asyncio.timeout(timeout):
                # one read up to the marker, not a readline per output line (profiled)
                try:
                    body = await proc.stdout.readuntil(f"{done} ")
                except asyncio.IncompleteReadError:  # the session ended: refused or died
                    raise ConnectionResetError("session closed") from None
                status = int((await proc.stdout.readline()).strip() or "-1")
            out = [body[: -len(done) - 1]]
        except TimeoutError:
            self.drop(target)
            return CommandResult(False, None, "", "", f"command timed out after {timeout}s",
                                 (time.perf_counter() - start) * 1000)
        except Exception as exc:  # noqa: BLE001
            if fresh or isinstance(exc, ConnectionResetError):
                # No working session: a refused shell, or one that died. Remember a
                # refusal, and use a channel per command.
                proc = self._sessions.pop(target, None)
                if proc is not None:
                    proc.close()
                if fresh:
                    self._no_session.add(target)
                    log.info("%s refused a collect session (%s); using a channel per round",
                             target.name, exc)
                return await self.run(target, command, timeout)
            self.drop(target)
            return CommandResult(False, None, "", "", _describe(exc, self.connect_timeout),
                                 (time.perf_counter() - start) * 1000)
        return CommandResult(True, status, "".join(out), "", None,
                             (time.perf_counter() - start) * 1000)

    async def run(self, target: Target, command: str, timeout: float) -> CommandResult:
        start = time.perf_counter()
        try:
            conn = await self._connection(target)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a value
            self.drop(target)
            return CommandResult(False, None, "", "", _describe(exc, self.connect_timeout),
                                 (time.perf_counter() - start) * 1000)
        try:
            res = await asyncio.wait_for(conn.run(command, check=False), timeout)
        except TimeoutError:
            self.drop(target)
            return CommandResult(False, None, "", "", f"command timed out after {timeout}s",
                                 (time.perf_counter() - start) * 1000)
        except Exception as exc:  # noqa: BLE001
            self.drop(target)
            return CommandResult(False, None, "", "", _describe(exc, self.connect_timeout),
                                 (time.perf_counter() - start) * 1000)
        return CommandResult(
            True, res.exit_status, _text(res.stdout), _text(res.stderr), None,
            (time.perf_counter() - start) * 1000,
        )

    async def stream(self, target: Target, command: str):  # type: ignore[no-untyped-def]
        """Run a long-lived command on the pooled connection; yield "" once it runs,
        then its output lines. Ends (without raising) when the command or the
        connection ends."""
        try:
            conn = await self._connection(target)
            proc = await conn.create_process(command)
        except Exception as exc:  # noqa: BLE001
            self.drop(target)
            log.debug("stream %s on %s failed: %s", command, target.name, exc)
            return
        try:
            yield ""
            async for line in proc.stdout:
                yield _text(line)
        except Exception as exc:  # noqa: BLE001
            log.debug("stream on %s ended: %s", target.name, exc)
        finally:
            proc.close()

    async def close(self) -> None:
        for proc in self._sessions.values():
            proc.close()
        self._sessions.clear()
        conns = list(self._conns.values())
        self._conns.clear()
        for c in conns:
            c.close()
        for c in conns:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(c.wait_closed(), 2)


def _text(v: str | bytes | None) -> str:
    if v is None:
        return ""
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else v


# --- the collect command ----------------------------------------------------

MARK = "@@arbiter-collect v1"
MONITOR = "ip -o monitor address"  # push: one line per address added or deleted


def _ping_loop(addrs: list[str], w: int) -> str:
    if not addrs:
        return ""
    quoted = " ".join(shlex.quote(a) for a in addrs)
    return (
        f"for g in {quoted}; do ( if ping -n -q -c 1 -W {w} \"$g\" >/dev/null 2>&1; "
        'then echo "$g up"; else echo "$g down"; fi ) & done; wait; '
    )


def collect_command(
    gateways: list[str], ping_timeout: float, peers: list[str] | None = None
) -> str:
    """One POSIX sh command: addresses, keepalived state, the node's own view of its
    gateways and of its peers. Pings run in parallel: one ping timeout at most."""
    w = max(1, math.ceil(ping_timeout))
    peer_part = f"echo @@peers; {_ping_loop(peers, w)}" if peers else ""
    return (
        f"echo '{MARK}'; echo @@addr; ip -j addr show; echo; echo @@keepalived; "
        "if pidof keepalived >/dev/null 2>&1; then echo running; else echo stopped; fi; "
        f"echo @@gw; {_ping_loop(gateways, w)}{peer_part}echo @@end"
    )


@dataclass(frozen=True, slots=True)
class NodeFacts:
    addresses: tuple[Address, ...]
    keepalived_running: bool
    gateways: tuple[tuple[str, bool], ...]
    peers: tuple[tuple[str, bool], ...] = ()


class CollectParseError(ValueError):
    pass


def _updown(lines: list[str]) -> dict[str, bool]:
    seen: dict[str, bool] = {}
    for line in lines:
        parts = line.split()
        if len(parts) == 2 and parts[1] in ("up", "down"):
            seen[parts[0]] = parts[1] == "up"
    return seen


def parse_collect(
    stdout: str, gateways: list[str], peers: list[str] | None = None
) -> NodeFacts:
    sections: dict[str, list[str]] = {}
    cur = None
    for line in stdout.splitlines():
        if line.startswith("@@") and not line.startswith("@@arbiter"):
            cur = line[2:].strip()
            sections[cur] = []
        elif cur is not None:
            sections[cur].append(line)
    for need in ("addr", "keepalived", "gw", "end"):
        if need not in sections:
            raise CollectParseError(f"collect output lacks the @@{need} section")
    try:
        raw = json.loads("\n".join(sections["addr"]).strip() or "[]")
    except json.JSONDecodeError as exc:
        raise CollectParseError(f"`ip -j addr` output is not JSON ({exc.msg}); "
                                "does the node have iproute2 with JSON support?") from None
    addrs = []
    for link in raw:
        ifname = link.get("ifname", "?")
        for ai in link.get("addr_info", []):
            if "local" in ai:
                addrs.append(Address(ai.get("label", ifname) if ifname == "lo" else ifname,
                                     ai["local"], int(ai.get("prefixlen", 32))))
    ka = [x.strip() for x in sections["keepalived"] if x.strip()]
    if ka not in (["running"], ["stopped"]):
        raise CollectParseError(f"unexpected keepalived state {ka!r}")
    seen = _updown(sections["gw"])
    peer_seen = _updown(sections.get("peers", []))
    return NodeFacts(
        addresses=tuple(addrs),
        keepalived_running=ka == ["running"],
        gateways=tuple((g, seen.get(g, False)) for g in gateways),
        peers=tuple((p, peer_seen.get(p, False)) for p in peers or []),
    )
