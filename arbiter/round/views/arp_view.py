"""The ARP view of every cluster that has an ``arp_interface``: one ``ArpWatch``
per interface (probe and listener), the MAC-to-node mapping learnt from the
collect (kept while a node's SSH is down), and the ``ArpSight`` of each round.

A gratuitous ARP or an unsolicited reply from a MAC that was not answering for
that VIP wakes a round at once: keepalived sends one the moment it becomes MASTER.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from arbiter.config import ClusterConfig, Config
from arbiter.model import ArpSight, NodeObservation
from arbiter.probe.arp import ArpUnavailable, ArpWatch, off_segment
from arbiter.round.memory.current import CurrentConfig, ReadsConfig, holder

log = logging.getLogger("arbiter.arp")


def preflight(config: Config) -> list[str]:
    """Problems opening each configured interface (serve refuses to start on any)."""
    problems = []
    for iface in sorted({c.arp_interface for c in config.clusters if c.arp_interface}):
        # with the interface's VIPs: an IPv6 one needs the neighbour view's socket too
        w = ArpWatch(iface, {v for c in config.clusters if c.arp_interface == iface
                             for v in c.vips})
        try:
            w.open()
        except ArpUnavailable as exc:
            names = ", ".join(f"clusters[{i}].arp_interface" for i, c in
                              enumerate(config.clusters) if c.arp_interface == iface)
            problems.append(f"{names}: {exc}")
        finally:
            w.close()
    return problems


class ArpViews(ReadsConfig):
    def __init__(self, config: Config | CurrentConfig, wake: Callable[[], None],
                 clock: Callable[[], float] = time.monotonic):
        self._current = holder(config)
        self.wake = wake
        self.clock = clock
        self.watches: dict[str, ArpWatch] = {}
        self.errors: dict[str, str] = {}
        self.owners: dict[str, dict[str, str]] = {}  # cluster -> mac -> node
        self._answering: dict[str, tuple[str, ...]] = {}  # vip -> MACs of the last probe

    def start(self) -> None:
        by_iface: dict[str, set[str]] = {}
        for c in self.config.clusters:
            if c.arp_interface:
                by_iface.setdefault(c.arp_interface, set()).update(c.vips)
        for iface, vips in by_iface.items():
            w = ArpWatch(iface, vips, self._claimed, self.clock)
            try:
                w.start()
            except ArpUnavailable as exc:
                self.errors[iface] = str(exc)
                log.error("ARP view on %s unavailable: %s", iface, exc)
                continue
            self.watches[iface] = w
            log.info("ARP view on %s (%s): %d VIP(s)", iface, w.mac, len(w.vips))

    def stop(self) -> None:
        for w in self.watches.values():
            w.close()
        self.watches.clear()

    def _claimed(self, vip: str, mac: str) -> None:
        if mac not in self._answering.get(vip, ()):
            log.info("ARP: %s claimed by %s: a round now", vip, mac)
            self.wake()

    def unavailable(self, c: ClusterConfig) -> str | None:
        """Why this cluster has no ARP view now (None: it has one)."""
        if not c.arp_interface:
            return None
        w = self.watches.get(c.arp_interface)
        if w is None:
            return self.errors.get(c.arp_interface, "the ARP view has not started")
        off = off_segment(c.vips, w.network, w.networks6)
        if off:
            nets = [str(n) for n in [w.network, *w.networks6] if n is not None]
            return (f"{', '.join(off)} not on {c.arp_interface}'s "
                    f"subnet{'s' if len(nets) > 1 else ''} {', '.join(nets)}: the "
                    "ARP view works only on the directors' own segment (behind a router, "
                    "every answer would be the router's)")
        return None

    def probe(self, c: ClusterConfig) -> asyncio.Task[dict[str, tuple[str, ...]]] | None:
        """Start this round's probe of the cluster's VIPs (None: no ARP view)."""
        if not c.arp_interface or self.unavailable(c) is not None:
            return None
        return asyncio.create_task(self.watches[c.arp_interface].probe(c.vips, c.arp_timeout))

    async def sight(self, c: ClusterConfig, nodes: tuple[NodeObservation, ...],
                    task: asyncio.Task[dict[str, tuple[str, ...]]] | None) -> ArpSight | None:
        if not c.arp_interface:
            return None
        own = self.owners.setdefault(c.name, {})
        for n in nodes:
            if n.ssh_ok and n.macs:
                for m in [m for m, who in own.items() if who == n.node and m not in n.macs]:
                    del own[m]
                own.update(dict.fromkeys(n.macs, n.node))
        if task is None:
            why = self.unavailable(c) or "the ARP view has not started"
            return ArpSight(owners=tuple(sorted(own.items())), error=why)
        try:
            answers = await task
        except ArpUnavailable as exc:
            return ArpSight(owners=tuple(sorted(own.items())), error=str(exc))
        self._answering.update(answers)
        return ArpSight(tuple(sorted(answers.items())), tuple(sorted(own.items())))

    def announce_na(self, c: ClusterConfig, vip: str, mac: str) -> str | None:
        """Send the unsolicited neighbour advertisements for IPv6 ``vip`` at ``mac`` on
        the cluster's ``arp_interface``; why not, or None once sent."""
        if not c.arp_interface:
            return ("no arp_interface: the arbiter sends IPv6 announcements from the "
                    "directors' segment only")
        w = self.watches.get(c.arp_interface)
        if w is None:
            return self.errors.get(c.arp_interface, "the ARP view has not started")
        try:
            w.send_na(vip, mac)
        except ArpUnavailable as exc:
            return str(exc)
        return None

    async def still_answering(self, c: ClusterConfig, node: str,
                              vips: tuple[str, ...]) -> tuple[str, ...] | None:
        """The VIPs for which one of ``node``'s MACs answers ARP right now (None: this
        cluster has no working ARP view, so nothing to add to the SSH verify)."""
        w = self.watches.get(c.arp_interface or "")
        own = self.owners.get(c.name, {})
        macs = {m for m, who in own.items() if who == node}
        if w is None or not macs:
            return None
        answers = await w.probe(list(vips), c.arp_timeout)
        return tuple(v for v, got in answers.items() if macs & set(got))
