"""The running arbiter's HTTP API, as the CLI reaches it: the configured listen
address (0.0.0.0 and :: asked on loopback), TLS if configured, an operator token
from the config, a bounded timeout, and one error type that says what went wrong."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from typing import Any

from arbiter.config import Config
from arbiter.config.envfile import DEFAULT as DEFAULT_ENV
from arbiter.config.loading import unset_name


class ApiError(Exception):
    """The arbiter could not be asked, or answered with an error (``status``: HTTP code,
    None when there was no answer)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


def operator_token(cfg: Config, name: str | None = None) -> str:
    """The token of operator ``name``; without a name, the only one configured. A write
    needs one: without it the answer says how to get one (issue 30)."""
    tokens = cfg.api.tokens
    if name is not None:
        if name not in tokens:
            raise ApiError(f"--as {name}: no such operator in [api] tokens "
                           f"(have: {', '.join(sorted(tokens)) or 'none'})")
        return usable(name, tokens[name])
    if len(tokens) > 1:
        raise ApiError(f"several operators in [api] tokens ({', '.join(sorted(tokens))}): "
                       "choose one with --as NAME")
    if not tokens:
        raise ApiError(
            "this needs an operator token, and [api] tokens has none: add one, for "
            'example ops = "${ARBITER_OPS_TOKEN}" with ARBITER_OPS_TOKEN=... in '
            "/etc/arbiter/arbiter.env (`openssl rand -hex 24` makes one), then "
            "`systemctl reload keepalived-arbiter`")
    ((who, tok),) = tokens.items()
    return usable(who, tok)


def read_token(cfg: Config) -> str | None:
    """What a read sends: nothing unless ``protect_reads`` (any operator may read)."""
    if not cfg.api.protect_reads:
        return None
    return operator_token(cfg, next(iter(cfg.api.tokens), None) if len(cfg.api.tokens) > 1
                          else None)


def usable(who: str, token: str) -> str:
    """``token``, unless it comes from a variable this environment does not have."""
    if (var := unset_name(token)) is not None:
        raise ApiError(
            f"[api] tokens.{who} comes from ${{{var}}}, which is not set here: run as a "
            f"user who can read {DEFAULT_ENV} (the CLI reads it), pass --env-file FILE, "
            f"or export {var}")
    return token


def call(cfg: Config, method: str, path: str, body: dict[str, Any] | None = None,
         token: str | None = None, timeout: float = 5.0) -> dict[str, Any]:
    return call_url(cfg.api_url, method, path, body, token, timeout)


def call_url(base: str, method: str, path: str, body: dict[str, Any] | None = None,
             token: str | None = None, timeout: float = 5.0) -> dict[str, Any]:
    url = base + path
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    # a self-signed certificate of our own arbiter: verified when it is in the trust store
    ctx = ssl.create_default_context() if url.startswith("https") else None
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ctx) as r:  # noqa: S310
            return json.load(r)
    except urllib.error.HTTPError as exc:
        try:
            detail = json.load(exc).get("detail", exc.reason)
        except ValueError:
            detail = exc.reason
        raise ApiError(f"{method} {path}: {exc.code} {detail}", exc.code) from None
    except (OSError, ValueError) as exc:
        raise ApiError(f"cannot reach the arbiter at {url}: {exc}") from None
