"""How the `arbiter` command logs: plain text lines on stderr (journald-friendly, the
default), or one JSON object per line (``[arbiter] log_format = "json"``) for Loki,
Elasticsearch or journald's JSON fields.

A JSON record carries ``ts`` (ISO 8601, UTC), ``level``, ``logger``, ``msg``, and
the structured fields the message is about: ``cluster``, ``node``, ``incident`` and
``term``. Call sites may pass them (``extra=``); otherwise they are read from the
message's own conventions ("[web] ...", "incident #7", "term 3"), so every existing
log line gets them without a second wording.
"""

from __future__ import annotations

import logging
import logging.handlers
import re
import sys
from datetime import UTC, datetime

from pythonjsonlogger.json import JsonFormatter

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
QUIET = ("asyncssh", "apscheduler", "alembic")  # their INFO is noise for an operator

NOT_CLUSTERS = frozenset({"ha", "arbiter"})  # "[ha] ...", "[arbiter] ..." are not clusters
_CLUSTER = re.compile(r"^\[([A-Za-z0-9][A-Za-z0-9_.-]{0,62})\]")
_INCIDENT = re.compile(r"\bincident #?(\d+)\b")
_TERM = re.compile(r"\bterm (\d+)\b")
# "on lb2: ok", "from lb1,", "to lb3 (": a name, never an address ("split brain on
# 192.168.77.100 (", "on fd00::100 (" name a VIP)
_NODE = re.compile(r"\b(?:on|from|to) (?!\d+\.\d+\.\d+\.\d+\b)"
                   r"([A-Za-z0-9][A-Za-z0-9_.-]{0,62})(?:: |[,;)]| \(|$)")


class Fields(logging.Filter):
    """Fill cluster, node, incident and term from the message where the call site did
    not pass them; a record without them gets none (never null noise)."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        for name, pattern in (("cluster", _CLUSTER), ("incident", _INCIDENT),
                              ("term", _TERM)):
            if not hasattr(record, name) and (m := pattern.search(msg)):
                value: object = m.group(1)
                if name == "cluster" and value in NOT_CLUSTERS:
                    continue
                setattr(record, name, int(value) if name != "cluster" else value)
        if not hasattr(record, "node") and hasattr(record, "cluster") and \
                (m := _NODE.search(msg)):
            record.node = m.group(1)
        return True


class Json(JsonFormatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


def setup(level: str, fmt: str = "text") -> None:
    """Configure the root logger once: ``fmt`` is "text" or "json"."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(Json(
            "{asctime}{levelname}{name}{message}", style="{",
            rename_fields={"asctime": "ts", "levelname": "level", "name": "logger",
                           "message": "msg"}))
        handler.addFilter(Fields())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    # warnings raised before this (at import) wait in arbiter.cli's buffer: send them
    # through this handler, then let later ones reach it like any record
    logging.captureWarnings(True)
    warned = logging.getLogger("py.warnings")
    for h in list(warned.handlers):
        if isinstance(h, logging.handlers.MemoryHandler):
            h.setTarget(handler)
            h.flush()
            warned.removeHandler(h)
    warned.propagate = True
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
