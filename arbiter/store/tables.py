"""SQLAlchemy 2 tables. Alembic migrations in migrations/ must match these."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in, timezone-aware UTC out, on SQLite and PostgreSQL alike."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use UTC-aware datetimes")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class Incident(Base):
    __tablename__ = "incidents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    cluster: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(32))
    vips: Mapped[list[str]] = mapped_column(JSON, default=list)
    survivor: Mapped[str | None] = mapped_column(String(64))
    victims: Mapped[list[str]] = mapped_column(JSON, default=list)
    reason: Mapped[str] = mapped_column(Text, default="")
    decision: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    evidence: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    fenced_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    held: Mapped[bool] = mapped_column(Boolean, default=False)
    held_nodes: Mapped[list[str] | None] = mapped_column(JSON)
    # victims whose keepalived a fence in flight is stopping: written with the decision,
    # cleared when the fence's result is, so a crash mid-fence cannot lose the hold
    pending_hold: Mapped[list[str] | None] = mapped_column(JSON)
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    released_by: Mapped[str | None] = mapped_column(String(128))
    # fenced again after an automatic release: its holds wait for an operator
    refenced: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # [ha]: the leader's term the incident was opened or decided under, and for the
    # arbiter's own incidents (isolated), which arbiter they are about
    term: Mapped[int | None] = mapped_column(BigInteger)
    arbiter: Mapped[str | None] = mapped_column(String(64))

    fence_attempts: Mapped[list[FenceAttempt]] = relationship(
        back_populates="incident", order_by="FenceAttempt.id"
    )
    events: Mapped[list[IncidentEvent]] = relationship(
        back_populates="incident", order_by="IncidentEvent.id"
    )

    __table_args__ = (
        Index("ix_incidents_cluster_state", "cluster", "state"),
        Index("ix_incidents_opened_at", "opened_at"),
    )


class FenceAttempt(Base):
    __tablename__ = "fence_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    node: Mapped[str] = mapped_column(String(64))
    step: Mapped[str] = mapped_column(String(32))
    command: Mapped[str] = mapped_column(Text)
    ok: Mapped[bool] = mapped_column(Boolean)
    exit_status: Mapped[int | None] = mapped_column(Integer)
    output: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime)
    duration_ms: Mapped[float] = mapped_column(Float)
    level: Mapped[str | None] = mapped_column(String(16))  # the fencing level
    term: Mapped[int | None] = mapped_column(BigInteger)  # [ha]: the leader's, when written

    incident: Mapped[Incident] = relationship(back_populates="fence_attempts")

    __table_args__ = (Index("ix_fence_attempts_incident", "incident_id"),)


class IncidentEvent(Base):
    """The incident's timeline: every state change and decision, in words."""

    __tablename__ = "incident_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    state: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text)

    incident: Mapped[Incident] = relationship(back_populates="events")

    __table_args__ = (Index("ix_incident_events_incident", "incident_id"),)


class ClusterState(Base):
    """What the policy must remember across a restart: the verdict epoch (never goes
    backwards) and the incumbent of each VIP (the survivor rule)."""

    __tablename__ = "cluster_state"

    cluster: Mapped[str] = mapped_column(String(64), primary_key=True)
    epoch: Mapped[int] = mapped_column(Integer, default=0)
    incumbents: Mapped[dict[str, str] | None] = mapped_column(JSON)  # vip -> node
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class NodeEvent(Base):
    """A keepalived state transition reported by arbiter-notify (POST /events)."""

    __tablename__ = "node_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cluster: Mapped[str] = mapped_column(String(64))
    node: Mapped[str] = mapped_column(String(64))
    instance: Mapped[str] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(16))
    priority: Mapped[int | None] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    source: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (Index("ix_node_events_cluster_node", "cluster", "node", "id"),)


class Heartbeat(Base):
    """Written by /readyz: readiness means the database takes writes, not only reads."""

    __tablename__ = "heartbeat"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class Lease(Base):
    """[ha]: who leads a shard, under which term (a fencing token), until when.
    Written only by ``arbiter.ha.lease`` with the database's clock."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(64))
    term: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # the arbiter that prefers this shard and asks for it back ([ha] prefer)
    wanted_by: Mapped[str | None] = mapped_column(String(64))


class LeaseTerm(Base):
    """[ha]: the audit of leadership: who took each term of a shard, and when (the
    database's clock). Written by ``arbiter.ha.lease.remember``; the HA soak checks
    every recorded decision and fence step against it."""

    __tablename__ = "lease_history"

    shard: Mapped[str] = mapped_column(String(64), primary_key=True)
    term: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    holder: Mapped[str] = mapped_column(String(64))
    taken_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ArbiterView(Base):
    """[ha]: what one arbiter saw of every node of a shard in its last round, written
    each round with the database's clock (``arbiter.store.views``). ``usable`` is false
    while that arbiter is isolated or in TILT: such a view counts as no view."""

    __tablename__ = "arbiter_views"

    arbiter: Mapped[str] = mapped_column(String(64), primary_key=True)
    shard: Mapped[str] = mapped_column(String(64), primary_key=True)
    observed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    usable: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str | None] = mapped_column(Text)
    nodes: Mapped[dict[str, Any]] = mapped_column(JSON)  # cluster -> node -> NodeView


class Notification(Base):
    """The outbox: one row per notification and channel, written in the transaction
    that records the incident change it reports, delivered by the sender
    (``arbiter.notify``). ``dedup_key`` is the same for every retry of one delivery."""

    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dedup_key: Mapped[str] = mapped_column(String(200), unique=True)
    channel: Mapped[str] = mapped_column(String(48))
    event: Mapped[str] = mapped_column(String(32))
    incident_id: Mapped[int | None] = mapped_column(Integer)
    cluster: Mapped[str | None] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(8))  # pending, sent, dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_notifications_state_next", "state", "next_at"),)


class PauseRow(Base):
    """A maintenance pause (`arbiter pause`): fencing off in ``scope`` (a cluster, or
    every cluster when null) until ``until``, unless ended earlier. Kept after it ends:
    who paused, why, and who resumed are an audit trail."""

    __tablename__ = "pauses"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scope: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    by: Mapped[str] = mapped_column(String(128))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    until: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_by: Mapped[str | None] = mapped_column(String(128))
    # when the arbiter noted the start and the end (notifications), so a restart or a
    # takeover notes each exactly once
    noted_start: Mapped[bool] = mapped_column(Boolean, default=False)
    noted_end: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (Index("ix_pauses_open", "ended_at", "until"),)
