"""What the policy remembers between rounds: incidents and their states, holds,
denials, each cluster's ``ClusterHistory`` and the arbiter's ``History``; and the
maintenance pauses in force. Rebuilt from the store after a restart
(``arbiter.policy.memory.restore``)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum


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
    family: int = 4  # with the vrid, the VRRP group (IPv4 and IPv6 may share a vrid)

    @property
    def group(self) -> tuple[str, int, int]:
        return (self.node, self.vrid, self.family)


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
