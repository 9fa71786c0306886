"""The HTTP API. ``create_app`` builds everything from an Arbiter; nothing at import time.

Reads come from the Arbiter's frozen ``View`` or from the store through a ``Reader``
(worker threads, each answer kept until the store changes), so a heavy page never
runs on the event loop that answers the gates' /verdict. Writes are
intents: an operator's release and a node's event are queued for the next round.
Errors become answers in one place, ``error_response``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from arbiter.api.actions import actions_router
from arbiter.api.auth import Auth
from arbiter.api.deps import ArbiterDep, IncidentId, read_access
from arbiter.api.openapi import bearer, reads_optionally_authed, version
from arbiter.api.reader import Reader
from arbiter.api.schema import (
    READ_ERRORS,
    STORE_ERRORS,
    VERDICT_PARAMS,
    VERDICT_RESPONSES,
    error_doc,
)
from arbiter.api.writes import RateLimit
from arbiter.ha.lease import NotLeader
from arbiter.model import IncidentKind, IncidentState
from arbiter.round.outputs import status as views
from arbiter.round.outputs.view import View
from arbiter.round.service import Arbiter
from arbiter.store.engine import StoreError
from arbiter.store.queries import MAX_ID, MAX_PAGE
from arbiter.web.page import docs_router, page_router

log = logging.getLogger("arbiter.api")


router = APIRouter(dependencies=[Depends(read_access)])
verdict_router = APIRouter()  # /verdict checks read access itself (it has a fast path)
open_router = APIRouter()  # health probes stay open for load balancers and systemd


def _now() -> datetime:
    return datetime.now(UTC)


def _wants_text(request: Request, fmt: str | None) -> bool:
    if fmt is not None:
        return fmt == "text"
    accept = request.headers.get("accept", "")
    return "text/plain" in accept and "application/json" not in accept


def verdict_answer(request: Request) -> Response:
    """GET /verdict, the one implementation: every parameter check, error and answer
    lives here. The gate calls it every second from every node, so it checks its
    parameters by hand (pydantic per request cost more than the rest) and keeps the
    answers of the current View in a cache. Raises HTTPException for a 4xx."""
    request.app.state.auth.check_read(request)
    arb: Arbiter = request.app.state.arbiter
    view = arb.view
    cache: VerdictCache = request.app.state.verdict_cache
    key = (request.scope["query_string"], request.headers.get("accept"))
    now = _now()
    fresh = view.staleness(now) is None
    if fresh and (hit := cache.get(key, view)) is not None:
        response, asked = hit
        arb.gates.record(*asked)
        arb.metrics.verdicts.labels(asked[2]).inc()
        return response
    q = request.query_params
    problems = [f"{n}: Field required" for n in ("cluster", "node") if not q.get(n)]
    problems += [f"{n}: at most 64 characters" for n in ("cluster", "node", "vip")
                 if len(q.get(n) or "") > 64]
    fmt = q.get("format")
    if fmt not in (None, "json", "text"):
        problems.append("format: must be 'json' or 'text'")
    if problems:
        raise HTTPException(422, "; ".join(problems))
    cluster, node, vip = q["cluster"], q["node"], q.get("vip")
    cfg = view.config.cluster(cluster)
    if cfg is None:
        raise HTTPException(404, f"unknown cluster {cluster!r}")
    if cfg.node(node) is None:
        raise HTTPException(404, f"unknown node {node!r} in cluster {cluster!r}")
    if vip is not None:
        try:
            vip = str(ipaddress.ip_address(vip))
        except ValueError:
            raise HTTPException(422, f"vip: {vip!r} is not an IP address") from None
        if vip not in cfg.vips:
            raise HTTPException(404, f"vip {vip} is not a VIP of cluster {cluster!r}")
    body = views.verdict(view, cfg, node, vip, now)
    # text: the verdict, and with [ha] the term after it (arbiter-gate keeps the highest)
    text = body["verdict"] + (f" {body['term']}" if "term" in body else "")
    response: Response = (PlainTextResponse(text + "\n") if _wants_text(request, fmt)
                          else JSONResponse(body))
    asked = (cluster, node, body["verdict"], vip)
    arb.gates.record(*asked)  # the gate is wired: /status shows when it last asked
    arb.metrics.verdicts.labels(body["verdict"]).inc()
    if fresh:
        cache.put(key, view, (response, asked))
    return response


@verdict_router.get("/verdict", summary="May this node claim MASTER?",
                    openapi_extra={"parameters": VERDICT_PARAMS}, responses=VERDICT_RESPONSES,
                    dependencies=[Depends(bearer)])
async def get_verdict(request: Request) -> Response:
    # Through the app (tests, `create_app` users); `arbiter serve` reaches the same
    # verdict_answer through with_fast_verdict, past FastAPI's per-request layers.
    return verdict_answer(request)


class VerdictCache:
    """The answers of the current View, by (query string, Accept header). Every node's
    gate asks every second; between two rounds an answer only changes when the
    observations go stale, and that is checked on every request before the cache.
    A new View retires every entry. Only successful answers are kept."""

    MAX = 4096  # distinct queries; a flood of odd query strings only clears it

    def __init__(self) -> None:
        self._d: dict[tuple, tuple[View, tuple[Response, tuple]]] = {}

    def get(self, key: tuple, view: View) -> tuple[Response, tuple] | None:
        hit = self._d.get(key)
        if hit is None or hit[0] is not view:
            return None
        return hit[1]

    def put(self, key: tuple, view: View, entry: tuple[Response, tuple]) -> None:
        """``entry``: the response, and what to note in the GateLog when it is sent."""
        if len(self._d) >= self.MAX:
            self._d.clear()
        self._d[key] = (view, entry)


@router.get("/status", summary="Live state of every cluster and of the arbiter itself",
            responses=READ_ERRORS)
async def get_status(arb: ArbiterDep) -> Response:
    # built off the event loop: at 1000 nodes it is a large body, and the loop
    # answers the gates' /verdict
    view = arb.view
    gates = arb.gates  # read on the loop, which is its only writer
    wiring = gates.wiring(view.config)
    warnings = gates.warnings(view.config, wiring)
    return await run_in_threadpool(
        lambda: JSONResponse(views.status(view, _now(), wiring, warnings)))


@router.get("/metrics", summary="Prometheus metrics (the text exposition format)",
            response_class=PlainTextResponse, responses=READ_ERRORS)
async def get_metrics(arb: ArbiterDep) -> Response:
    # built off the event loop, as /status: one series per node and probe
    body = await run_in_threadpool(generate_latest, arb.metrics.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


@router.get("/incidents", summary="Incidents, newest first",
            responses={**READ_ERRORS, **STORE_ERRORS, 404: error_doc("unknown cluster")})
async def list_incidents(
    request: Request,
    arb: ArbiterDep,
    cluster: Annotated[str | None, Query(max_length=64)] = None,
    state: Annotated[IncidentState | None, Query()] = None,
    kind: Annotated[IncidentKind | None, Query()] = None,
    since: Annotated[str | None, Query(
        max_length=64, description="ISO 8601; naive means UTC",
        json_schema_extra={"format": "date-time"})] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: Annotated[int | None, Query(ge=1, le=MAX_ID, description=(
        "the next_cursor of the previous page: incidents older than that id"))] = None,
) -> Response:
    if cluster is not None and arb.view.config.cluster(cluster) is None:
        raise HTTPException(404, f"unknown cluster {cluster!r}")
    reader: Reader = request.app.state.reader
    body = await reader.incidents(
        cluster=cluster, state=state.value if state else None,
        kind=kind.value if kind else None, since=_since(since), limit=limit, cursor=cursor,
    )
    return Response(body, media_type="application/json")


def _since(value: str | None) -> datetime | None:
    """An ISO 8601 time as UTC; naive means UTC. Anything else, a timestamp number
    included, or a time that has no UTC equivalent, is the client's error."""
    if value is None:
        return None
    try:
        t = datetime.fromisoformat(value)
        return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
    except (ValueError, OverflowError):
        raise HTTPException(422, f"since: {value!r} is not an ISO 8601 time with a UTC "
                                 "equivalent, e.g. 2026-01-31T12:00:00Z") from None




@router.get("/incidents/{incident_id}", summary="One incident with fence attempts and evidence",
            responses={**READ_ERRORS, **STORE_ERRORS, 404: error_doc("no such incident")})
async def get_incident(request: Request, incident_id: IncidentId) -> Response:
    body = await request.app.state.reader.incident(incident_id)
    if body is None:
        raise HTTPException(404, f"no incident {incident_id}")
    return Response(body, media_type="application/json")


@open_router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@open_router.get("/readyz", summary="Database takes writes, and rounds are running and fresh",
                 responses={503: {"description": "not ready, with the problems"}})
def readyz(arb: ArbiterDep) -> JSONResponse:
    problems = []
    try:
        arb.repo.check_write(arb.repo.arbiter or "arbiter", _now())  # a write, not a read
    except StoreError as exc:
        # open to anyone: no host, port or path here; the reason is in /status and the log
        log.warning("readyz: database: %s", exc)
        problems.append("database: cannot write (the reason is in /status and the log)")
    stale = arb.view.staleness(_now())
    if stale:
        problems.append(f"rounds: {stale}")
    if problems:
        return JSONResponse({"status": "not ready", "problems": problems}, status_code=503)
    return JSONResponse({"status": "ready"})


def error_response(exc: Exception) -> Response:
    """The one place an exception becomes an HTTP answer, for the app's handlers and
    for /verdict's fast path alike."""
    if isinstance(exc, HTTPException):
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code,
                            headers=exc.headers)
    if isinstance(exc, StoreError):
        return JSONResponse({"detail": f"database unavailable: {exc}"}, status_code=503)
    if isinstance(exc, NotLeader):
        return JSONResponse({"detail": f"this arbiter cannot record that: {exc}; ask the "
                             "leader (GET /status, ha.shards)"}, status_code=409)
    log.error("unhandled %s", type(exc).__name__, exc_info=exc)
    return PlainTextResponse("Internal Server Error", status_code=500)


async def _store_error_handler(_request: Request, exc: Exception) -> Response:
    return error_response(exc)


def _validation_handler(_request: Request, exc: Exception) -> JSONResponse:
    """422 naming each bad field. The input itself is never echoed back: it may be
    large, binary (a form body is bytes), or a secret sent to the wrong place."""
    assert isinstance(exc, RequestValidationError)
    errors = []
    for e in exc.errors():
        loc = [str(p) for p in e.get("loc", ())]
        errors.append({"loc": loc, "msg": str(e.get("msg")), "type": str(e.get("type"))})
    msgs = [".".join(p for p in e["loc"] if p not in ("query", "path", "body")) + f": {e['msg']}"
            for e in errors]
    return JSONResponse({"detail": "; ".join(msgs), "errors": errors}, status_code=422)


def create_app(arbiter: Arbiter, run_loop: bool = False, reader: Reader | None = None,
               config_path: str | None = None) -> FastAPI:
    """Build the API around an Arbiter. With run_loop, the app's lifespan runs the rounds.
    ``reader`` runs the heavy store reads (default: worker threads of this process).
    ``config_path``: the file POST /reload reads again (None: reload is refused)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stop = asyncio.Event()
        task = None
        if run_loop:
            task = asyncio.create_task(arbiter.run_forever(stop), name="arbiter-loop")
        try:
            yield
        finally:
            stop.set()
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(task, 30)
            app.state.reader.close()

    app = FastAPI(
        title="keepalived-arbiter",
        version=version(),
        description="Split-brain detection and arbitration for keepalived/VRRP clusters. "
        "Reads are open unless `[api] protect_reads` is on; writes take a bearer token "
        "(Authorize). The status page is at `/`.",
        lifespan=lifespan,
        docs_url=None, redoc_url=None,  # served from local files (arbiter.web.page)
    )
    app.state.arbiter = arbiter
    app.state.auth = Auth(arbiter)
    app.state.config_path = config_path
    app.state.verdict_cache = VerdictCache()
    app.state.event_limit = RateLimit()
    app.state.reader = reader or Reader(arbiter.repo, lambda: arbiter.ledger.generation)
    app.add_exception_handler(RequestValidationError, _validation_handler)
    app.add_exception_handler(StoreError, _store_error_handler)
    app.add_exception_handler(NotLeader, _store_error_handler)
    app.include_router(verdict_router)
    app.include_router(router)
    app.include_router(actions_router)
    app.include_router(open_router)
    app.include_router(page_router, dependencies=[Depends(read_access)])
    app.include_router(docs_router)
    reads_optionally_authed(app, arbiter.config.api.protect_reads,
                            lambda: arbiter.config.arbiter.max_pause)
    return app


def with_fast_verdict(app: FastAPI) -> Any:
    """The ASGI app `arbiter serve` runs: GET /verdict goes straight to its handler,
    everything else (and every other method) to the FastAPI app. Every node's gate
    asks once a second; FastAPI's per-request layers (telemetry check, three
    middlewares, route matching) were about half of a /verdict request's cost
    (cProfile). Answers and errors are the same as through the app: tests compare."""

    async def asgi(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/verdict" or scope["method"] != "GET":
            await app(scope, receive, send)
            return
        scope["app"] = app  # request.app.state, as the app would have set it
        try:
            response = verdict_answer(Request(scope, receive))
        except Exception as exc:  # noqa: BLE001 - mapped as the app's handlers map it
            response = error_response(exc)
        await response(scope, receive, send)

    return asgi
