"""The status page (``GET /``) and the API docs' assets, served by the arbiter itself.

The page is rendered on the server with Jinja2 (every value escaped) from the
same data as ``/status`` and ``/incidents``; a few lines of script swap in its
live part (``/ui/live``) every ``refresh`` seconds, without a reload. Nothing is
loaded from outside the arbiter: the page's script and style, and Swagger UI and
ReDoc for ``/docs`` (from the pinned ``fastapi-offline`` package), are served
from here, so they work on an air-gapped management network.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool

from arbiter.policy.cluster_state import ADVICE, arbiter_problems
from arbiter.round.outputs import status as views

REFRESH_MS = 2000
RECENT = 5  # incidents shown with their timelines
HERE = Path(__file__).parent
ASSETS = {"page.js": "text/javascript", "page.css": "text/css"}
DOCS_ASSETS = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css",
               "redoc.standalone.js": "text/javascript", "favicon.png": "image/png"}
# the page's own script and style only; framing refused (clickjacking)
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "frame-ancestors 'none'")
# Swagger UI's page starts itself with an inline script (FastAPI's template)
DOCS_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline'; "
            "style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'")

_env = Environment(loader=FileSystemLoader(HERE / "templates"),
                   autoescape=select_autoescape(default=True, default_for_string=True),
                   trim_blocks=False, lstrip_blocks=False)


def _age(ts: str | None, now: datetime) -> str:
    if not ts:
        return "never"
    s = (now - datetime.fromisoformat(ts)).total_seconds()
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.0f} min"


def _yes(v: bool | None) -> str:
    return "—" if v is None else ("yes" if v else "NO")


def _role(n: dict[str, Any]) -> str:
    """keepalived's own word: its view, or what arbiter-notify reported, else what SSH
    showed."""
    kv = n.get("keepalived") or {}
    if kv.get("instances") and n.get("keepalived_running") is not False:
        return ", ".join(f"{i['name']} {i['state']}" for i in kv["instances"]) + (
            " (stale)" if kv.get("error") else "")
    ev = n.get("last_event") or {}
    if ev.get("state"):
        return f"{ev['state']} (notify)"
    if n.get("ssh") is None or not n["ssh"].get("ok"):
        return "unknown"
    if n.get("keepalived_running") is False:
        return "keepalived stopped"
    return "holds the VIP" if n.get("holds") else "backup"


def _gateways(n: dict[str, Any]) -> str:
    gws = n.get("gateways") or {}
    return "—" if not gws else f"{sum(bool(v) for v in gws.values())}/{len(gws)}"


def overall(status: dict[str, Any]) -> str:
    """The worst cluster state, for the title (/status ``overall``)."""
    return status["overall"]["state"]


async def render_live(request: Request) -> tuple[str, str]:
    """(the live fragment, the overall state)."""
    arb = request.app.state.arbiter
    reader = request.app.state.reader
    view = arb.view
    wiring = arb.gates.wiring(view.config)
    warnings = arb.gates.warnings(view.config, wiring)
    now = datetime.now(UTC)
    status = await run_in_threadpool(views.status, view, now, wiring, warnings)
    page = json.loads(await reader.incidents(cluster=None, state=None, kind=None, since=None,
                                             limit=50, cursor=None))["items"]
    open_incidents = [i for i in page if i["state"] != "resolved" or i["held_nodes"]]
    recent = []
    for i in page[:RECENT]:
        body = await reader.incident(i["id"])
        if body is not None:
            recent.append(json.loads(body))
    word = overall(status)
    html = await run_in_threadpool(_env.get_template("live.html.j2").render,
                                   status=status, overall=word, advice=ADVICE,
                                   arbiter_problems=arbiter_problems(status),
                                   open_incidents=open_incidents, recent=recent,
                                   now=now.strftime("%Y-%m-%d %H:%M:%S"),
                                   age=lambda ts: _age(ts, now), yes=_yes, role=_role,
                                   gateways=_gateways)
    return html, word


def _html(body: str, csp: str = CSP) -> HTMLResponse:
    return HTMLResponse(body, headers={"Content-Security-Policy": csp,
                                       "Cache-Control": "no-store",
                                       "X-Content-Type-Options": "nosniff"})


page_router = APIRouter(include_in_schema=False)


@page_router.get("/", response_class=HTMLResponse)
async def status_page(request: Request) -> HTMLResponse:
    live, word = await render_live(request)
    # the fragment was rendered (and escaped) by the same environment
    page = _env.get_template("page.html.j2").render(overall=word, refresh_ms=REFRESH_MS,
                                                    live=Markup(live))
    return _html(page)


@page_router.get("/ui/live", response_class=HTMLResponse)
async def live_fragment(request: Request) -> HTMLResponse:
    live, _ = await render_live(request)
    return _html(live)


@page_router.get("/ui/{name}")
async def page_asset(name: str) -> Response:
    if name not in ASSETS:
        raise HTTPException(404, f"no asset {name!r}")
    return Response((HERE / "static" / name).read_bytes(), media_type=ASSETS[name],
                    headers={"Cache-Control": "max-age=300"})


# --- /docs and /redoc, from local files ------------------------------------------------
docs_router = APIRouter(include_in_schema=False)


def _docs_file(name: str) -> bytes:
    return (resources.files("fastapi_offline") / "static" / name).read_bytes()


@docs_router.get("/docs-assets/{name}")
async def docs_asset(name: str) -> Response:
    if name not in DOCS_ASSETS:
        raise HTTPException(404, f"no asset {name!r}")
    return Response(_docs_file(name), media_type=DOCS_ASSETS[name],
                    headers={"Cache-Control": "max-age=86400"})


@docs_router.get("/docs", response_class=HTMLResponse)
async def swagger_ui() -> HTMLResponse:
    page = get_swagger_ui_html(openapi_url="/openapi.json", title="keepalived-arbiter API",
                               swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                               swagger_css_url="/docs-assets/swagger-ui.css",
                               swagger_favicon_url="/docs-assets/favicon.png")
    return _html(bytes(page.body).decode(), DOCS_CSP)


@docs_router.get("/redoc", response_class=HTMLResponse)
async def redoc() -> HTMLResponse:
    page = get_redoc_html(openapi_url="/openapi.json", title="keepalived-arbiter API",
                          redoc_js_url="/docs-assets/redoc.standalone.js",
                          redoc_favicon_url="/docs-assets/favicon.png", with_google_fonts=False)
    return _html(bytes(page.body).decode(), DOCS_CSP)
