"""The writes: a keepalived event, and an operator's release, reload, pause and resume.
Each queues an intent and wakes the loop; the next round carries it out under the
round lock, and the answer waits for it (Patroni's API works the same way)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, Response

from arbiter.api.auth import Auth
from arbiter.api.deps import ArbiterDep, IncidentId, read_access
from arbiter.api.schema import (
    WRITE_ERRORS,
    EventIn,
    PauseIn,
    ReleaseIn,
    ResumeIn,
    body_doc,
    error_doc,
)
from arbiter.api.writes import parse, read_body

actions_router = APIRouter(dependencies=[Depends(read_access)])


@actions_router.post("/events", status_code=202,
                     summary="A keepalived state transition (arbiter-notify)",
             openapi_extra=body_doc(EventIn, True),
             responses={**WRITE_ERRORS, 429: error_doc("too many events from this node")})
async def post_event(request: Request, arb: ArbiterDep) -> dict[str, Any]:
    auth: Auth = request.app.state.auth
    auth.principal(request)  # who, before a byte of the body is read
    ev = parse(EventIn, await read_body(request))
    assert ev is not None
    who = auth.require_node(request, ev.cluster, ev.node)
    cfg = arb.view.config.cluster(ev.cluster)
    if cfg is None:
        raise HTTPException(404, f"unknown cluster {ev.cluster!r}")
    if cfg.node(ev.node) is None:
        raise HTTPException(404, f"unknown node {ev.node!r} in cluster {ev.cluster!r}")
    wait = request.app.state.event_limit.take((ev.cluster, ev.node))
    if wait is not None:
        raise HTTPException(429, f"too many events from {ev.cluster}/{ev.node}; retry in "
                                 f"{wait:.1f}s", headers={"Retry-After": str(int(wait) + 1)})
    arb.report_event(ev.cluster, ev.node, ev.instance, ev.state, ev.priority,
                     request.client.host if request.client else None)
    return {"queued": True, "round": "scheduled now", "by": who.name}


RELEASE_WAIT = 30.0  # the answer waits this long for the loop to carry the release out


@actions_router.post("/incidents/{incident_id}/release",
             summary="Release a held victim (operator); runs recover_command where needed",
             openapi_extra=body_doc(ReleaseIn, False),
             responses={**WRITE_ERRORS, 202: {"description": "queued; no round took it yet"},
                        409: error_doc("the incident holds no node")})
async def release_incident(request: Request, arb: ArbiterDep,
                           incident_id: IncidentId) -> Response:
    auth: Auth = request.app.state.auth
    who = auth.require_operator(request)
    body = parse(ReleaseIn, await read_body(request), empty_ok=True)
    by = who.name + (f": {body.reason}" if body and body.reason else "")
    done = arb.release(incident_id, by)  # an intent: the next round carries it out
    try:
        res = await asyncio.wait_for(asyncio.shield(done), RELEASE_WAIT)
    except KeyError:
        raise HTTPException(404, f"no incident {incident_id}") from None
    except TimeoutError:
        return JSONResponse({"incident": incident_id, "queued": True,
                             "detail": "accepted; the release is carried out by the next "
                                       "round, which has not run yet"}, status_code=202)
    if not res["released"]:
        raise HTTPException(409, f"incident {incident_id} holds no node (not fenced, or released)")
    return JSONResponse(res)


@actions_router.post("/reload", summary="Read the config file again and swap it in (operator)",
             responses={**WRITE_ERRORS, 202: {"description": "queued; no round took it yet"},
                        409: error_doc("refused: a field that needs a restart, an invalid "
                                       "file, or no file to read")})
async def reload_config(request: Request, arb: ArbiterDep) -> Response:
    who = request.app.state.auth.require_operator(request)
    path = request.app.state.config_path
    if path is None:
        raise HTTPException(409, "this arbiter was not started from a config file")
    task = asyncio.ensure_future(arb.reload_from(path, who.name))
    try:
        res = await asyncio.wait_for(asyncio.shield(task), RELEASE_WAIT)
    except TimeoutError:
        return JSONResponse({"queued": True, "detail": "validated; the next round swaps it "
                             "in, and has not run yet"}, status_code=202)
    if not res["ok"]:
        raise HTTPException(409, res["error"])
    return JSONResponse(res)


@actions_router.post("/pause", summary="Maintenance: fence nothing in a cluster (or all) for a "
             "while (operator)", openapi_extra=body_doc(PauseIn, True),
             responses={**WRITE_ERRORS, 404: error_doc("unknown cluster")})
async def pause(request: Request, arb: ArbiterDep) -> Response:
    who = request.app.state.auth.require_operator(request)
    body = parse(PauseIn, await read_body(request))
    assert body is not None
    limit = arb.config.arbiter.max_pause
    if body.seconds > limit:
        raise HTTPException(422, f"seconds: {body.seconds:g} is more than [arbiter] "
                                 f"max_pause ({limit:g}s)")
    if body.cluster is not None and arb.config.cluster(body.cluster) is None:
        raise HTTPException(404, f"unknown cluster {body.cluster!r}")
    done = arb.pause(body.cluster, body.seconds, body.reason, who.name)
    return JSONResponse(await _carried_out(done))


@actions_router.post("/resume", summary="End a maintenance pause now (operator)",
             openapi_extra=body_doc(ResumeIn, False),
             responses={**WRITE_ERRORS, 404: error_doc("unknown cluster"),
                        409: error_doc("no such pause in force")})
async def resume(request: Request, arb: ArbiterDep) -> Response:
    who = request.app.state.auth.require_operator(request)
    body = parse(ResumeIn, await read_body(request), empty_ok=True)
    cluster = body.cluster if body else None
    if cluster is not None and arb.config.cluster(cluster) is None:
        raise HTTPException(404, f"unknown cluster {cluster!r}")
    done = arb.pause(cluster, None, "", who.name, every=cluster is None)
    try:
        return JSONResponse(await _carried_out(done))
    except LookupError:
        raise HTTPException(409, f"no maintenance pause in force for "
                                 f"{cluster or 'any cluster'}") from None


async def _carried_out(done: asyncio.Future[dict[str, Any]]) -> dict[str, Any]:
    """The next round carries an intent out; it runs at once (the loop is woken)."""
    try:
        return await asyncio.wait_for(asyncio.shield(done), RELEASE_WAIT)
    except TimeoutError:
        raise HTTPException(503, "no round took it within 30 s: is the loop stalled? "
                                 "(GET /status)") from None


