"""Bearer tokens: per node (POST /events for itself) and per operator (everything).

Tokens are compared in constant time against every configured token, so the
time taken says nothing about which token was close. Every refusal is logged.
"""

from __future__ import annotations

import base64
import hmac
import logging
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException, Request

from arbiter.config import Config

log = logging.getLogger("arbiter.auth")


@dataclass(frozen=True)
class Principal:
    name: str
    kind: str  # "operator" | "node"
    cluster: str | None = None
    node: str | None = None


class Authenticator:
    def __init__(self, config: Config):
        self._tokens: list[tuple[bytes, Principal]] = [
            (tok.encode(), Principal(name, "operator")) for name, tok in config.api.tokens.items()
        ]
        for c in config.clusters:
            for n in c.nodes:
                if n.token:
                    self._tokens.append(
                        (n.token.encode(), Principal(f"{c.name}/{n.name}", "node", c.name, n.name))
                    )
        self.protect_reads = config.api.protect_reads

    def identify(self, token: str) -> Principal | None:
        given = token.encode()
        found = None
        for tok, who in self._tokens:  # no early exit: constant time over the list
            if hmac.compare_digest(tok, given):
                found = who
        return found

    def _deny(self, request: Request, status: int, msg: str) -> HTTPException:
        client = request.client.host if request.client else "?"
        log.warning("auth: %d %s %s from %s: %s", status, request.method, request.url.path,
                    client, msg)
        # Basic too: a browser asks for it on the status page (user: any, password: token)
        headers = {"WWW-Authenticate": 'Bearer, Basic realm="keepalived-arbiter"'} \
            if status == 401 else None
        return HTTPException(status, msg, headers=headers)

    def principal(self, request: Request) -> Principal:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if not header:
            raise self._deny(request, 401, "missing bearer token (Authorization: Bearer ...)")
        if scheme.lower() == "basic":
            token = _basic_password(token)
        elif scheme.lower() != "bearer":
            token = ""
        if not token.strip():
            raise self._deny(request, 401, "malformed Authorization header; expected Bearer "
                             "(or Basic with the token as the password)")
        if not self._tokens:
            raise self._deny(request, 403, "no API tokens are configured: writes are disabled")
        who = self.identify(token.strip())
        if who is None:
            raise self._deny(request, 401, "invalid bearer token")
        return who

    def require_operator(self, request: Request) -> Principal:
        who = self.principal(request)
        if who.kind != "operator":
            raise self._deny(request, 403, f"{who.name} is a node token; operators only")
        return who

    def require_node(self, request: Request, cluster: str, node: str) -> Principal:
        who = self.principal(request)
        if who.kind == "node" and (who.cluster, who.node) != (cluster, node):
            raise self._deny(request, 403,
                             f"token of {who.name} cannot report for {cluster}/{node}")
        return who

    def check_read(self, request: Request) -> None:
        if self.protect_reads:
            self.principal(request)


class Auth:
    """The Authenticator of the config in force: rebuilt when a reload swaps the config
    (new or rotated tokens count at once; an identity check per request)."""

    def __init__(self, arbiter: Any):
        self._arbiter = arbiter
        self._for: Config | None = None
        self._auth: Authenticator | None = None

    def _current(self) -> Authenticator:
        cfg = self._arbiter.config
        if cfg is not self._for or self._auth is None:
            self._auth, self._for = Authenticator(cfg), cfg
        return self._auth

    def principal(self, request: Request) -> Principal:
        return self._current().principal(request)

    def require_operator(self, request: Request) -> Principal:
        return self._current().require_operator(request)

    def require_node(self, request: Request, cluster: str, node: str) -> Principal:
        return self._current().require_node(request, cluster, node)

    def check_read(self, request: Request) -> None:
        self._current().check_read(request)


def _basic_password(value: str) -> str:
    """The password of a Basic credential (the token), or "" if it is malformed."""
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return ""
    return decoded.partition(":")[2]
