"""What one round saw, frozen: each director's facts (``NodeObservation``), keepalived's
own view of its instances, the ARP view, and the round's ``Snapshot`` (Patroni's
ClusterView). Probes produce these; a failed probe is a value, never an exception."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class Health(StrEnum):
    HEALTHY = "healthy"  # ICMP and SSH both answer
    DEGRADED = "degraded"  # exactly one of them answers: not dead
    UNREACHABLE = "unreachable"  # neither answers



_LINK_LOCAL_HEADS = frozenset({"fe8", "fe9", "fea", "feb"})  # fe80::/10


@dataclass(frozen=True, slots=True)
class Address:
    ifname: str
    address: str  # canonical (``str(ipaddress.ip_address(...))``), as the config's VIPs
    prefixlen: int
    # IPv6 duplicate address detection (`ip -j addr`'s flags): tentative while DAD
    # runs (~1 s; never with keepalived's `nodad`), dadfailed once another node answered
    tentative: bool = False
    dadfailed: bool = False
    # preferred_lft 0 (keepalived's default for a /128 IPv6 VIP): never a source address
    deprecated: bool = False

    @property
    def is_loopback(self) -> bool:
        # LVS-DR real servers carry the VIP on lo (or lo:0): that is not ownership.
        return self.ifname == "lo" or self.ifname.startswith("lo:")

    @property
    def is_link_local(self) -> bool:
        # fe80::/10 exists once per link and per node: never a service address. The
        # address is canonical (lowercase, compressed), so its first three digits tell
        # (a string test: this runs for every address of every director every round)
        return ":" in self.address and self.address[:3] in _LINK_LOCAL_HEADS

    @property
    def claims(self) -> bool:
        """Does this address, if it is a VIP, make the node a holder clients can reach?

        The address rules (issue 31), one place for the split check, the fence's
        verify and the status page:
        - on loopback: no (an LVS-DR real server's VIP);
        - link-local: no (every node has its own);
        - dadfailed: no: the kernel neither answers neighbour solicitations for it nor
          accepts packets to it, so no client reaches this node through it;
        - tentative: yes: the node has claimed it and serves it within DAD's ~1 s unless
          another node answers, and it is what a node that claims a VIP held elsewhere
          shows first; counting it can only make a split be seen earlier, and no act
          follows one round of evidence.
        """
        return not (self.is_loopback or self.is_link_local or self.dadfailed)


@dataclass(frozen=True, slots=True)
class NodeObservation:
    node: str
    icmp_ok: bool
    ssh_ok: bool
    observed_at: datetime
    icmp_rtt_ms: float | None = None
    ssh_error: str | None = None
    # None means unknown: SSH failed and nothing recent could be carried forward.
    addresses: tuple[Address, ...] | None = None
    keepalived_running: bool | None = None
    gateways: tuple[tuple[str, bool], ...] = ()  # the node's own ICMP view
    peers: tuple[tuple[str, bool], ...] = ()  # the node's ICMP view of the other nodes
    # When addresses were carried forward from an earlier round (degraded node).
    addresses_seen_at: datetime | None = None
    ssh_ms: float | None = None
    macs: tuple[str, ...] = ()  # the node's link-layer addresses (the collect's ip addr)
    # keepalived's own view of its VRRP instances (None: not watched for this cluster)
    keepalived: KeepalivedView | None = None
    # a keepalived process is there but stopped (SIGSTOP: state T in /proc): it sends
    # no advert and answers nothing, so it does not count as running (issue 28)
    keepalived_frozen: bool = False

    @property
    def health(self) -> Health:
        if self.icmp_ok and self.ssh_ok:
            return Health.HEALTHY
        if self.icmp_ok or self.ssh_ok:
            return Health.DEGRADED
        return Health.UNREACHABLE

    @property
    def reachable(self) -> bool:
        return self.icmp_ok or self.ssh_ok

    @property
    def gateways_seen(self) -> int:
        return sum(1 for _, ok in self.gateways if ok)

    @property
    def carried_forward(self) -> bool:
        return self.addresses_seen_at is not None and not self.ssh_ok

    def holds(self, vips: tuple[str, ...] | list[str]) -> tuple[str, ...]:
        """VIPs this node owns: addresses that claim (``Address.claims``)."""
        if not self.addresses:
            return ()
        own = {a.address for a in self.addresses if a.claims}
        return tuple(v for v in vips if v in own)

    def vip_addresses(self, vips: tuple[str, ...] | list[str]) -> tuple[Address, ...]:
        if not self.addresses:
            return ()
        return tuple(a for a in self.addresses if a.address in vips and a.claims)


@dataclass(frozen=True, slots=True)
class VrrpSample:
    """One dump of one instance's counters, stamped on the arbiter's clock (when the node
    took it, from the node's own uptime: ``round.keepalived_view.NodeClock``; else when it
    arrived). Nodes' clocks are never compared with each other, only each mapped onto
    the arbiter's."""

    at: datetime
    state: str
    advert_rcvd: int
    advert_sent: int
    pri_zero_sent: int = 0
    pri_zero_rcvd: int = 0


@dataclass(frozen=True, slots=True)
class VrrpInstance:
    """A VRRP instance as keepalived reports it (its JSON dump), with the recent
    history of its counters: what it hears and what it sends, compared over time."""

    name: str
    vrid: int
    version: int  # VRRP 2 or 3
    state: str  # INIT, BACKUP, MASTER, FAULT (keepalived's own words)
    wantstate: str
    base_priority: int
    effective_priority: int
    advert_int: float  # seconds
    vips: tuple[str, ...]  # addresses, without prefix or device
    interface: str
    last_transition: float  # the node's own clock (Unix time); shown, never compared
    samples: tuple[VrrpSample, ...]  # oldest first; the last is the current dump
    state_since: datetime  # when the arbiter first saw the current state

    @property
    def family(self) -> int:
        """4 or 6: what keepalived keys an instance on, with its interface and vrid. An
        instance's VIPs are of one family (keepalived moves the others out)."""
        return 6 if self.vips and ":" in self.vips[0] else 4

    @property
    def latest(self) -> VrrpSample:
        return self.samples[-1]

    @property
    def heard_at(self) -> datetime:
        """The first dump that showed the current advert_rcvd: an advert arrived
        before it, none since it."""
        cur = self.latest.advert_rcvd
        first = self.latest.at
        for s in reversed(self.samples):
            if s.advert_rcvd != cur:
                break
            first = s.at
        return first


@dataclass(frozen=True, slots=True)
class KeepalivedView:
    """What one node's keepalived says of itself (``arbiter.probe.keepalived``): its
    instances, when the last dump arrived, and why the view is missing if it is."""

    instances: tuple[VrrpInstance, ...] = ()
    at: datetime | None = None  # the arbiter's time of the last dump
    error: str | None = None  # unavailable, and why (then instances may be old or empty)
    # False: this node can give no dump at all (no JSON support, the watch refused)
    supported: bool = True
    # keepalived answered the dump signal before, and now its process is there but
    # gives no dump within the watch's bound: hung (frozen, stuck, D state)
    hung: bool = False
    # since when the watch has given errors and no dump (None: the last was a dump)
    failing_since: datetime | None = None

    def peer(self, other: VrrpInstance) -> VrrpInstance | None:
        """This node's instance of the same VRRP group as ``other`` (another node's):
        the same vrid **and** family (issue 31: VRRP for IPv4 and for IPv6 are separate
        protocols, so a dual-stack pair commonly runs VI_4 and VI_6 with one vrid), the
        one sharing a VIP first. Interface names may differ between directors."""
        same = [i for i in self.instances if i.vrid == other.vrid and i.family == other.family]
        return next((i for i in same if set(i.vips) & set(other.vips)), None) or \
            next(iter(same), None)

    def holding(self, vip: str) -> VrrpInstance | None:
        """The instance that carries ``vip`` in its virtual_ipaddress."""
        return next((i for i in self.instances if vip in i.vips), None)


@dataclass(frozen=True, slots=True)
class SelfCheck:
    gateways: tuple[tuple[str, bool], ...]
    tilt_reason: str | None = None  # set while fencing is suspended after a stall

    @property
    def sees_gateway(self) -> bool:
        return any(ok for _, ok in self.gateways)


@dataclass(frozen=True, slots=True)
class ArpSight:
    """What the arbiter's own ARP probe and listener saw for a cluster's VIPs.
    ``answers``: the MACs that answered each VIP; ``owners``: which node each MAC
    belongs to (from the collect, the last known when SSH is down)."""

    answers: tuple[tuple[str, tuple[str, ...]], ...] = ()
    owners: tuple[tuple[str, str], ...] = ()  # mac -> node
    error: str | None = None  # unavailable, and why (then answers is empty)

    def macs(self, vip: str) -> tuple[str, ...]:
        return dict(self.answers).get(vip, ())

    def nodes_for(self, vip: str) -> tuple[str, ...]:
        own = dict(self.owners)
        return tuple(sorted({own[m] for m in self.macs(vip) if m in own}))

    def strangers(self, vip: str) -> tuple[str, ...]:
        """MACs answering for the VIP that belong to no configured node."""
        own = dict(self.owners)
        return tuple(m for m in self.macs(vip) if m not in own)

    def describe(self, vip: str) -> str:
        """``192.168.77.100 answered by 02:..:11 (lb1) and 02:..:12 (lb2)``"""
        own = dict(self.owners)
        who = [f"{m} ({own.get(m, 'no configured node')})" for m in self.macs(vip)]
        return f"{vip} answered by {' and '.join(who)}"


@dataclass(frozen=True, slots=True)
class ClusterObservation:
    cluster: str
    nodes: tuple[NodeObservation, ...]
    arp: ArpSight | None = None  # None: no arp_interface for this cluster

    def node(self, name: str) -> NodeObservation | None:
        return next((n for n in self.nodes if n.node == name), None)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything one round saw, taken once and never mutated (Patroni's ClusterView)."""

    at: datetime
    self_check: SelfCheck
    clusters: tuple[ClusterObservation, ...]
    _by_name: dict[str, ClusterObservation] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {c.cluster: c for c in self.clusters})

    def cluster(self, name: str) -> ClusterObservation | None:
        return self._by_name.get(name)
