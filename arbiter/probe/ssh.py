"""Persistent asyncssh connections, strict host keys, and the one collect command.

One connection per node, kept open with keepalives and reused every round.
A failed connect or command closes the connection and returns a failed
result; the next round reconnects. Nothing here raises into the loop.

A command that times out closes the connection only when no other command is
running on it: after a stall of the arbiter itself (a paused VM, SIGSTOP) every
timeout in flight fires at once, and one of them (a track file write) must not
cut off another (a fence command) that has only just started. A connection that
really is dead still goes: the last command on it to time out closes it, and
the keepalives close it in any case.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import asyncssh

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

    def drop(self, target: Target) -> None: ...

    def trust(self, known_hosts: str) -> None: ...

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
        max_output: int = 1 << 20,
    ):
        self._keys = [asyncssh.read_private_key(k) for k in client_keys]
        self._known_hosts = asyncssh.read_known_hosts(known_hosts)
        self.connect_timeout = connect_timeout
        self.keepalive_interval = keepalive_interval
        # what one command may answer; a director whose output never ends is cut off
        # here, on every path, instead of driving our memory up
        self.max_output = max_output
        self._conns: dict[Target, asyncssh.SSHClientConnection] = {}
        self._sessions: dict[Target, asyncssh.SSHClientProcess] = {}
        self._no_session: set[Target] = set()  # refused a session once: use run()
        self._locks: dict[Target, asyncio.Lock] = {}
        self._running: Counter[Target] = Counter()  # commands in flight, per node
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
            log.info("ssh connected to %s (%s:%d)", t.name,
                     f"[{t.address}]" if ":" in t.address else t.address, t.port)
            return conn

    def trust(self, known_hosts: str) -> None:
        """Read the known_hosts file again (a reload: a new director's key added).
        Connections already open keep the key they checked; new ones use these.
        Raises ValueError naming the file when it cannot be read."""
        try:
            self._known_hosts = asyncssh.read_known_hosts(known_hosts)
        except (OSError, ValueError) as exc:
            raise ValueError(f"ssh.known_hosts: cannot read {known_hosts}: {exc}") from exc

    def drop(self, t: Target) -> None:
        """Close the connection to a node that left the config."""
        proc = self._sessions.pop(t, None)
        if proc is not None:
            proc.close()
        conn = self._conns.pop(t, None)
        if conn is not None:
            conn.close()

    def _timed_out(self, t: Target) -> None:
        """After a command on ``t`` timed out (its own channel already closed): close
        the connection unless another command is still running on it."""
        if self._running[t] <= 1:
            self.drop(t)
        else:
            log.debug("a command on %s timed out; %d more still run on its connection: "
                      "kept", t.name, self._running[t] - 1)

    @contextlib.contextmanager
    def _counted(self, t: Target) -> Iterator[None]:
        self._running[t] += 1
        try:
            yield
        finally:
            self._running[t] -= 1
            if self._running[t] <= 0:
                del self._running[t]

    def sessionless(self) -> set[tuple[str, str]]:
        """(name, address) of nodes that refused a collect session: a channel per round."""
        return {(t.name, t.address) for t in self._no_session}

    async def run_in_session(self, target: Target, command: str, timeout: float) -> CommandResult:
        """Run a one-line command in this node's long-lived `sh`: no channel setup per
        round. Falls back to run() for nodes that refuse a session (e.g. a forced
        command that only allows exact commands)."""
        with self._counted(target):
            if target in self._no_session:
                return await self._run_channel(target, command, timeout)
            return await self._run_session(target, command, timeout)

    async def _run_session(self, target: Target, command: str, timeout: float) -> CommandResult:
        start = time.perf_counter()
        done = f"@@arbiter-done {id(self)}"
        proc = self._sessions.get(target)
        fresh = proc is None or proc.is_closing()
        if fresh:
            # A failed connect is the node's error, not a refused session: no second
            # connect through run() (that made a dead node cost twice connect_timeout).
            try:
                conn = await self._connection(target)
            except Exception as exc:  # noqa: BLE001 - every failure becomes a value
                self.drop(target)
                return CommandResult(False, None, "", "", _describe(exc, self.connect_timeout),
                                     (time.perf_counter() - start) * 1000)
        try:
            if fresh:
                # stderr is discarded: nothing reads it between rounds, and unread it
                # would fill the channel window and stall the session after a while
                proc = await conn.create_process("sh", encoding="utf-8",
                                                 stderr=asyncssh.DEVNULL)
                self._sessions[target] = proc
            assert proc is not None
            proc.stdin.write(session_line(command, done))
            async with asyncio.timeout(timeout):
                body, status = await _read_answer(proc.stdout, done, self.max_output)
        except TimeoutError:
            # the session's answer is still coming: that shell is done with
            stale = self._sessions.pop(target, None)
            if stale is not None:
                stale.close()
            self._timed_out(target)
            return CommandResult(False, None, "", "", f"command timed out after {timeout}s",
                                 (time.perf_counter() - start) * 1000)
        except OutputTooLarge as exc:
            self.drop(target)  # the rest of it is still coming: start the node afresh
            return CommandResult(False, None, "", "", str(exc),
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
                return await self._run_channel(target, command, timeout)
            self.drop(target)
            return CommandResult(False, None, "", "", _describe(exc, self.connect_timeout),
                                 (time.perf_counter() - start) * 1000)
        return CommandResult(True, status, body, "", None, (time.perf_counter() - start) * 1000)

    async def run(self, target: Target, command: str, timeout: float) -> CommandResult:
        """A channel for one command; at most ``max_output`` characters of its stdout
        and of its stderr are read, then the command is closed."""
        with self._counted(target):
            return await self._run_channel(target, command, timeout)

    async def _run_channel(self, target: Target, command: str, timeout: float) -> CommandResult:
        start = time.perf_counter()
        try:
            conn = await self._connection(target)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a value
            self.drop(target)
            return CommandResult(False, None, "", "", _describe(exc, self.connect_timeout),
                                 (time.perf_counter() - start) * 1000)
        proc = None
        try:
            async with asyncio.timeout(timeout):
                proc = await conn.create_process(command, encoding="utf-8",
                                                 errors="replace")
                out, err = await asyncio.gather(_read_capped(proc.stdout, self.max_output),
                                                _read_capped(proc.stderr, self.max_output))
                await proc.wait_closed()
                status = proc.exit_status
        except TimeoutError:
            if proc is not None:
                proc.close()
            self._timed_out(target)
            return CommandResult(False, None, "", "", f"command timed out after {timeout}s",
                                 (time.perf_counter() - start) * 1000)
        except OutputTooLarge as exc:
            if proc is not None:
                proc.close()
            self.drop(target)  # what it still sends is in flight: start the node afresh
            return CommandResult(False, None, "", "", str(exc),
                                 (time.perf_counter() - start) * 1000)
        except Exception as exc:  # noqa: BLE001
            self.drop(target)
            return CommandResult(False, None, "", "", _describe(exc, self.connect_timeout),
                                 (time.perf_counter() - start) * 1000)
        return CommandResult(True, status, out, err, None, (time.perf_counter() - start) * 1000)

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


class OutputTooLarge(Exception):
    pass


async def _read_capped(stream: asyncssh.SSHReader, cap: int) -> str:
    parts: list[str] = []
    size = 0
    while chunk := await stream.read(65536):
        size += len(chunk)
        if size > cap:
            raise OutputTooLarge(f"output exceeded {cap} characters: cut off")
        parts.append(chunk)
    return "".join(parts)


async def _read_answer(stream: asyncssh.SSHReader, done: str, cap: int) -> tuple[str, int]:
    """A session's answer: everything up to the done marker, and the exit status after
    it. Reads whole chunks (usually the answer is one), never more than ``cap``."""
    buf = ""
    while True:
        chunk = await stream.read(65536)
        if not chunk:  # the session ended: refused or died
            raise ConnectionResetError("session closed")
        buf += chunk
        at = buf.find(done, max(0, len(buf) - len(chunk) - len(done)))
        if at >= 0 and "\n" in buf[at:]:
            status = buf[at + len(done):buf.index("\n", at)].strip()
            return buf[:at], int(status) if status.lstrip("-").isdigit() else -1
        if len(buf) > cap:
            raise OutputTooLarge(f"output exceeded {cap} characters: cut off")


def _text(v: str | bytes | None) -> str:
    if v is None:
        return ""
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else v
