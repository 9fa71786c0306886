"""The collect command every director runs each round, and its strict parser.

The answer is input from a machine we do not control: it is bounded in size and
validated against a strict schema, and any failure is that node's own error.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
import shlex
from dataclasses import dataclass

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from arbiter.model import Address

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


# keepalived's process state: "running", "stopped", or "frozen" when one of its
# processes is stopped (state T or t in /proc/PID/stat: SIGSTOP, a debugger, a paused
# container's freezer): pidof still finds it, but it sends no advert (issue 28).
# arbiter-ssh-wrapper runs the same line.
KEEPALIVED_STATE = (
    "k=stopped; for p in $(pidof keepalived 2>/dev/null); do "
    "s=$(sed -n 's/^.*) \\(.\\).*$/\\1/p' \"/proc/$p/stat\" 2>/dev/null); "
    "case $s in T|t) k=frozen; break;; ?) k=running;; esac; done; echo $k"
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
        f"{KEEPALIVED_STATE}; "
        f"echo @@gw; {_ping_loop(gateways, w)}{peer_part}echo @@end"
    )


@dataclass(frozen=True, slots=True)
class NodeFacts:
    addresses: tuple[Address, ...]
    keepalived_running: bool
    gateways: tuple[tuple[str, bool], ...]
    peers: tuple[tuple[str, bool], ...] = ()
    macs: tuple[str, ...] = ()  # link-layer addresses of its Ethernet links
    keepalived_frozen: bool = False  # its process is there, stopped (state T)
    link_macs: tuple[tuple[str, str], ...] = ()  # (ifname, MAC) of each Ethernet link

    def mac_of(self, ifname: str) -> str | None:
        """The MAC of the link an address is on (a label like eth0:1 is eth0's)."""
        base = ifname.split(":", 1)[0]
        return next((m for i, m in self.link_macs if i == base), None)


class CollectParseError(ValueError):
    pass


def _updown(lines: list[str]) -> dict[str, bool]:
    seen: dict[str, bool] = {}
    for line in lines:
        parts = line.split()
        if len(parts) == 2 and parts[1] in ("up", "down"):
            seen[parts[0]] = parts[1] == "up"
    return seen


_MAC = re.compile(r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}")
MAX_COLLECT_CHARS = 1 << 20  # a real `ip -j addr` of a busy director is a few KiB
MAX_ADDRESSES = 4096


class _AddrInfo(BaseModel):
    """One entry of `ip -j addr`'s addr_info, typed strictly: a string prefixlen, an
    integer label or a dict as local is the node's error, never ours."""

    model_config = ConfigDict(extra="ignore", strict=True)
    local: str | None = Field(None, max_length=64)
    prefixlen: int = Field(32, ge=0, le=128)
    label: str | None = Field(None, max_length=64)
    tentative: bool = False  # IPv6 DAD running
    dadfailed: bool = False  # IPv6 DAD found another node with it
    deprecated: bool = False  # preferred_lft 0: never chosen as a source address

    @field_validator("local")
    @classmethod
    def _local(cls, v: str | None) -> str | None:
        # canonical, as the config's VIPs are: compared as strings from here on
        # (ValueError names the field through pydantic)
        return None if v is None else str(ipaddress.ip_address(v))


class _Link(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    ifname: str = Field("?", max_length=64)
    link_type: str | None = Field(None, max_length=32)
    address: str | None = Field(None, max_length=64)  # the MAC, for link_type ether
    addr_info: list[_AddrInfo] = Field(default_factory=list, max_length=MAX_ADDRESSES)


_LINKS = TypeAdapter(list[_Link])


def _validation_message(exc: ValidationError) -> str:
    e = exc.errors()[0]
    where = ".".join(str(p) for p in e.get("loc", ())) or "(top level)"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"`ip -j addr` output has the wrong shape at {where}: {e.get('msg')}{more}"


def parse_collect(
    stdout: str, gateways: list[str], peers: list[str] | None = None
) -> NodeFacts:
    """The collect's answer as NodeFacts. Whatever the node sent, the only exception
    that leaves is CollectParseError, which becomes that node's own error."""
    if len(stdout) > MAX_COLLECT_CHARS:
        raise CollectParseError(f"collect output is {len(stdout)} characters, more than "
                                f"{MAX_COLLECT_CHARS}")
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
    except RecursionError:
        raise CollectParseError("`ip -j addr` output is nested too deeply") from None
    try:
        links = _LINKS.validate_python(raw)
    except ValidationError as exc:
        raise CollectParseError(_validation_message(exc)) from None
    except RecursionError:
        raise CollectParseError("`ip -j addr` output is nested too deeply") from None
    addrs = [
        Address(ai.label or link.ifname if link.ifname == "lo" else link.ifname, ai.local,
                ai.prefixlen, ai.tentative, ai.dadfailed, ai.deprecated)
        for link in links for ai in link.addr_info if ai.local is not None
    ]
    if len(addrs) > MAX_ADDRESSES:
        raise CollectParseError(f"{len(addrs)} addresses, more than {MAX_ADDRESSES}")
    ka = [x.strip() for x in sections["keepalived"] if x.strip()]
    if ka not in (["running"], ["stopped"], ["frozen"]):
        raise CollectParseError(f"unexpected keepalived state {ka[:3]!r}"[:200])
    seen = _updown(sections["gw"])
    peer_seen = _updown(sections.get("peers", []))
    link_macs = tuple((link.ifname, link.address.lower()) for link in links
                      if link.link_type == "ether" and link.address
                      and _MAC.fullmatch(link.address))
    return NodeFacts(
        addresses=tuple(addrs),
        keepalived_running=ka == ["running"],
        keepalived_frozen=ka == ["frozen"],
        gateways=tuple((g, seen.get(g, False)) for g in gateways),
        peers=tuple((p, peer_seen.get(p, False)) for p in peers or []),
        macs=tuple(sorted({m for _, m in link_macs})),
        link_macs=link_macs,
    )
