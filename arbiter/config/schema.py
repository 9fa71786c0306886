"""The config's schema: every section, its defaults and the rules across fields.

Each rule raises with the field it is about; ``loading`` turns pydantic's
errors into ``path: reason`` lines.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from typing import Literal

from pydantic import (
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from arbiter.config.arbiter import ArbiterSection
from arbiter.config.base import IPAddr, _ip, _Strict
from arbiter.config.fencing import AgentRule, ClusterFencing, NodeFencing
from arbiter.config.ha import HASection
from arbiter.config.keepalived import ClusterKeepalived, NodeKeepalived
from arbiter.config.listen import listen_url
from arbiter.config.notify import NotifySection

DEFAULT_FENCE = "systemctl stop keepalived"
DEFAULT_RECOVER = "systemctl start keepalived"
# After a fence the survivor never changed state, so keepalived sends no gratuitous
# ARP and clients keep the victim's MAC until their ARP entry ages out.
DEFAULT_ANNOUNCE = "arping -q -U -c 2 -I {ifname} {vip}"

class SSHSection(_Strict):
    username: str = "root"
    port: int = Field(22, ge=1, le=65535)
    client_keys: list[str] = Field(min_length=1)
    known_hosts: str
    connect_timeout: float = Field(2.0, gt=0, le=120)
    command_timeout: float = Field(3.0, gt=0, le=300)
    keepalive_interval: float = Field(5.0, gt=0)
    gateway_ping_timeout: float = Field(
        1.0, gt=0, le=30, description="how long a node waits for its own gateway ping"
    )
    collect_session: bool = Field(
        True, description="send the collect command into one long-lived remote `sh` per "
        "node instead of a new SSH channel per round (fewer packets, less CPU); falls back "
        "to a channel per round where the node refuses a session",
    )

    @model_validator(mode="after")
    def _timings(self) -> SSHSection:
        if self.gateway_ping_timeout >= self.command_timeout:
            raise ValueError(
                f"gateway_ping_timeout ({self.gateway_ping_timeout}s) must be shorter than "
                f"command_timeout ({self.command_timeout}s): the node's gateway pings run "
                "inside the collect command"
            )
        return self


def _check_token(tok: str, what: str) -> None:
    if len(tok) < 16:
        raise ValueError(f"{what} is shorter than 16 characters")
    # an HTTP header carries ASCII: a token outside it could never be presented
    if not tok.isascii() or not tok.isprintable() or " " in tok:
        raise ValueError(f"{what} must be printable ASCII without spaces (it is sent in an "
                         "Authorization header)")


class APISection(_Strict):
    # name -> bearer token, for operators (release) and tooling. Use ${ENV} for secrets.
    tokens: dict[str, str] = Field(default_factory=dict)
    protect_reads: bool = Field(False, description="require a token for read endpoints too")
    tls_certfile: str | None = None
    tls_keyfile: str | None = None

    @field_validator("tokens")
    @classmethod
    def _tokens(cls, v: dict[str, str]) -> dict[str, str]:
        for name, tok in v.items():
            _check_token(tok, f"token {name!r}")
        return v

    @model_validator(mode="after")
    def _tls(self) -> APISection:
        if bool(self.tls_certfile) != bool(self.tls_keyfile):
            raise ValueError("tls_certfile and tls_keyfile go together")
        return self


class NodeConfig(_Strict, NodeFencing, NodeKeepalived):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    address: IPAddr
    priority: int = Field(100, ge=0, le=255)
    port: int | None = Field(None, ge=1, le=65535)
    username: str | None = None
    fence_command: str | None = None
    recover_command: str | None = None
    token: str | None = Field(None, description="this node's bearer token for POST /events")

    @field_validator("token")
    @classmethod
    def _token(cls, v: str | None) -> str | None:
        if v is not None:
            _check_token(v, "token")
        return v

    @field_validator("address")
    @classmethod
    def _address(cls, v: str) -> str:
        return _ip(v, "address")


def _not_a_service_address(vip: str) -> str | None:
    """Why an address cannot be a service VIP (None: it can). keepalived runs a VIP of
    either family (IPv4 in a VRRPv2 or v3 instance, IPv6 in a VRRPv3 one; a dual-stack
    service is two instances), but none of these reaches a client as one shared address."""
    a = ipaddress.ip_address(vip)
    if a.is_link_local:
        return "link-local (every node has its own on each link)"
    if a.is_multicast:
        return "multicast"
    if a.is_unspecified:
        return "unspecified"
    if a.is_loopback:
        return "loopback"
    return None


class ClusterConfig(_Strict, ClusterFencing, ClusterKeepalived, AgentRule):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    vips: list[IPAddr] = Field(min_length=1)
    gateways: list[IPAddr] = Field(default_factory=list)
    fence_command: str = DEFAULT_FENCE
    recover_command: str = DEFAULT_RECOVER
    announce_command: str = Field(
        DEFAULT_ANNOUNCE,
        description="run on the survivor per VIP after a fence; {vip} and {ifname} are "
        "filled in; empty disables",
    )
    fence_mode: Literal["ssh", "gate"] = Field(
        "ssh",
        description="ssh: stop keepalived over SSH; gate: only deny the victim through "
        "/verdict and let its arbiter-gate put it into FAULT",
    )
    verdict: Literal["reactive", "exclusive"] = Field(
        "reactive",
        description="reactive: /verdict denies only victims and held nodes; exclusive: it "
        "also denies a backup that misses the adverts of a healthy master that is sending "
        "(keepalived_view), before its master-down interval ends, so a VRRP cut never "
        "splits the brain; without the view, every backup while the master is healthy",
    )
    shard: str = Field(
        "default", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$",
        description="with [ha]: the lease this cluster is led under; several arbiters can "
        "each lead some shards of a large site",
    )
    arp_interface: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_.:@-]{1,15}$",
        description="the arbiter's interface on the directors' segment: probe and listen "
        "for ARP answers for the VIPs (needs CAP_NET_RAW; unset: no ARP view)",
    )
    arp_timeout: float = Field(0.2, gt=0, le=5,
                               description="seconds to collect ARP answers each round")
    nodes: list[NodeConfig] = Field(min_length=2)

    @field_validator("vips", "gateways")
    @classmethod
    def _ips(cls, v: list[str], info: ValidationInfo) -> list[str]:
        out = [_ip(x, "vip/gateway") for x in v]
        if len(set(out)) != len(out):
            raise ValueError("duplicate address in list")
        if info.field_name == "vips":
            for i, x in enumerate(out):
                if why := _not_a_service_address(x):
                    raise ValueError(f"[{i}] {x} is {why}: it cannot be a VIP")
        return out

    @field_validator("announce_command")
    @classmethod
    def _announce(cls, v: str) -> str:
        import string

        try:
            names = {f for _, f, _, _ in string.Formatter().parse(v) if f is not None}
        except ValueError as exc:
            raise ValueError(f"bad template: {exc}") from None
        extra = names - {"vip", "ifname"}
        if extra:
            raise ValueError(f"unknown placeholder(s) {sorted(extra)}; use {{vip}} and {{ifname}}")
        return v

    @model_validator(mode="after")
    def _consistency(self) -> ClusterConfig:
        names = [n.name for n in self.nodes]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate node name(s): {', '.join(dup)}")
        addrs = [n.address for n in self.nodes]
        dup = sorted({a for a in addrs if addrs.count(a) > 1})
        if dup:
            raise ValueError(f"duplicate node address(es): {', '.join(dup)}")
        clash = sorted(set(addrs) & set(self.vips))
        if clash:
            raise ValueError(f"VIP(s) {', '.join(clash)} equal a node address")
        return self

    def node(self, name: str) -> NodeConfig | None:
        return next((n for n in self.nodes if n.name == name), None)

    def fence_command_for(self, node: NodeConfig) -> str:
        return node.fence_command or self.fence_command

    def recover_command_for(self, node: NodeConfig) -> str:
        return node.recover_command or self.recover_command

    def levels_for(self, node: NodeConfig) -> tuple[str, ...]:
        return tuple(node.fence_levels or self.fence_levels)

    def agent_options_for(self, node: NodeConfig) -> dict[str, str]:
        return {**self.fence_agent_options, **node.agent_options}


class Config(_Strict):
    arbiter: ArbiterSection
    ssh: SSHSection
    api: APISection = Field(default_factory=APISection)
    clusters: list[ClusterConfig] = Field(min_length=1)
    ha: HASection | None = None
    notify: NotifySection | None = None
    # (the clusters list it was built from, by name): model_copy(update=...) shares
    # private attributes, so the index is rebuilt when the list is not the same one
    _index: tuple[object, dict[str, ClusterConfig]] = PrivateAttr(default=(None, {}))

    @model_validator(mode="after")
    def _cross(self) -> Config:
        names = [c.name for c in self.clusters]
        dup = sorted(n for n, k in Counter(names).items() if k > 1)
        if dup:
            raise ValueError(f"duplicate cluster name(s): {', '.join(dup)}")
        a, _s = self.arbiter, self.ssh
        # Patroni-style timing rule: a healthy round must finish and be
        # published before its observations count as stale, or every verdict
        # would flap to abstain between rounds.
        if a.stale_after is not None and a.stale_after < a.interval + self.round_budget:
            raise ValueError(
                f"arbiter.stale_after ({a.stale_after}s) must be >= interval + "
                f"ssh.connect_timeout + ssh.command_timeout ({a.interval + self.round_budget}s)"
            )
        if a.tilt_after is not None and a.tilt_after < a.interval:
            raise ValueError(
                f"arbiter.tilt_after ({a.tilt_after}s) must be >= interval ({a.interval}s)"
            )
        if self.ha is not None and (odd := sorted(set(self.ha.prefer) - set(self.shards))):
            raise ValueError(f"ha.prefer names shard(s) no cluster has: {', '.join(odd)} "
                             f"(shards: {', '.join(self.shards)})")
        if self.ha is not None and not a.database.startswith("postgresql"):
            raise ValueError(
                "ha needs a PostgreSQL arbiter.database shared by every member (the lease "
                f"and its term live there); {a.database.split(':', 1)[0]!r} cannot be shared")
        tokens = [t for t in self.api.tokens.values()]
        tokens += [n.token for c in self.clusters for n in c.nodes if n.token]
        if len(set(tokens)) != len(tokens):
            raise ValueError("the same token is used twice: every node and operator needs its own")
        if a.icmp_timeout > self.round_budget:
            raise ValueError(
                f"arbiter.icmp_timeout ({a.icmp_timeout}s) must not exceed "
                f"ssh.connect_timeout + ssh.command_timeout ({self.round_budget}s)"
            )
        return self

    @property
    def round_budget(self) -> float:
        """Upper bound of one node's observation: connect then run."""
        return self.ssh.connect_timeout + self.ssh.command_timeout

    @property
    def confirm_span(self) -> float:
        """How long a split brain must have lasted before it is confirmed."""
        a = self.arbiter
        return max(a.confirm_after or 0.0, a.confirm_min_span)

    @property
    def stale_after(self) -> float:
        a = self.arbiter
        return a.stale_after or (2 * a.interval + self.round_budget)

    @property
    def tilt_after(self) -> float:
        a = self.arbiter
        return a.tilt_after or max(3 * a.interval, 2.0)

    def cluster(self, name: str) -> ClusterConfig | None:
        src, by_name = self._index  # built on first use: a round looks up every cluster
        if src is not self.clusters:
            by_name = {c.name: c for c in self.clusters}
            self._index = (self.clusters, by_name)
        return by_name.get(name)

    @property
    def shards(self) -> list[str]:
        return sorted({c.shard for c in self.clusters})

    @property
    def api_url(self) -> str:
        """The API as a client on this host reaches it (the CLI, links in messages)."""
        return listen_url(self.arbiter.listen, bool(self.api.tls_certfile))

    @property
    def links_url(self) -> str:
        """Where links in notifications lead: ``notify.base_url``, else ``api_url``."""
        if self.notify is not None and self.notify.base_url:
            return self.notify.base_url.rstrip("/")
        return self.api_url

    def gateways_for(self, cluster: ClusterConfig) -> list[str]:
        return cluster.gateways or self.arbiter.gateways
