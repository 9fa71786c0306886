"""Warnings about a cluster's VIPs as the directors carry them (issue 31), pure: what
makes IPv6 VIPs misbehave without making them wrong.

- **A VIP in no keepalived instance** of any node whose view answered: keepalived
  ignores an address whose family is not its instance's ("address family must match
  VRRP instance … - ignoring", found with `keepalived --config-test`), so a VIP of
  the wrong family in an instance is never held; it needs an instance of its own.
- **An IPv6 VIP that is not deprecated** on its holder: a `/64` VIP in the director's
  own prefix becomes its preferred source address, and in a split brain its gateway
  checks are then answered only where the gateway's neighbour cache points (found on
  the lab: the survivor rule followed the last NA). keepalived deprecates a `/128` VIP
  itself (preferred_lft 0).
"""

from __future__ import annotations

from arbiter.config import ClusterConfig
from arbiter.model import ClusterObservation


def vip_warnings(cluster: ClusterConfig, obs: ClusterObservation) -> list[str]:
    out = []
    views = [o.keepalived for o in obs.nodes
             if o.keepalived is not None and o.keepalived.error is None
             and o.keepalived.instances]
    if views:
        in_some = {v for kv in views for i in kv.instances for v in i.vips}
        for vip in cluster.vips:
            if vip not in in_some:
                out.append(f"{vip} is in no keepalived instance of any director: keepalived "
                           "ignores an address whose family is not its instance's; give it "
                           "an instance of its own family")
    for o in obs.nodes:
        for a in o.vip_addresses(cluster.vips):
            if ":" in a.address and not a.deprecated:
                out.append(f"{o.node} holds {a.address}/{a.prefixlen} as a preferred "
                           "address: it can become the director's source address, and in "
                           "a split brain its gateway checks then depend on the gateway's "
                           "neighbour cache; declare it /128 (keepalived deprecates it) or "
                           "with preferred_lft 0")
    return out
