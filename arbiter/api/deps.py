"""What every route depends on: the Arbiter behind the app, and read access."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from arbiter.api.openapi import Bearer
from arbiter.round.service import Arbiter
from arbiter.store.queries import MAX_ID


async def get_arbiter(request: Request) -> Arbiter:
    return request.app.state.arbiter


async def read_access(request: Request, _doc: Bearer) -> None:
    # async: no I/O here, and a sync dependency would cost a threadpool hop per request
    request.app.state.auth.check_read(request)


ArbiterDep = Annotated[Arbiter, Depends(get_arbiter)]
IncidentId = Annotated[int, Path(ge=1, le=MAX_ID, description="an incident id")]
