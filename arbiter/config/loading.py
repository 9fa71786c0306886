"""Loading a config file: TOML, ``${ENV}`` references, field paths in errors, and
paths relative to the file."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from arbiter.config.base import ConfigError
from arbiter.config.schema import Config

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


# What an unset ${NAME} becomes for a command that may do without it (the CLI's reads):
# a value no arbiter accepts, which the CLI recognises and explains if it needs it
UNSET = "-unset-in-this-environment"


def unset_name(value: str | None) -> str | None:
    """The variable an unset placeholder stands for, or None."""
    if value and value.endswith(UNSET):
        return value.removeprefix("${").removesuffix("}" + UNSET)
    return None


def _expand_env(value: Any, path: str, problems: list[str], lenient: bool = False) -> Any:
    """Replace ``${NAME}`` in strings by environment variables (secrets stay out of files).
    ``lenient``: an unset one becomes a placeholder (``UNSET``) instead of an error."""
    if isinstance(value, dict):
        return {k: _expand_env(v, f"{path}.{k}" if path else k, problems, lenient)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, f"{path}[{i}]", problems, lenient) for i, v in enumerate(value)]
    if isinstance(value, str):
        def sub(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in os.environ:
                if lenient:
                    return "${" + name + "}" + UNSET
                problems.append(f"{path}: environment variable {name} is not set")
                return ""
            return os.environ[name]

        return _ENV_REF.sub(sub, value)
    return value


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def from_dict(data: dict[str, Any], source: str | None = None, check_files: bool = True,
              lenient_env: bool = False) -> Config:
    problems: list[str] = []
    data = _expand_env(data, "", problems, lenient_env)
    if problems:
        raise ConfigError(problems, source)
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            [f"{_loc(e['loc'])}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors()],
            source,
        ) from None
    if check_files:
        problems.extend(_file_problems(cfg, Path(source).parent if source else Path.cwd()))
        if problems:
            raise ConfigError(problems, source)
    return cfg


def _file_problems(cfg: Config, base: Path) -> list[str]:
    out = []
    for i, key in enumerate(cfg.ssh.client_keys):
        if not os.access(base / key, os.R_OK):
            out.append(f"ssh.client_keys[{i}]: cannot read {key} (as this user; "
                       "`arbiter keys init -c CONFIG` makes it, readable by the service "
                       "user)")
    for key in ("tls_certfile", "tls_keyfile"):
        f = getattr(cfg.api, key)
        if f and not os.access(base / f, os.R_OK):
            out.append(f"api.{key}: cannot read {f}")
    if not os.access(base / cfg.ssh.known_hosts, os.R_OK):
        out.append(
            f"ssh.known_hosts: cannot read {cfg.ssh.known_hosts} (host keys are checked "
            "strictly; pin them with `arbiter keys init -c CONFIG`, which shows each "
            "fingerprint first)"
        )
    return out


def load(path: str | Path, check_files: bool = True, lenient_env: bool = False) -> Config:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError([f"cannot read file: {exc.strerror}"], str(path)) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError([f"not valid TOML: {exc}"], str(path)) from None
    cfg = from_dict(data, str(path), check_files=check_files, lenient_env=lenient_env)
    return _resolve_paths(cfg, path.parent)


def _resolve_paths(cfg: Config, base: Path) -> Config:
    """Relative key paths are relative to the config file, not the cwd."""
    ssh = cfg.ssh.model_copy(
        update={
            "client_keys": [str((base / k).resolve()) for k in cfg.ssh.client_keys],
            "known_hosts": str((base / cfg.ssh.known_hosts).resolve()),
        }
    )
    db = cfg.arbiter.database
    if db.startswith("sqlite:///") and not db.startswith("sqlite:////"):
        rel = db.removeprefix("sqlite:///")
        if rel and rel != ":memory:":
            db = "sqlite:///" + str((base / rel).resolve())
    arb = cfg.arbiter.model_copy(update={"database": db})
    api = cfg.api.model_copy(update={
        k: str((base / f).resolve()) for k in ("tls_certfile", "tls_keyfile")
        if (f := getattr(cfg.api, k))})
    return cfg.model_copy(update={"ssh": ssh, "arbiter": arb, "api": api})


def read_env_file(path: str | Path) -> dict[str, str]:
    """``KEY=VALUE`` lines as systemd's EnvironmentFile= reads them (comments, blank
    lines, optional quotes); a line that is none of those is an error naming it."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError([f"cannot read file: {exc.strerror}"], str(p)) from None
    out: dict[str, str] = {}
    problems = []
    for n, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or s.startswith(("#", ";")):
            continue
        key, eq, value = s.removeprefix("export ").partition("=")
        key, value = key.strip(), value.strip()
        if not eq or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            problems.append(f"line {n}: expected NAME=VALUE")
            continue
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        out[key] = value
    if problems:
        raise ConfigError(problems, str(p))
    return out
