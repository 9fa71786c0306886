"""The service's environment file, as the CLI reads it (issue 30).

The unit reads ``/etc/arbiter/arbiter.env`` (``EnvironmentFile=``) for the secrets
that ``arbiter.toml`` names as ``${NAME}``: the database URL, the operators' tokens.
An operator's shell does not have them, so every CLI call failed with "environment
variable ARBITER_OPS_TOKEN is not set" unless the file was sourced by hand. The CLI
now reads that file itself: ``--env-file FILE``, or by default the packaged path when
it exists and this user can read it. A variable already set in the environment wins.

The syntax is systemd's (``loading.read_env_file``): ``NAME=VALUE`` lines, ``#`` and
``;`` comments, blank lines, values optionally in single or double quotes.
"""

from __future__ import annotations

import os

from arbiter.config.base import ConfigError
from arbiter.config.loading import read_env_file

DEFAULT = "/etc/arbiter/arbiter.env"


class EnvFileError(ValueError):
    pass


def parse(path: str) -> dict[str, str]:
    """The file's variables (``loading.read_env_file``: systemd's syntax)."""
    try:
        return read_env_file(path)
    except ConfigError as exc:
        raise EnvFileError(f"environment file {path}: " + "; ".join(exc.problems)) from None


def reread(environ: dict[str, str] | None = None) -> str | None:
    """A reload reads the unit's environment file again (its path in
    ``ARBITER_ENV_FILE``, which the unit sets), overriding what the process started
    with: a rotated token in the file is then reloadable. Returns the file, or None."""
    env = os.environ if environ is None else environ
    path = env.get("ARBITER_ENV_FILE")
    if not path:
        return None
    env.update(parse(path))
    return path


def apply(path: str | None, environ: dict[str, str] | None = None) -> str | None:
    """Read ``path`` (or the default, when it is there and readable) into the
    environment, without overriding what is set. Returns the file read, or None.
    An explicit ``--env-file`` that cannot be read is an error naming it."""
    env = os.environ if environ is None else environ
    if path is None:
        if not os.access(DEFAULT, os.R_OK):
            return None
        path = DEFAULT
    for k, v in parse(path).items():
        env.setdefault(k, v)
    return path
