"""`[arbiter] log_format = "json"`: one JSON object per line, with the fields a log
pipeline filters on; text stays the default. Run in a subprocess: the real handler
on the real stderr."""

from __future__ import annotations

import json
import subprocess
import sys

CODE = """
import logging
from arbiter.cli.logs import setup
setup("info", "{fmt}")
log = logging.getLogger("arbiter.fencer")
log.info("[web] incident #7 fence_command on lb2: ok (kill -TERM 1) 6ms")
logging.getLogger("arbiter.ha").warning("[ha] shard default: leading under term 3")
logging.getLogger("arbiter.track").info("plain", extra={{"cluster": "api", "node": "lb9"}})
logging.getLogger("asyncssh").info("quiet")
logging.getLogger("arbiter.ledger").warning("[web] split brain on 192.168.77.100 (x)")
logging.getLogger("arbiter.ledger").warning("[web] split brain on fd00:77::100 (x)")
"""


def run(fmt: str) -> list[str]:
    p = subprocess.run([sys.executable, "-c", CODE.format(fmt=fmt)], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    return p.stderr.splitlines()


def test_json_logs_carry_the_fields_a_pipeline_filters_on() -> None:
    lines = [json.loads(line) for line in run("json")]
    assert len(lines) == 5  # asyncssh's INFO is kept quiet
    fence, lease, explicit, on_v4, on_v6 = lines
    assert {"ts", "level", "logger", "msg"} <= set(fence)
    assert fence["ts"].endswith("+00:00") and fence["level"] == "INFO"
    assert (fence["cluster"], fence["node"], fence["incident"]) == ("web", "lb2", 7)
    assert lease["term"] == 3 and "cluster" not in lease  # "[ha]" is no cluster
    assert (explicit["cluster"], explicit["node"]) == ("api", "lb9")
    assert "node" not in on_v4 and "node" not in on_v6  # a VIP is no node


def test_text_stays_the_default_line_format() -> None:
    (first, *_) = run("text")
    assert " INFO    arbiter.fencer: [web] incident #7 fence_command on lb2" in first
    assert not first.startswith("{")


WARNED = """
import warnings
warnings.warn("import-time warning, as asyncssh's CryptographyDeprecationWarning",
              UserWarning)  # before the command reads its config
from arbiter.cli.logs import setup
import arbiter.cli  # the command's package, as the entry point imports it
warnings.warn("another, before logging is set up", DeprecationWarning, stacklevel=1)
setup("info", "json")
warnings.warn("and one after", RuntimeWarning)
"""


def test_under_json_every_stderr_line_is_json_warnings_included() -> None:
    """Issue 30: Python's own warnings went to stderr as plain text. The import-time
    one is raised here before arbiter.cli is imported, as an unlocked install's
    cryptography raises it while the entry point imports asyncssh."""
    code = "import arbiter.cli\n" + WARNED
    p = subprocess.run([sys.executable, "-W", "always", "-c", code], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    lines = [json.loads(line) for line in p.stderr.splitlines()]  # every line parses
    msgs = " ".join(r["msg"] for r in lines)
    assert len(lines) == 3, lines
    assert "import-time warning" in msgs and "and one after" in msgs
    assert all(r["logger"] == "py.warnings" and r["level"] == "WARNING" for r in lines)
