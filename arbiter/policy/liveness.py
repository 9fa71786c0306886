"""Whether a director's keepalived works: it runs only when it answers (issue 28).

``pidof`` finds a frozen keepalived (SIGSTOP, a stuck script, a paused container)
as readily as a working one, yet a frozen one sends no advert and answers nothing.
So keepalived counts as running only when:

- with keepalived's view: its process answers the JSON dump signal within the
  watch's bound. A view that answered before and now gets no dump while the process
  is there is **hung**. A view that is only stale or broken (the SSH stream
  reconnecting) says nothing about keepalived: the process check decides;
- without the view (or before its first dump): the collect's process check, which
  reads ``/proc/PID/stat`` and calls a stopped process (state T) **frozen**.

Pure: the facts come in with the observation.
"""

from __future__ import annotations

from enum import StrEnum

from arbiter.model import NodeObservation


class Keepalived(StrEnum):
    ANSWERS = "running"  # the process is there and answered (or runs, without a view)
    HUNG = "hung"  # the process is there and answers nothing: frozen or stuck
    STOPPED = "stopped"
    UNKNOWN = "unknown"  # no answer from the node at all


def keepalived_state(o: NodeObservation) -> tuple[Keepalived, str]:
    """What this node's keepalived is, and why, in words."""
    if o.keepalived_running is None and not o.keepalived_frozen:
        return Keepalived.UNKNOWN, "unknown (no collect from the node)"
    if o.keepalived_frozen:
        return Keepalived.HUNG, "frozen: its process is stopped (state T), it sends nothing"
    if not o.keepalived_running:
        return Keepalived.STOPPED, "stopped"
    kv = o.keepalived
    if kv is not None and kv.supported and kv.hung:
        return Keepalived.HUNG, f"hung: its process is there but {kv.error}"
    return Keepalived.ANSWERS, "running"


def runs(o: NodeObservation) -> bool | None:
    """keepalived works here: True, False (stopped, frozen, hung), or None (unknown)."""
    state, _ = keepalived_state(o)
    return None if state is Keepalived.UNKNOWN else state is Keepalived.ANSWERS


def hung(o: NodeObservation) -> bool:
    """Its process is there and does not work: a fence must stop it (the signal stays
    pending) and take the VIP away by hand, not just take the VIP."""
    return keepalived_state(o)[0] is Keepalived.HUNG
