"""The View: everything the API and the CLI read, as one frozen object.

The service builds a new View at the end of every round (and after an intent
changes what operators see) and replaces the old one in one assignment. Readers
take ``arbiter.view`` once and read a consistent picture from it; nothing they
do can change the loop's state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from arbiter.config import Config
from arbiter.model import History, Pause, Snapshot
from arbiter.policy.assessment import Assessment
from arbiter.round.outputs.load import Load


@dataclass(frozen=True, slots=True)
class RoundStats:
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_ms: float = 0.0
    count: int = 0
    overruns: int = 0


@dataclass(frozen=True, slots=True)
class PushStats:
    enabled: bool = False
    watchers_up: int = 0
    events: int = 0
    last: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class View:
    config: Config
    history: History
    snapshot: Snapshot | None = None
    assessment: Assessment | None = None
    stats: RoundStats = RoundStats()
    push: PushStats = PushStats()
    db_error: str | None = None
    db_error_at: datetime | None = None
    unwritten: int = 0  # fence records waiting for the database
    db_file_problem: str | None = None
    tilt_until: datetime | None = None
    tilt_reason: str | None = None
    last_error: str | None = None
    last_seen: Mapping[tuple[str, str], datetime] = field(default_factory=dict)
    last_event: Mapping[tuple[str, str], Mapping[str, Any]] = field(default_factory=dict)
    gateway_view: Mapping[str, bool] = field(default_factory=dict)
    # [ha]: leadership as /status shows it, and the highest term seen per shard
    ha: Mapping[str, Any] | None = None
    terms: Mapping[str, int] = field(default_factory=dict)
    ha_blind: str | None = None  # [ha] why the shared state cannot be trusted now
    notify: Mapping[str, Any] | None = None  # [notify] the sender's state
    # track files: (cluster, node) -> instance -> what was written (round.track_files)
    track: Mapping[tuple[str, str], Mapping[str, Any]] = field(default_factory=dict)
    config_status: Mapping[str, Any] | None = None  # the config file and the last reload
    pauses: tuple[Pause, ...] = ()  # maintenance pauses in force at the last round
    load: Load = Load()  # the loop's CPU per second, and keepalived's dumps per second
    # recorded since start: all dumps, `@@kv-same`, samples of held (quiet) ticks
    keepalived_dumps: tuple[int, int, int] = (0, 0, 0)

    def staleness(self, now: datetime) -> str | None:
        """Why the latest observations cannot be trusted for a verdict, or None."""
        if self.snapshot is None or self.assessment is None:
            return "no round has completed yet"
        age = (now - self.snapshot.at).total_seconds()
        if age > self.config.stale_after:
            return (f"observations are stale: last round {age:.1f}s ago "
                    f"(stale_after {self.config.stale_after}s)")
        return self.ha_blind
