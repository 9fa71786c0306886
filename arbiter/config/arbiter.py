"""The ``[arbiter]`` section: the loop's timing, its vantage, and how it runs."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from arbiter.config.base import IPAddr, _ip, _Strict
from arbiter.config.listen import parse_listen


class ArbiterSection(_Strict):
    listen: str = "127.0.0.1:8080"
    database: str = "sqlite:///arbiter.db"
    interval: float = Field(1.0, ge=0.1, le=3600, description="seconds between rounds")
    confirm_rounds: int = Field(
        2, ge=2, le=1000,
        description="consecutive rounds a split brain must persist before fencing; "
        "1 would fence on a single round of evidence, so it is refused",
    )
    resolve_rounds: int = Field(3, ge=1, le=1000, description="clean rounds that resolve")
    confirm_after: float | None = Field(
        None, gt=0, le=3600,
        description="confirm a split brain by time instead of rounds: it must have lasted "
        "this many seconds, over at least two observations",
    )
    confirm_min_span: float = Field(
        0.5, ge=0, le=3600,
        description="a split brain is confirmed only once it has lasted this many seconds, "
        "whatever woke the rounds (push events, notify, fence results): in a normal VRRP "
        "handover the new master adds the VIP a moment before the old one drops it",
    )
    push: bool = Field(
        True, description="watch each director's addresses (ip monitor over SSH) and run a "
        "round at once when a VIP moves",
    )
    min_round_gap: float = Field(
        0.05, ge=0, le=10, description="seconds between rounds woken early by events"
    )
    gateways: list[IPAddr] = Field(min_length=1)
    dry_run: bool = False
    icmp_timeout: float = Field(0.5, gt=0, le=30)
    icmp_privileged: Literal["auto", "yes", "no"] = "auto"
    stale_after: float | None = Field(
        None, gt=0, description="observations older than this make verdicts abstain"
    )
    tilt_after: float | None = Field(
        None, gt=0, description="a round starting this much later than scheduled means TILT"
    )
    tilt_period: float = Field(30.0, ge=0, description="seconds fencing stays suspended")
    fence_verify_timeout: float = Field(5.0, gt=0, le=300)
    fence_retry_after: float = Field(10.0, gt=0)
    max_fence_attempts: int = Field(3, ge=1, le=100)
    degraded_hold: float = Field(
        30.0, ge=0,
        description="seconds a node that answers ICMP but not SSH keeps its last seen VIPs",
    )
    auto_release: bool = Field(
        True, description="release a held victim once it has reached the survivor again"
    )
    release_rounds: int = Field(
        10, ge=2, le=100000,
        description="consecutive rounds the victim must see the survivor and a gateway",
    )
    max_pause: float = Field(
        14400.0, gt=0, le=7 * 86400,
        description="the longest maintenance pause an operator may ask for (arbiter pause "
        "--for), in seconds; every pause has an expiry",
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="text: one line per record (journald-friendly); json: one "
        "object per line with ts, level, logger, msg and the cluster, node, incident and "
        "term it is about, for a log pipeline",
    )
    release_cooldown: float = Field(
        600.0, ge=0,
        description="a node split again this soon after an automatic release waits for an operator",
    )
    keepalived_watch_every: float = Field(
        0.25, ge=0.05, le=2,
        description="seconds between keepalived dumps on each director (keepalived_view): "
        "a backup that misses two adverts is denied within two adverts plus about twice "
        "this",
    )

    @field_validator("gateways")
    @classmethod
    def _gateways(cls, v: list[str]) -> list[str]:
        return [_ip(g, "gateway") for g in v]

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        parse_listen(v)
        return v

    @field_validator("database")
    @classmethod
    def _database(cls, v: str) -> str:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            make_url(v)
        except ArgumentError as exc:
            raise ValueError(f"not a SQLAlchemy URL: {exc}") from None
        return v
