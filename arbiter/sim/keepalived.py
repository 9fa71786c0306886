"""keepalived as a simulated director plays it: the JSON dump the keepalived watch
streams (arbiter.probe.keepalived), and the track files the arbiter writes.

One VRRP instance (``VI_1``, vrid 51) over the node's VIPs: MASTER while the node holds
one of them, BACKUP otherwise, FAULT while its track file says 1; a MASTER sends an
advert every ``advert_int``; a BACKUP hears them unless the node is ``deaf`` (a VRRP
cut). The advert counters grow with elapsed time, as a real instance's do. The watch
sends what the node's quiet-tick rule says (``probe.keepalived.QuietTicks``), as the
node's own watch and ``arbiter-ssh-wrapper``'s copy do.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field

from arbiter.probe.keepalived import DUMP, END, ERROR, MARK, SAME, QuietTicks

TRACK = re.compile(r"^f=(/[A-Za-z0-9_./-]+)/([A-Za-z0-9_.%-]+); .* then echo ([0-9]+) > "
                   r"\"\$f\.seq\" && echo ([01]) > ")
PERIOD = re.compile(r"^echo '" + re.escape(MARK) + r" ([0-9.]+)(?: quiet ([0-9]))?'")


@dataclass
class PlayedKeepalived:
    priority: int = 100
    advert_int: float = 1.0
    deaf: bool = False  # hears no adverts (a VRRP cut)
    track: dict[str, int] = field(default_factory=dict)  # instance -> 1 deny, 0 allow
    track_seq: dict[str, int] = field(default_factory=dict)  # the last write's order
    sent: int = 0
    rcvd: int = 0
    _last: float = field(default_factory=time.monotonic)
    _state: str = "INIT"
    _since: float = field(default_factory=time.time)

    def state_of(self, holds: bool) -> str:
        if self.track.get("VI_1", 0):
            return "FAULT"
        return "MASTER" if holds else "BACKUP"

    def dump(self, holds: bool, vips: list[str]) -> str:
        now = time.monotonic()
        adverts = int((now - self._last) / self.advert_int)
        state = self.state_of(holds)
        if adverts:
            self._last += adverts * self.advert_int
            if state == "MASTER":
                self.sent += adverts
            elif state == "BACKUP" and not self.deaf:
                self.rcvd += adverts
        if state != self._state:
            self._state, self._since = state, time.time()
        code = {"INIT": 0, "BACKUP": 1, "MASTER": 2, "FAULT": 3}[state]
        return json.dumps([{
            "data": {"iname": "VI_1", "vrid": 51, "version": 2, "state": code,
                     "wantstate": code, "base_priority": self.priority,
                     "effective_priority": self.priority, "adver_int": self.advert_int,
                     "last_transition": self._since, "ifp_ifname": "eth0",
                     "vips": [f"{v}/24 dev eth0 scope global" for v in vips]},
            "stats": {"advert_rcvd": self.rcvd, "advert_sent": self.sent,
                      "pri_zero_rcvd": 0, "pri_zero_sent": 0}}])

    def block(self, holds: bool, vips: list[str], running: bool,
              stream: QuietTicks) -> str:
        """One tick of the watch's output as ``stream`` (the node's quiet-tick rule,
        with the dump this stream sent last) says it: whole, `@@kv-same`, or nothing."""
        if not running:
            stream.lost()
            return f"{ERROR} keepalived is not running\n"
        text = self.dump(holds, vips)
        uptime = round(time.monotonic(), 2)
        out = stream.tick(text, uptime)
        if out is None:
            return ""
        kind, held = out
        if kind == "same":
            return f"{SAME} {uptime:.2f}\n"
        return (f"{DUMP} {uptime:.2f}{f' {held:.2f}' if held is not None else ''}\n"
                f"{text}\n{END}\n")
