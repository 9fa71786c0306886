"""Durations on the command line: one parser, a unit always (issue 30).

``90s``, ``30m``, ``2h``, ``1d`` and compounds in descending order (``1h30m``,
``2d12h``, ``1m30.5s``). A bare number is refused rather than read as seconds
(``--for 10`` meant 10 minutes to the operator who typed it more often than not), and
so is anything else, with a message that names the option and shows the forms.
"""

from __future__ import annotations

import re

UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_PART = re.compile(r"(\d+(?:\.\d+)?)(d|h|m|s)")
FORMS = "e.g. 90s, 30m, 2h, 1h30m, 1d"


def parse_duration(text: str, option: str = "--for") -> float:
    """Seconds in ``text``; ValueError names ``option`` and why."""
    raw = text.strip().lower()
    if raw.startswith("-"):
        raise ValueError(f"{option}: {text!r} is negative: a duration is positive ({FORMS})")
    if re.fullmatch(r"\d+(?:\.\d+)?", raw):
        raise ValueError(f"{option}: {text!r} has no unit: say {raw}s, {raw}m or {raw}h")
    pos, total, seen = 0, 0.0, ""
    for m in _PART.finditer(raw):
        if m.start() != pos:
            break
        unit = m.group(2)
        if unit in seen or (seen and "dhms".index(unit) < "dhms".index(seen[-1])):
            raise ValueError(f"{option}: {text!r}: each unit once, largest first ({FORMS})")
        seen += unit
        total += float(m.group(1)) * UNITS[unit]
        pos = m.end()
    if not raw or pos != len(raw):
        raise ValueError(f"{option}: {text!r} is not a duration ({FORMS})")
    if total <= 0:
        raise ValueError(f"{option}: {text!r} is zero: a duration is positive ({FORMS})")
    return total


def duration_arg(option: str):  # noqa: ANN201 (argparse's type= callable)
    """``parse_duration`` as an argparse ``type=``: a bad value is a usage error that
    names ``option``."""
    import argparse

    def parse(text: str) -> float:
        try:
            return parse_duration(text, option)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc).removeprefix(f"{option}: ")) from None

    return parse
