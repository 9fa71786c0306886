"""The ``arbiter`` command.

Python's warnings go through logging (issue 30), so under ``log_format = "json"``
every line on stderr is JSON, warnings included: asyncssh's import-time
``CryptographyDeprecationWarning`` (an install from pyproject.toml rather than the
lock) comes before the command has read its config. Until ``logs.setup`` runs they
wait in a buffer, which it sends through the configured handler; a command that
never sets up logging prints them as plain lines at exit, as Python would have.
"""

import atexit
import logging
import logging.handlers
import sys

logging.captureWarnings(True)
EARLY_WARNINGS = logging.handlers.MemoryHandler(capacity=1000,
                                                flushLevel=logging.CRITICAL + 1)
_warnings = logging.getLogger("py.warnings")
_warnings.addHandler(EARLY_WARNINGS)
_warnings.propagate = False


@atexit.register
def _unsent() -> None:
    if EARLY_WARNINGS in _warnings.handlers and EARLY_WARNINGS.buffer:
        EARLY_WARNINGS.setTarget(logging.StreamHandler(sys.stderr))
        EARLY_WARNINGS.flush()
