"""Frozen domain types shared by every layer: what was observed (Snapshot), what the
policy remembers between rounds (History), and what it decided to fence (FencePlan).

Probes produce observations (a failed probe is a value, never an exception); the
policy turns one snapshot plus history into an assessment (``arbiter.policy.assessment``,
which holds the effects, so this module imports nothing of the policy's).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum


class Health(StrEnum):
    HEALTHY = "healthy"  # ICMP and SSH both answer
    DEGRADED = "degraded"  # exactly one of them answers: not dead
    UNREACHABLE = "unreachable"  # neither answers


class Verdict(StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    ABSTAIN = "abstain"


class FenceMethod(StrEnum):
    STOP_KEEPALIVED = "stop_keepalived"  # run fence_command, escalate to ip addr del
    REMOVE_ADDRESS = "remove_address"  # keepalived is dead: the VIP is a stale leftover


class IncidentState(StrEnum):
    OPEN = "open"  # seen, not (yet) decided
    DECIDED = "decided"  # dry run: decision recorded, nothing done
    FENCING = "fencing"  # decision committed, fence in flight
    FENCED = "fenced"  # victim verified without the VIP
    FENCE_FAILED = "fence_failed"
    HELD = "held"  # split brain gone; a victim stays held until released
    WATCHING = "watching"  # victims released automatically; a new claim is re-fenced at once
    RESOLVED = "resolved"


class IncidentKind(StrEnum):
    SPLIT_BRAIN = "split_brain"
    ORPHAN_VIP = "orphan_vip"
    ARBITER_ISOLATED = "arbiter_isolated"
    # a MAC of no configured node answers ARP for a VIP: alerted, never fenced
    VIP_CONFLICT = "vip_conflict"
    # keepalived's view of a node keeps failing: the exclusive rule falls back
    VIEW_FAILING = "view_failing"


# What is worth telling an operator (arbiter.policy.notify_events says which incident
# change raises which; [notify] events picks among them)
class EventKind(StrEnum):
    SPLIT_BRAIN = "split_brain"
    SPLIT_BRAIN_RESOLVED = "split_brain_resolved"
    FENCE_DONE = "fence_done"
    FENCE_FAILED = "fence_failed"
    NODE_HELD = "node_held"
    NODE_RELEASED = "node_released"
    ARBITER_ISOLATED = "arbiter_isolated"
    ARBITER_ISOLATED_RESOLVED = "arbiter_isolated_resolved"
    TILT = "tilt"
    TILT_RESOLVED = "tilt_resolved"
    ORPHAN_VIP = "orphan_vip"
    ORPHAN_VIP_RESOLVED = "orphan_vip_resolved"
    VIP_CONFLICT = "vip_conflict"
    VIP_CONFLICT_RESOLVED = "vip_conflict_resolved"
    VIEW_FAILING = "view_failing"
    VIEW_FAILING_RESOLVED = "view_failing_resolved"
    PAUSED = "paused"  # a maintenance pause began: nothing is fenced in its scope
    PAUSED_RESOLVED = "paused_resolved"  # it ended (resumed, or its time ran out)
    TEST = "test"  # `arbiter notify test`: never written to the outbox


@dataclass(frozen=True, slots=True)
class Pause:
    """A maintenance pause (`arbiter pause`): nothing is fenced in ``scope`` (a cluster,
    or every cluster when None) until ``until``; everything is still watched, recorded
    and notified, and verdicts keep their rule."""

    id: int
    scope: str | None
    reason: str
    by: str
    started_at: datetime
    until: datetime

    def covers(self, cluster: str, now: datetime) -> bool:
        return (self.scope is None or self.scope == cluster) and now < self.until

    def describe(self) -> str:
        where = self.scope or "every cluster"
        return (f"paused for maintenance ({where}) by {self.by} until "
                f"{self.until.isoformat(timespec='seconds')}: {self.reason}")


@dataclass(frozen=True, slots=True)
class Address:
    ifname: str
    address: str
    prefixlen: int

    @property
    def is_loopback(self) -> bool:
        # LVS-DR real servers carry the VIP on lo (or lo:0): that is not ownership.
        return self.ifname == "lo" or self.ifname.startswith("lo:")


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
        """VIPs this node owns: on a non-loopback interface."""
        if not self.addresses:
            return ()
        own = {a.address for a in self.addresses if not a.is_loopback}
        return tuple(v for v in vips if v in own)

    def vip_addresses(self, vips: tuple[str, ...] | list[str]) -> tuple[Address, ...]:
        if not self.addresses:
            return ()
        return tuple(a for a in self.addresses if a.address in vips and not a.is_loopback)


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

    def instance(self, vrid: int) -> VrrpInstance | None:
        return next((i for i in self.instances if i.vrid == vrid), None)

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


class FenceMode(StrEnum):
    SSH = "ssh"  # stop keepalived over SSH (and escalate to ip addr del)
    GATE = "gate"  # deny through /verdict; the node's arbiter-gate puts it into FAULT


@dataclass(frozen=True, slots=True)
class IncidentMemory:
    """The policy's memory of a split-brain incident (id assigned by the store)."""

    id: int | None
    state: IncidentState
    survivor: str | None = None
    victims: tuple[str, ...] = ()
    attempts: int = 0
    last_attempt_at: datetime | None = None
    mode: FenceMode = FenceMode.SSH
    released: bool = False  # an operator released the victims: allow again
    # fenced again after an automatic release: its holds wait for an operator
    refenced: bool = False


@dataclass(frozen=True, slots=True)
class Hold:
    """A fenced victim, denied until released (by healing, or by an operator)."""

    node: str
    incident: int
    survivor: str
    mode: FenceMode
    keepalived_stopped: bool  # released holds run recover_command when True
    operator_only: bool = False  # re-fenced after an automatic release: never again


@dataclass(frozen=True, slots=True)
class Denial:
    """A backup denied because it missed its master's adverts (``policy.vrrp.deaf_rule``).
    Memory between rounds, not kept across a restart: a restarted arbiter lifts the
    deny once and judges again, as a probe does."""

    node: str
    vrid: int
    since: datetime  # when this deny began
    probe_at: datetime | None = None  # a probe release under way
    probed: datetime | None = None  # when the last probe ended


@dataclass(frozen=True, slots=True)
class ClusterHistory:
    split_streak: int = 0
    split_since: datetime | None = None
    # per node in this split: (node, consecutive observations holding a split VIP,
    # since when); a node that joins a split its incident already decided is
    # confirmed on its own count, not on the split's (issue 28)
    claims: tuple[tuple[str, int, datetime], ...] = ()
    clean_streak: int = 0
    clean_since: datetime | None = None  # the first clean round of this streak
    orphan_streak: int = 0
    orphan_incident: int | None = None
    conflict_streak: int = 0  # rounds a stranger's MAC answered for a VIP
    conflict_incident: int | None = None
    view_fail_streak: int = 0  # rounds an exclusive cluster ran on the fallback rule
    view_fail_incident: int | None = None
    # vip -> node that held it alone in the last clean round
    incumbents: tuple[tuple[str, str], ...] = ()
    incident: IncidentMemory | None = None
    held: tuple[Hold, ...] = ()  # fenced victims, not yet released
    release_streaks: tuple[tuple[str, int], ...] = ()
    auto_released_at: tuple[tuple[str, datetime], ...] = ()
    epoch: int = 0
    verdicts: tuple[tuple[str, str], ...] = ()
    denials: tuple[Denial, ...] = ()  # exclusive: backups denied for missing adverts
    # keepalived's view shows this round's split as two masters deaf to each other
    # (why, in words); None: no such evidence, confirmation spans confirm_min_span
    view_split: str | None = None

    def claim_of(self, node: str) -> tuple[int, datetime | None]:
        """How many consecutive observations ``node`` has held a split VIP, since when."""
        return next(((n, t) for m, n, t in self.claims if m == node), (0, None))

    def incumbent_of(self, vip: str) -> str | None:
        return dict(self.incumbents).get(vip)

    @property
    def held_nodes(self) -> frozenset[str]:
        return frozenset(h.node for h in self.held)

    def hold_of(self, node: str) -> Hold | None:
        return next((h for h in self.held if h.node == node), None)

    def with_(self, **kw) -> ClusterHistory:
        # In steady state most updates set what is already there; skipping those
        # copies was 5% of a 500-cluster round (dataclasses.replace is slow).
        if all(getattr(self, k) == v for k, v in kw.items()):
            return self
        return replace(self, **kw)


@dataclass(frozen=True, slots=True)
class History:
    clusters: tuple[tuple[str, ClusterHistory], ...] = ()
    isolated_incident: int | None = None
    # by name; built once, since a round looks up every cluster (O(n) scans were
    # a visible share of a 500-cluster round)
    _by_name: dict[str, ClusterHistory] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", dict(self.clusters))

    def cluster(self, name: str) -> ClusterHistory:
        return self._by_name.get(name) or ClusterHistory()


@dataclass(frozen=True, slots=True)
class VictimAction:
    node: str
    method: FenceMethod
    vips: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class FencePlan:
    """What the policy decided to fence: who survives, who is fenced how, and why."""

    cluster: str
    survivor: str
    victims: tuple[VictimAction, ...]
    vips: tuple[str, ...]
    reason: str
    ranking: tuple[tuple[str, str], ...] = ()  # node -> why it ranked where it did
    dry_run: bool = False
    mode: FenceMode = FenceMode.SSH
