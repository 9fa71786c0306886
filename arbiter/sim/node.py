"""A simulated director: a real asyncssh server that plays a node from a state table.

It answers the arbiter's collect command with ``ip -j addr``-shaped JSON, and
acts on fence, recover and ``ip addr del`` commands by changing its state.
Used by the tests, ``arbiter sim`` and the scale benchmark (hundreds at once,
one listener per node on distinct 127.x addresses).
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh

from arbiter.probe.collect import MARK, MONITOR
from arbiter.probe.keepalived import MARK as MARK_KA
from arbiter.probe.keepalived import QuietTicks
from arbiter.probe.ssh import session_line
from arbiter.sim.keepalived import PERIOD, TRACK, PlayedKeepalived


@dataclass
class SimState:
    name: str
    address: str
    # ifname -> [(address, prefixlen)]
    interfaces: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    keepalived_running: bool = True
    gateways: dict[str, bool] = field(default_factory=dict)  # this node's own view
    peers_down: set[str] = field(default_factory=set)  # peers this node cannot ping
    vips: list[str] = field(default_factory=list)  # what keepalived drops on a clean stop
    release_vips_on_stop: bool = True
    fence_command: str = "systemctl stop keepalived"
    recover_command: str = "systemctl start keepalived"
    latency: float = 0.0  # seconds added to every command
    hang: bool = False  # accept the command, never answer
    collect_error: str | None = None  # the collect fails: exit 1 with this on stderr
    addr_output: str | None = None  # a hostile node: this text instead of `ip -j addr`'s
    flood: bool = False  # a hostile node: the collect's output never ends
    commands: list[str] = field(default_factory=list)
    term_seen: int = 0  # [ha] the highest "@@term N" seen, as arbiter-ssh-wrapper keeps it
    # keepalived's JSON dump and the track files (arbiter.sim.keepalived)
    keepalived: PlayedKeepalived = field(default_factory=PlayedKeepalived)
    # `ip -o monitor address` sessions: called with each line the kernel would print
    monitors: list = field(default_factory=list)

    def _notify(self, line: str) -> None:
        for m in list(self.monitors):
            m(line)

    def add(self, ifname: str, addr: str, prefix: int = 24) -> None:
        self.interfaces.setdefault(ifname, []).append((addr, prefix))
        self._notify(f"2: {ifname}    inet {addr}/{prefix} scope global {ifname}\n")

    def remove(self, addr: str, ifname: str | None = None) -> bool:
        hit = False
        for name, addrs in self.interfaces.items():
            if ifname and name != ifname:
                continue
            keep = [a for a in addrs if a[0] != addr]
            for a, p in addrs:
                if a == addr:
                    self._notify(f"Deleted 2: {name}    inet {a}/{p} scope global {name}\n")
            hit |= len(keep) != len(addrs)
            self.interfaces[name] = keep
        return hit

    def holds(self, vip: str) -> bool:
        return any(vip == a for n, addrs in self.interfaces.items() if n != "lo" for a, _ in addrs)

    def ip_json(self) -> str:
        links = []
        for i, (name, addrs) in enumerate(self.interfaces.items(), start=1):
            links.append({
                "ifindex": i, "ifname": name,
                "flags": ["LOOPBACK", "UP"] if name == "lo" else ["BROADCAST", "UP"],
                "addr_info": [
                    {"family": "inet6" if ":" in a else "inet", "local": a, "prefixlen": p,
                     "scope": "host" if name == "lo" else "global"}
                    for a, p in addrs
                ],
            })
        return json.dumps(links)


def standard_state(name: str, address: str, vips: list[str], holds: list[str],
                   gateways: dict[str, bool], lo_vips: list[str] | None = None) -> SimState:
    s = SimState(name=name, address=address, gateways=dict(gateways), vips=list(vips))
    s.add("lo", "127.0.0.1", 8)
    for v in lo_vips or []:
        s.add("lo", v, 32)
    s.add("eth0", address, 24)
    for v in holds:
        s.add("eth0", v, 24)
    return s


_PING_LOOP = re.compile(r"for g in (.*?); do")
_IP_DEL = re.compile(r"^ip addr del (\S+) dev (\S+)$")
# The line run_in_session writes, matched from session_line itself so the two never
# drift apart: group 1 is the command, group 2 the done marker.
_SESSION_LINE = re.compile(
    re.escape(session_line("@@CMD@@", "@@DONE@@").rstrip("\n"))
    .replace("@@CMD@@", "(.*)").replace("@@DONE@@", "(@@arbiter-done [^%]*)"))


_TERM = re.compile(r"@@term (\d+) (.+)", re.DOTALL)


def respond(state: SimState, command: str) -> tuple[int, str, str]:
    """The node's behaviour: command in, (exit status, stdout, stderr) out."""
    state.commands.append(command)
    m = _TERM.match(command)
    if m:  # arbiter-ssh-wrapper's rule: refuse a lower term, keep the highest
        term, command = int(m.group(1)), m.group(2)
        if term < state.term_seen:
            return 125, "", (f"arbiter-ssh-wrapper: refused (stale term {term} < "
                             f"{state.term_seen}: another arbiter leads now)\n")
        state.term_seen = term
        if command == "@@announce":
            return 0, "", ""
    if MARK in command and state.collect_error is not None:
        return 1, "", state.collect_error + "\n"
    if MARK in command:
        gw_part, _, peer_part = command.partition("echo @@peers")
        m = _PING_LOOP.search(gw_part)
        gws = shlex.split(m.group(1)) if m else []
        addr = state.ip_json() if state.addr_output is None else state.addr_output
        lines = [MARK, "@@addr", addr, "", "@@keepalived",
                 "running" if state.keepalived_running else "stopped", "@@gw"]
        lines += [f"{g} {'up' if state.gateways.get(g, False) else 'down'}" for g in gws]
        m = _PING_LOOP.search(peer_part)
        if m:
            lines.append("@@peers")
            lines += [f"{p} {'down' if p in state.peers_down else 'up'}"
                      for p in shlex.split(m.group(1))]
        lines.append("@@end")
        return 0, "\n".join(lines) + "\n", ""
    if command == state.fence_command:
        state.keepalived_running = False
        if state.release_vips_on_stop:
            for v in state.vips:
                for name in list(state.interfaces):
                    if name != "lo":
                        state.remove(v, name)
        return 0, "", ""
    if command == state.recover_command:
        state.keepalived_running = True
        return 0, "", ""
    if command.startswith("arping "):
        return 0, "", ""
    m = TRACK.match(command)
    if m:  # a verdict into a track file: the played keepalived goes FAULT on 1
        name, seq = m.group(2), int(m.group(3))
        if seq <= state.keepalived.track_seq.get(name, 0):  # an older write: refused
            return 3, "", f"superseded by {state.keepalived.track_seq[name]}"
        state.keepalived.track[name] = int(m.group(4))
        state.keepalived.track_seq[name] = seq
        return 0, "", ""
    m = _IP_DEL.match(command)
    if m:
        addr = shlex.split(m.group(1))[0].split("/")[0]
        ifname = shlex.split(m.group(2))[0]
        if state.remove(addr, ifname):
            return 0, "", ""
        return 2, "", "RTNETLINK answers: Cannot assign requested address\n"
    return 127, "", f"sh: 1: {command.split()[0] if command.split() else ''}: not found\n"


async def _flood(process: asyncssh.SSHServerProcess) -> None:
    """Output that never ends, until the client closes the channel (bounded: an hour)."""
    chunk = "@@addr " + "x" * 65529 + "\n"
    deadline = asyncio.get_running_loop().time() + 3600
    try:
        while asyncio.get_running_loop().time() < deadline:
            process.stdout.write(chunk)
            await process.stdout.drain()
    except (asyncssh.Error, OSError):  # the client closed the channel, as sshd sees it
        pass


class _Server(asyncssh.SSHServer):
    """Behaves like sshd where it matters for a fan-out: MaxStartups drops connections
    beyond N unauthenticated ones, as sshd's `MaxStartups N` does."""

    def __init__(self, node: SimNode):
        self.node = node
        self.authed = False

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        self.node.live.add(conn)
        self.node.unauthenticated += 1
        if self.node.unauthenticated > self.node.max_startups:
            self.node.refused += 1
            conn.abort()

    def auth_completed(self) -> None:
        self.authed = True
        self.node.unauthenticated -= 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.node.live.discard(self.conn)
        if not self.authed:
            self.node.unauthenticated -= 1


class SimNode:
    """One listener playing one node."""

    def __init__(self, state: SimState, port: int, host_key: asyncssh.SSHKey,
                 authorized: asyncssh.SSHAuthorizedKeys, max_sessions: int = 10,
                 max_startups: int = 10):
        self.state = state
        self.port = port
        self.host_key = host_key
        self.authorized = authorized
        self.max_sessions = max_sessions  # sshd's MaxSessions: channels per connection
        self.max_startups = max_startups
        self.unauthenticated = 0
        self.refused = 0
        self.session_refused = False
        self.sessions_opened = 0
        self.live: set[asyncssh.SSHServerConnection] = set()
        self._sessions: list[asyncssh.SSHServerConnection] = []
        self._server: asyncssh.SSHAcceptor | None = None

    async def _monitor(self, process: asyncssh.SSHServerProcess) -> None:
        q: asyncio.Queue[str] = asyncio.Queue()
        self.state.monitors.append(q.put_nowait)
        try:
            while True:
                process.stdout.write(await q.get())
        except (asyncio.CancelledError, OSError, asyncssh.Error):
            pass
        finally:
            self.state.monitors.remove(q.put_nowait)
            process.exit(0)

    async def _keepalived_watch(self, process: asyncssh.SSHServerProcess,
                                period: float, quiet: int) -> None:
        """The keepalived watch: a dump every ``period`` until the channel closes
        (bounded: an hour), with the node's quiet ticks."""
        st = self.state
        process.stdout.write(f"{MARK_KA} {period:g}{f' quiet {quiet}' if quiet else ''}\n")
        deadline = asyncio.get_running_loop().time() + 3600
        stream = QuietTicks(quiet)
        try:
            while asyncio.get_running_loop().time() < deadline:
                out = st.keepalived.block(any(st.holds(v) for v in st.vips), st.vips,
                                          st.keepalived_running, stream)
                if out:
                    process.stdout.write(out)
                await asyncio.sleep(max(0.05, period))
        except (asyncio.CancelledError, OSError, asyncssh.Error):
            pass
        process.exit(0)

    async def _process(self, process: asyncssh.SSHServerProcess) -> None:
        cmd = process.command or ""
        st = self.state
        conn = process.channel.get_connection()
        open_here = sum(1 for c in self._sessions if c is conn)
        if open_here >= self.max_sessions:  # sshd: "no more sessions"
            process.stderr.write("channel refused: MaxSessions reached\n")
            process.exit(255)
            return
        self._sessions.append(conn)
        try:
            await self._serve(process, cmd, st)
        finally:
            self._sessions.remove(conn)

    async def _session(self, process: asyncssh.SSHServerProcess) -> None:
        """A long-lived `sh` reading one command per line (collect_session)."""
        self.sessions_opened += 1
        try:
            async for line in process.stdin:
                m = _SESSION_LINE.fullmatch(line.rstrip("\n"))
                if m is None:  # a plain command line
                    respond(self.state, line.rstrip("\n"))
                    continue
                if self.state.flood and MARK in m.group(1):
                    await _flood(process)
                if self.state.latency:
                    await asyncio.sleep(self.state.latency)
                status, out, _err = respond(self.state, m.group(1))
                # like sh's one printf: output, marker and status in one write
                process.stdout.write(f"{out.rstrip(chr(10))}\n{m.group(2)} {status}\n")
        except (asyncssh.Error, OSError):
            pass
        process.exit(0)

    async def _serve(self, process: asyncssh.SSHServerProcess, cmd: str, st: SimState) -> None:
        if cmd == "sh":
            if self.session_refused:  # like a forced command that allows no shell
                process.stderr.write("refused\n")
                process.exit(126)
                return
            await self._session(process)
            return
        if cmd == MONITOR:
            await self._monitor(process)
            return
        if (m := PERIOD.match(cmd)) is not None:
            await self._keepalived_watch(process, float(m.group(1)), int(m.group(2) or 0))
            return
        if st.hang:
            await asyncio.sleep(3600)
        if st.flood and MARK in cmd:
            await _flood(process)
        if st.latency:
            await asyncio.sleep(st.latency)
        status, out, err = respond(st, cmd)
        try:
            process.stdout.write(out)
            if err:
                process.stderr.write(err)
            process.exit(status)
        except (BrokenPipeError, OSError, asyncssh.Error):
            # the client closed this channel (its command timed out): like sshd, the
            # answer goes nowhere and the connection's other channels carry on
            return

    async def start(self) -> None:
        self._server = await asyncssh.create_server(
            lambda: _Server(self), self.state.address, self.port,
            server_host_keys=[self.host_key], authorized_client_keys=self.authorized,
            process_factory=self._process, encoding="utf-8",
            keepalive_interval=0, login_timeout=10, max_pktsize=32768,
        )

    @property
    def connections(self) -> int:
        return len(self.live)

    async def stop(self) -> None:
        """Like killing every sshd process: the listener and the open sessions go."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for conn in list(self.live):
            conn.abort()
        self.live.clear()

    def known_hosts_line(self) -> str:
        pub = self.host_key.export_public_key("openssh").decode().strip()
        host = self.state.address if self.port == 22 else f"[{self.state.address}]:{self.port}"
        return f"{host} {pub}"


class SimSite:
    """Many sim nodes sharing one client key; writes the key and known_hosts files."""

    def __init__(self, workdir: Path, port: int = 2222, max_startups: int = 10):
        self.workdir = Path(workdir)
        self.port = port
        self.max_startups = max_startups
        self.client_key = asyncssh.generate_private_key("ssh-ed25519")
        self.nodes: dict[str, SimNode] = {}
        self.key_path = self.workdir / "id_ed25519"
        self.known_hosts_path = self.workdir / "known_hosts"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.client_key.write_private_key(str(self.key_path))
        self.key_path.chmod(0o600)
        self._authorized = asyncssh.import_authorized_keys(
            self.client_key.export_public_key("openssh").decode()
        )

    async def add(self, state: SimState, host_key: asyncssh.SSHKey | None = None,
                  write: bool = True) -> SimNode:
        node = SimNode(state, self.port, host_key or asyncssh.generate_private_key("ssh-ed25519"),
                       self._authorized, max_startups=self.max_startups)
        await node.start()
        self.nodes[state.name] = node
        if write:
            self.write_known_hosts()
        return node

    def write_known_hosts(self) -> None:
        self.known_hosts_path.write_text(
            "".join(n.known_hosts_line() + "\n" for n in self.nodes.values())
        )

    def state(self, name: str) -> SimState:
        return self.nodes[name].state

    async def stop_node(self, name: str) -> None:
        await self.nodes[name].stop()

    async def close(self) -> None:
        await asyncio.gather(*(n.stop() for n in self.nodes.values()), return_exceptions=True)
