"""keepalived's own view, read from each director: its JSON dump, streamed.

``watch_command`` is one POSIX sh command that runs as long as the SSH channel does:
every ``period`` seconds it sends keepalived the JSON signal (``keepalived
--signum=JSON``), waits for ``/tmp/keepalived.json`` to be written again, and prints
it between ``@@kv`` and ``@@kv-end``. Without a dump it says why (``@@kv-error``):
keepalived not running, or built without JSON (1.x). ``arbiter-ssh-wrapper``
recognises the command by its marker and runs its own copy, taking only the period.

A dump byte-identical to the last one this stream sent (between two adverts, three
dumps in four at ``advert_int`` 1 and a dump every 0.25 s; a deaf backup's every dump)
is sent as one line, ``@@kv-same UPTIME`` (issue 32): the arbiter records a sample of
the same counters at the node's new time, as it would from the whole dump, without
~1.7 KB per instance to carry, decrypt and read.

**Quiet ticks** (issue 32, ``QuietTicks``): each message costs the arbiter about
0.2 ms through SSH and the view, whole or one line, so the node also leaves unsent the
unchanged dumps the rule cannot use: after a change, up to ``quiet`` unchanged ticks,
and only while fewer ticks have passed than between the last two changes (the node's
own cadence: one advert interval, learned without reading the dump). A tick that finds
no change when the cadence says one was due (a backup that stopped hearing, a master
that stopped sending) is sent, and so is every one after it, as before. The next
change carries the uptime of the last unsent tick (``@@kv UPTIME HELD``), so the
arbiter holds a sample on each side of every change: the counts ``policy.vrrp``
takes are the ones it takes from every tick (``tests/unit/test_quiet_ticks.py``).

``parse_dump`` validates one dump strictly, like the collect: it is input from a
machine we do not control. Any failure is that node's own error.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from arbiter.policy.vrrp import QUIET_TICKS, quiet_ticks

MARK = "@@arbiter-keepalived v1"
DUMP, END, ERROR, SAME = "@@kv", "@@kv-end", "@@kv-error", "@@kv-same"
MAX_DUMP_CHARS = 256 * 1024  # a dump is ~1.7 KB per instance
MAX_INSTANCES = 256
# keepalived's numeric states (vrrp.h); anything else is shown as it came
STATES = {0: "INIT", 1: "BACKUP", 2: "MASTER", 3: "FAULT"}
# a key each instance of a dump has once: two of them, and no tick is held back
ONE_INSTANCE = '"iname"'
# an advert interval under 1 s (adver_int, or a VRRPv3 master's master_adver_int, as
# keepalived's JSON writer prints it: `"adver_int": 0.5`): no tick is held back
FAST_ADVERTS = ('adver_int":0', 'adver_int": 0', 'adver_int" : 0')
_FAST = "".join(f"|*'{f}'*" for f in FAST_ADVERTS)
# the watch's word for a keepalived whose process is there but gave no dump in time
# (arbiter-ssh-wrapper says the same)
NO_ANSWER = "no dump within"


def watch_command(period: float, pidfile: str = "/run/keepalived.pid",
                  dump: str = "/tmp/keepalived.json", quiet: int | None = None) -> str:
    """The stream of dumps, one every ``period`` seconds (0.05 to 5). ``pidfile`` and
    ``dump`` are the node's settings (safe characters only, checked by the config);
    ``dump`` may hold ``*`` (systemd's PrivateTmp): the newest match is read.
    ``quiet`` (0 to 9; default ``policy.vrrp.quiet_ticks`` of the period): unchanged
    ticks the node may leave unsent (``QuietTicks``); 0 is the command of an arbiter
    before quiet ticks, which every wrapper accepts."""
    period = min(5.0, max(0.05, period))
    p = f"{period:g}"
    q = max(0, min(9, int(quiet_ticks(period) if quiet is None else quiet)))
    find = (f"f=$(ls -t {dump} 2>/dev/null | head -n 1); f=${{f:-{dump}}}; "
            if "*" in dump else f"f={shlex.quote(dump)}; ")
    # c: unchanged ticks since the last change; g: ticks between the last two changes,
    # if at most q+1, the dump has one instance and no advert interval under 1 s (0: no
    # cadence, so nothing is held); s: the uptime of the last tick held back
    if q:
        start, lost = "l=; c=0; g=0; s=; ", "g=0; s=; "
        same = ("c=$((c+1)); "
                f"if [ $c -lt $g ]; then s=$u; else s=; echo \"{SAME} $u\"; fi; ")
        new = (f"if [ -n \"$l\" ] && [ $c -le {q} ]; then g=$((c+1)); else g=0; fi; "
               f"case $d in *'{ONE_INSTANCE}'*'{ONE_INSTANCE}'*{_FAST}) g=0;; esac; "
               f"c=0; l=$d; echo \"{DUMP} $u${{s:+ $s}}\"; s=; ")
    else:
        start, lost = "l=; ", ""
        same = f"echo \"{SAME} $u\"; "
        new = f"l=$d; echo \"{DUMP} $u\"; "
    return (
        f"echo '{MARK} {p}{f' quiet {q}' if q else ''}'; "
        "sig=$(keepalived --signum=JSON 2>/dev/null); "
        f"case $sig in ''|*[!0-9]*) echo '{ERROR} keepalived has no JSON dump "
        "(keepalived --signum=JSON printed no number: 1.x, or built without JSON)'; "
        "exit 0;; esac; "
        f"{start}while :; do "
        f"{find}"
        f"p=$(cat {shlex.quote(pidfile)} 2>/dev/null); "
        "if [ -z \"$p\" ] || [ ! -d \"/proc/$p\" ]; then "
        f"{lost}echo '{ERROR} keepalived is not running (no live pid in {pidfile})'; "
        "else "
        "o=$(stat -c %y \"$f\" 2>/dev/null); kill \"-$sig\" \"$p\"; i=0; "
        "while [ $i -lt 40 ] && [ \"$(stat -c %y \"$f\" 2>/dev/null)\" = \"$o\" ]; "
        "do sleep 0.01; i=$((i+1)); done; "
        # the dump line carries the node's own clock (seconds since boot), so a burst
        # of dumps a stalled connection delivers at once keeps its real spacing
        # (read once: the text compared is the text sent)
        "if [ $i -lt 40 ]; then sleep 0.01; d=$(cat \"$f\"); u=$(cut -d' ' -f1 /proc/uptime); "
        f"if [ -n \"$l\" ] && [ \"$d\" = \"$l\" ]; then {same}"
        f"else {new}printf '%s\\n' \"$d\"; echo '{END}'; fi; "
        f"else {lost}echo \"{ERROR} {NO_ANSWER} 0.4 s of the signal (no new $f)\"; fi; "
        "fi; "
        f"sleep {p} || exit 0; "
        "done"
    )


@dataclass
class QuietTicks:
    """The node's quiet-tick rule (``watch_command``, and the wrapper's copy), in
    Python: the simulated directors play it, and the tests hold the shell copies to
    it. ``tick`` takes one tick's dump text and the node's uptime and says what the
    node sends: ``("dump", held)`` (whole; ``held`` the uptime of the last tick held
    back since the last message, or None), ``("same", None)``, or ``None`` (nothing).

    The cadence is the gap between the last two changes, in ticks, and only a gap of
    at most ``quiet + 1`` ticks counts (after a longer one, a state change say, the
    next gap is learned first). Only a dump of one instance is ever held back: with
    two, one instance's changes would hide the other's late ticks (a deaf VI_6 behind
    a VI_4 that still changes), and the node cannot tell whose change it saw without
    reading the JSON. Nor one with an advert interval under 1 s: ``quiet`` ticks must
    end before a backup could miss two adverts (``policy.vrrp.quiet_ticks``), and a
    gap learned across a lost advert would let them run past that (found by a table
    of lost-advert cases at ``advert_int`` 0.4; now a test)."""

    quiet: int = QUIET_TICKS
    last: str | None = None
    since: int = 0  # unchanged ticks since the last change
    gap: int = 0  # ticks between the last two changes; 0: no cadence known
    held: float | None = None

    def tick(self, text: str, uptime: float) -> tuple[str, float | None] | None:
        if self.last is not None and text == self.last:
            self.since += 1
            if self.since < self.gap:
                self.held = uptime
                return None
            self.held = None
            return ("same", None)
        holdable = text.count(ONE_INSTANCE) < 2 and not any(f in text for f in FAST_ADVERTS)
        self.gap = (self.since + 1 if self.last is not None and self.since <= self.quiet
                    and holdable else 0)
        held, self.held, self.since, self.last = self.held, None, 0, text
        return ("dump", held)

    def lost(self) -> None:
        """No dump this tick (an error line was sent): the cadence is learned again."""
        self.gap, self.held = 0, None


def dump_uptime(line: str, mark: str = DUMP) -> float | None:
    """The node's uptime on a dump line (``@@kv 12345.67``, ``@@kv-same 12345.92``);
    None for a bare mark (an older wrapper) or anything that is not a plain, bounded
    number."""
    return dump_uptimes(line, mark)[0]


def dump_uptimes(line: str, mark: str = DUMP) -> tuple[float | None, float | None]:
    """The uptimes on a dump line: the dump's own, and the last tick held back before
    it (``@@kv 12345.67 12345.42``; None without one). A held uptime that is not
    before the dump's is no uptime."""
    parts = line[len(mark):].split()
    nums = [_number(x) for x in parts[:2]] if len(parts) <= 2 else [None]
    up = nums[0] if nums else None
    held = nums[1] if len(nums) == 2 else None
    if up is None or held is None or held >= up:
        held = None
    return up, held


def _number(text: str) -> float | None:
    if not text or len(text) > 20 or not text.replace(".", "", 1).isdigit():
        return None
    return float(text)


def is_dump_line(line: str) -> bool:
    return line == DUMP or line.startswith(DUMP + " ")


def is_same_line(line: str) -> bool:
    return line == SAME or line.startswith(SAME + " ")


class DumpError(ValueError):
    pass


class _Data(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    iname: str = Field(max_length=64)
    vrid: int = Field(ge=1, le=255)
    version: int = Field(ge=2, le=3)
    state: int = Field(ge=0, le=255)
    wantstate: int = Field(ge=0, le=255)
    base_priority: int = Field(ge=0, le=255)
    effective_priority: int = Field(ge=0, le=65535)
    adver_int: float = Field(gt=0, le=3600, allow_inf_nan=False)
    # Unix time: bounded, so a value near the year 10000 or Infinity can never make
    # serialising an observation raise (issue 29); 2^32 s is in the year 2106
    last_transition: float = Field(ge=0, le=2**32, allow_inf_nan=False)
    ifp_ifname: str = Field("", max_length=64)
    vips: list[str] = Field(default_factory=list, max_length=4096)


class _Stats(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    # keepalived's counters are 64-bit; bounded so JSON and the database take them
    advert_rcvd: int = Field(ge=0, lt=2**63)
    advert_sent: int = Field(ge=0, lt=2**63)
    pri_zero_rcvd: int = Field(0, ge=0, lt=2**63)
    pri_zero_sent: int = Field(0, ge=0, lt=2**63)


class _Entry(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    data: _Data
    stats: _Stats


_DUMP = TypeAdapter(list[_Entry])


@dataclass(frozen=True, slots=True)
class InstanceDump:
    """One instance of one dump, as keepalived wrote it (counters are cumulative)."""

    name: str
    vrid: int
    version: int
    state: str
    wantstate: str
    base_priority: int
    effective_priority: int
    advert_int: float
    interface: str
    vips: tuple[str, ...]
    last_transition: float
    advert_rcvd: int
    advert_sent: int
    pri_zero_rcvd: int
    pri_zero_sent: int


def _vip(entry: str) -> str:
    """"10.99.0.100/24 dev d0 scope global set" -> "10.99.0.100" """
    return entry.split()[0].split("/")[0] if entry.strip() else ""


def parse_dump(text: str) -> tuple[InstanceDump, ...]:
    if len(text) > MAX_DUMP_CHARS:
        raise DumpError(f"keepalived dump is {len(text)} characters, more than "
                        f"{MAX_DUMP_CHARS}")
    try:
        raw = json.loads(text)
        entries = _DUMP.validate_python(raw)
    except json.JSONDecodeError as exc:
        raise DumpError(f"keepalived dump is not JSON ({exc.msg})") from None
    except RecursionError:
        raise DumpError("keepalived dump is nested too deeply") from None
    except ValidationError as exc:
        e = exc.errors()[0]
        where = ".".join(str(p) for p in e.get("loc", ())) or "(top level)"
        raise DumpError(f"keepalived dump has the wrong shape at {where}: "
                        f"{e.get('msg')}") from None
    if len(entries) > MAX_INSTANCES:
        raise DumpError(f"{len(entries)} VRRP instances, more than {MAX_INSTANCES}")
    return tuple(
        InstanceDump(
            name=e.data.iname, vrid=e.data.vrid, version=e.data.version,
            state=STATES.get(e.data.state, f"STATE{e.data.state}"),
            wantstate=STATES.get(e.data.wantstate, f"STATE{e.data.wantstate}"),
            base_priority=e.data.base_priority,
            effective_priority=e.data.effective_priority, advert_int=e.data.adver_int,
            interface=e.data.ifp_ifname,
            vips=tuple(v for v in (_vip(x) for x in e.data.vips) if v),
            last_transition=e.data.last_transition,
            advert_rcvd=e.stats.advert_rcvd, advert_sent=e.stats.advert_sent,
            pri_zero_rcvd=e.stats.pri_zero_rcvd, pri_zero_sent=e.stats.pri_zero_sent,
        )
        for e in entries)
