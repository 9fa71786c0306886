"""The command line before argparse reads it (issue 30): ``--env-file FILE`` taken from
anywhere on it (every command takes it), and ``--for -5m`` joined so that the duration
parser, not argparse, says what is wrong with it."""

from __future__ import annotations

import re


def prepare(argv: list[str]) -> tuple[list[str], str | None]:
    """The arguments for argparse, and the ``--env-file`` given (None: the default)."""
    return env_file_option(flag_values(argv, "--for"))


def env_file_option(argv: list[str]) -> tuple[list[str], str | None]:
    """``--env-file FILE`` (or ``--env-file=FILE``) anywhere on the line: the unit's
    EnvironmentFile; by default /etc/arbiter/arbiter.env when it is there and readable."""
    out, path, i = [], None, 0
    while i < len(argv):
        a = argv[i]
        if a == "--env-file" and i + 1 < len(argv):
            path, i = argv[i + 1], i + 2
            continue
        if a.startswith("--env-file="):
            path = a.split("=", 1)[1]
        else:
            out.append(a)
        i += 1
    return out, path


def flag_values(argv: list[str], flag: str) -> list[str]:
    """``--for -5m`` as ``--for=-5m``: argparse would take ``-5m`` for an option and
    answer "expected one argument"; joined, the parser above says what is wrong."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] == flag and i + 1 < len(argv) and re.match(r"-\d", argv[i + 1]):
            out.append(f"{flag}={argv[i + 1]}")
            i += 2
            continue
        out.append(argv[i])
        i += 1
    return out
