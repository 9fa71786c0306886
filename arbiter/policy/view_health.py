"""Whether keepalived's view of a node can be trusted as evidence (issue 29). Pure.

A view that keeps failing must never mean "allow everyone". Whatever the cause (a
dump of a shape the parser does not know, a dump outside ``/tmp`` under systemd's
PrivateTmp, a pid file elsewhere, a sudoers line that does not match, which shows as
"no dump within 0.4 s"), once a node's watch has given only errors for
``FAILING_AFTER`` seconds while its keepalived runs, that node's clusters go back to
the documented fallback rule (``verdicts.without_view``): deny every backup while
the holder is healthy. ``/status`` says why, a metric counts it, and an exclusive
cluster opens a ``view_failing`` incident, which notifies.

An error is explained, not a failure, while the collect says keepalived is stopped.
"""

from __future__ import annotations

from datetime import datetime

from arbiter.config import ClusterConfig
from arbiter.model import ClusterObservation, NodeObservation
from arbiter.policy.liveness import Keepalived, keepalived_state

# seconds of nothing but errors: a few watch periods and a reconnect (its first
# backoff is 1 s); a keepalived restart gives a dump again within about 1 s
FAILING_AFTER = 5.0


def view_failing(o: NodeObservation, now: datetime) -> str | None:
    """Why this node's view is failing, in words, or None."""
    kv = o.keepalived
    if kv is None or not kv.supported or kv.error is None or kv.failing_since is None:
        return None
    if keepalived_state(o)[0] is Keepalived.STOPPED:
        return None  # explained: its keepalived is stopped
    lasted = (now - kv.failing_since).total_seconds()
    if lasted < FAILING_AFTER:
        return None
    return f"{o.node}: keepalived's view failing for {lasted:.0f}s ({kv.error})"


def failing_views(cluster: ClusterConfig, obs: ClusterObservation,
                  now: datetime) -> tuple[str, ...]:
    if not cluster.keepalived_view:
        return ()
    return tuple(w for o in obs.nodes if (w := view_failing(o, now)) is not None)
