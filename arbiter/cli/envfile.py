"""The service's environment file, as the CLI reads it (issue 30).

The unit reads ``/etc/arbiter/arbiter.env`` (``EnvironmentFile=``) for the secrets
that ``arbiter.toml`` names as ``${NAME}``: the database URL, the operators' tokens.
An operator's shell does not have them, so every CLI call failed with "environment
variable ARBITER_OPS_TOKEN is not set" unless the file was sourced by hand. The CLI
now reads that file itself: ``--env-file FILE``, or by default the packaged path when
it exists and this user can read it. A variable already set in the environment wins.

The syntax is systemd's: ``NAME=VALUE`` lines, ``#`` and ``;`` comments, blank lines,
values optionally in single or double quotes.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

DEFAULT = "/etc/arbiter/arbiter.env"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class EnvFileError(ValueError):
    pass


def parse(text: str, source: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), start=1):
        s = line.strip()
        if not s or s[0] in "#;":
            continue
        name, eq, value = s.partition("=")
        name = name.strip().removeprefix("export ").strip()
        if not eq or not _NAME.fullmatch(name):
            raise EnvFileError(f"{source}:{n}: not NAME=VALUE")
        value = value.strip()
        if value and value[0] in "\"'":
            try:
                (value,) = shlex.split(value)
            except ValueError:
                raise EnvFileError(f"{source}:{n}: {name}: unbalanced quotes") from None
        out[name] = value
    return out


def apply(path: str | None, environ: dict[str, str] | None = None) -> str | None:
    """Read ``path`` (or the default, when it is there and readable) into the
    environment, without overriding what is set. Returns the file read, or None.
    An explicit ``--env-file`` that cannot be read is an error naming it."""
    env = os.environ if environ is None else environ
    if path is None:
        if not os.access(DEFAULT, os.R_OK):
            return None
        path = DEFAULT
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise EnvFileError(f"--env-file: cannot read {path}: {exc.strerror}") from None
    for k, v in parse(text, path).items():
        env.setdefault(k, v)
    return path
