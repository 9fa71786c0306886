"""The ``[ha]`` section: several arbiters of one site, one leader per shard.

Leadership is a lease row with a term in PostgreSQL (``arbiter.ha``). The rules
across fields live here; the rule that HA needs PostgreSQL is checked by
``Config`` because it reads ``arbiter.database``.
"""

from __future__ import annotations

from collections import Counter

from pydantic import BaseModel, ConfigDict, Field, model_validator

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"


class HASection(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME, description="this arbiter's name, unique in the site")
    members: list[str] = Field(
        min_length=1, description="the names of every arbiter of the site, this one included")
    # 5 s and 1 s (issue 23; were 15 s and 5 s): a takeover after a leader's death
    # costs at most the lease's remaining time (followers watch its expiry), so the
    # worst case is about lease_ttl + a round. The leader steps down after 4 s without
    # a successful renewal: four in a row must fail (BENCHMARKS.md, under load).
    lease_ttl: float = Field(
        5.0, ge=1, le=600,
        description="seconds a lease lasts from the database's clock at its last renewal")
    renew_every: float = Field(1.0, gt=0, le=300, description="seconds between renewals")
    prefer: list[str] = Field(
        default_factory=list,
        description="shards this arbiter leads first; it takes any other over only once it "
        "has gone without a leader for a whole renewal (empty: it contends for every shard)")
    quorum: int | None = Field(
        None, ge=1, description="fresh views (arbiters, the leader included) that must see a "
        "split brain before the leader fences it; default a majority of members")

    @model_validator(mode="after")
    def _rules(self) -> HASection:
        dup = sorted(n for n, k in Counter(self.members).items() if k > 1)
        if dup:
            raise ValueError(f"duplicate name(s) in ha.members: {', '.join(dup)}")
        if self.name not in self.members:
            raise ValueError(f"ha.name {self.name!r} is not in ha.members")
        if self.quorum is not None and self.quorum > len(self.members):
            raise ValueError(f"ha.quorum ({self.quorum}) exceeds the number of ha.members "
                             f"({len(self.members)}): nothing could ever be fenced")
        # two renewals per TTL: one slow or lost renewal must not lose the lease
        if self.renew_every * 2 > self.lease_ttl:
            raise ValueError(
                f"ha.renew_every ({self.renew_every:g}s) must be at most half of "
                f"ha.lease_ttl ({self.lease_ttl:g}s)")
        return self

    @property
    def need(self) -> int:
        """The quorum: ``quorum``, or a majority of ``members``."""
        return self.quorum or len(self.members) // 2 + 1

    @property
    def renew_timeout(self) -> float:
        """One renewal's bound, well under the TTL."""
        return min(self.renew_every, self.lease_ttl / 4)

    @property
    def step_down_margin(self) -> float:
        """The leader stops acting this long before its lease runs out by its own
        clock, counted from when it sent the renewal (before the database's now())."""
        return self.lease_ttl / 5
