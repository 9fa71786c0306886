"""What the policy decides: a node's verdict, and what it orders fenced (``FencePlan``)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from arbiter.model.memory import FenceMode


class Verdict(StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    ABSTAIN = "abstain"


class FenceMethod(StrEnum):
    STOP_KEEPALIVED = "stop_keepalived"  # run fence_command, escalate to ip addr del
    REMOVE_ADDRESS = "remove_address"  # keepalived is dead: the VIP is a stale leftover



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
