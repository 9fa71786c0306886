"""The adapters the commands build from the config: ICMP and the SSH pool."""

from __future__ import annotations

import logging

from arbiter.config import Config
from arbiter.probe.icmp import IcmpPinger, choose_privileged
from arbiter.probe.ssh import SshPool

log = logging.getLogger("arbiter")


def pinger_for(cfg: Config) -> IcmpPinger:
    """ICMP: raw sockets where allowed (or asked), otherwise datagram sockets."""
    privileged = choose_privileged(cfg.arbiter.icmp_privileged)
    log.info("ICMP: %s sockets", "raw (privileged)" if privileged else "unprivileged datagram")
    return IcmpPinger(privileged)


def pool_for(cfg: Config) -> SshPool:
    """The persistent SSH connections to the directors (strict known_hosts)."""
    return SshPool(cfg.ssh.client_keys, cfg.ssh.known_hosts, cfg.ssh.connect_timeout,
                   cfg.ssh.keepalive_interval)
