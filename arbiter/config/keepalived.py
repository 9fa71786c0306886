"""keepalived's own view and how a verdict reaches keepalived, per cluster.

- ``keepalived_view``: stream each director's JSON dump (``arbiter.probe.keepalived``):
  the state, priority and advert counters of every VRRP instance, shown in /status and
  kept as evidence. With ``verdict = "exclusive"`` it is what lets a backup stay in
  BACKUP until it actually misses its master's adverts.
- ``track_files``: also write each node's verdict into a keepalived ``track_file``
  on that node (``track_dir``/INSTANCE, 1 deny, 0 allow) over SSH: keepalived
  watches it with inotify, so a deny is in force within milliseconds instead of at
  the gate script's next run. The node's gate expires a deny nobody refreshed.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class NodeKeepalived(BaseModel):
    """Where one director's keepalived keeps its pid file and writes its JSON dump: the
    keepalived watch reads them (without arbiter-ssh-wrapper; with it, the wrapper's own
    ``keepalived_pid`` and ``keepalived_dump`` lines decide, as they must agree with
    its sudoers line)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    keepalived_pidfile: str = Field(
        "/run/keepalived.pid", pattern=r"^/[A-Za-z0-9_./-]{1,200}$",
        description="keepalived's pid file on this director (keepalived -p)",
    )
    keepalived_dump: str = Field(
        "/tmp/keepalived.json", pattern=r"^/[A-Za-z0-9_./*-]{1,200}$",
        description="where keepalived writes its JSON dump on this director; `*` matches "
        "as in the shell, for systemd's PrivateTmp (for example "
        "/tmp/systemd-private-*-keepalived.service-*/tmp/keepalived.json)",
    )


class ClusterKeepalived(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    keepalived_view: bool = Field(
        True, description="stream keepalived's JSON dump from each director (instance "
        "states, priorities, advert counters); needs keepalived 2.x built with JSON. "
        "Without it, exclusive verdicts hold every backup in FAULT while the master is "
        "healthy, and confirmation never goes faster than confirm_min_span",
    )
    track_files: bool = Field(
        False, description="write each node's verdict into keepalived track files on the "
        "node (track_dir/INSTANCE: 1 deny, 0 allow) over SSH, so a deny takes effect in "
        "milliseconds; keepalived.conf must track them with weight 0 (see "
        "deploy/keepalived/)",
    )
    track_dir: str = Field(
        "/run/arbiter-verdict", pattern=r"^/[A-Za-z0-9_./-]{1,200}$",
        description="the directory of the track files on each director (writable by the "
        "arbiter's SSH user; arbiter-ssh-wrapper's track_dir must name the same one)",
    )
