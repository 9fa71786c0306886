"""Fencing levels (Pacemaker's fencing topology): the ordered ways to fence a node,
each tried and verified before the next.

    ssh      fence_command over SSH (stop keepalived), verified
    vip-del  `ip addr del` of the VIPs over SSH, verified
    gate     deny through /verdict and wait for the node's gate to drop the VIP
    agent    a fence agent on the arbiter host, ClusterLabs fence-agents protocol
             (options as key=value lines on stdin; action=off, then status)

A fence that needs the victim's cooperation is not a fence: with sshd dead or the
host wedged, only an ``agent`` level (IPMI, a hypervisor, a PDU, a cloud API)
still works.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Level = Literal["ssh", "vip-del", "gate", "agent"]
DEFAULT_LEVELS: tuple[Level, ...] = ("ssh", "vip-del")
_OPTION_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,63}$")
RESERVED = frozenset({"action", "nodename"})  # the arbiter sets these itself


def _levels(v: list[Level] | None) -> list[Level] | None:
    if v is not None and len(set(v)) != len(v):
        raise ValueError(f"a level is listed twice: {v}")
    return v


def _options(v: dict[str, str]) -> dict[str, str]:
    for k, val in v.items():
        if not _OPTION_KEY.match(k):
            raise ValueError(f"{k!r} is not a fence agent option name")
        if k in RESERVED:
            raise ValueError(f"{k!r} is set by the arbiter itself")
        if "\n" in val or "\r" in val:
            raise ValueError(f"option {k}: a value cannot hold a line break (the agent "
                             "reads one key=value per line)")
    return v


class ClusterFencing(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    fence_levels: list[Level] = Field(
        default_factory=lambda: list(DEFAULT_LEVELS), min_length=1,
        description="ways to fence a victim, tried in order until one is verified: "
        "ssh, vip-del, gate, agent")
    fence_agent: str | None = Field(
        None, description="the fence agent run on the arbiter host for the agent level "
        "(fence_ipmilan, fence_virsh, a cloud agent, or a site's own script)")
    fence_agent_options: dict[str, str] = Field(
        default_factory=dict, description="options for every node's agent call (each "
        "node's agent_options are added, and win); values may be ${ENV}")
    fence_agent_timeout: float = Field(30.0, gt=0, le=600,
                                       description="seconds one agent call may take")
    gate_fence_timeout: float = Field(
        15.0, gt=0, le=600, description="the gate level: seconds to wait for the denied "
        "node's gate to drop the VIP")

    @field_validator("fence_levels")
    @classmethod
    def _check_levels(cls, v: list[Level]) -> list[Level]:
        return _levels(v) or v

    @field_validator("fence_agent_options")
    @classmethod
    def _check_options(cls, v: dict[str, str]) -> dict[str, str]:
        return _options(v)


class NodeFencing(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    fence_levels: list[Level] | None = Field(
        None, min_length=1, description="this node's own levels (default: the cluster's)")
    agent_options: dict[str, str] = Field(
        default_factory=dict, description="this node's fence agent options, e.g. "
        "ip, username, password = \"${IPMI_PASSWORD}\", plug")

    @field_validator("fence_levels")
    @classmethod
    def _check_levels(cls, v: list[Level] | None) -> list[Level] | None:
        return _levels(v)

    @field_validator("agent_options")
    @classmethod
    def _check_options(cls, v: dict[str, str]) -> dict[str, str]:
        return _options(v)


class AgentRule(BaseModel):
    """The rule across a cluster and its nodes: an agent level needs an agent."""

    @model_validator(mode="after")
    def _agent_needed(self):  # type: ignore[no-untyped-def]
        levels = set(getattr(self, "fence_levels", []))
        for n in getattr(self, "nodes", []):
            levels |= set(n.fence_levels or [])
        if "agent" in levels and not getattr(self, "fence_agent", None):
            raise ValueError("fence_levels has agent but fence_agent is not set")
        return self
