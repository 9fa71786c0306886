"""What OpenAPI says about auth: the bearer scheme (the Authorize button in /docs),
and reads that take a token but need it only with ``protect_reads``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

# Declares the bearer scheme in OpenAPI (the Authorize button in /docs); the check
# itself is the Authenticator's, so auto_error is off.
bearer = HTTPBearer(auto_error=False, description="an operator's token from [api] tokens, "
                    "or a node's token (POST /events for itself)")
Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def reads_optionally_authed(app: FastAPI, protect_reads: bool,
                            max_pause: Callable[[], float]) -> None:
    """In OpenAPI, reads take the bearer token but need it only with protect_reads
    (an empty requirement, ``{}``, means "no auth is fine too"); and a pause's
    ``seconds`` has the maximum the running config allows (``max_pause``, which a
    reload may change), so a client sees the limit before it is refused."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        schema = generate()
        for ops in schema.get("paths", {}).values():
            for method, op in ops.items():
                sec = op.get("security")
                if method == "get" and sec and not protect_reads and {} not in sec:
                    op["security"] = [{}, *sec]
        body = (schema.get("paths", {}).get("/pause", {}).get("post", {})
                .get("requestBody", {}).get("content", {}).get("application/json", {})
                .get("schema", {}))
        if "seconds" in body.get("properties", {}):
            body["properties"]["seconds"]["maximum"] = max_pause()
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("keepalived-arbiter")
    except PackageNotFoundError:
        return "unknown"
