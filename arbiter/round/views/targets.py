"""Where to reach a director over SSH: its address, port and user, from the config."""

from __future__ import annotations

from arbiter.config import ClusterConfig, Config
from arbiter.probe.ssh import Target


def target_for(config: Config, cluster: ClusterConfig, node: str) -> Target:
    n = cluster.node(node)
    assert n is not None, node
    return Target(n.name, n.address, n.port or config.ssh.port, n.username or config.ssh.username)
