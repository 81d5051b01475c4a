"""GET /api/v1/automations/usage (and under /api/workflows/automations): seed 004's usage metrics.

Included before the automations router so ``/usage`` is never read as an automation id.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from controlplane.api.deps import PlatformDep, PrincipalDep
from controlplane.core.schemas.usage import UsagePublic
from controlplane.core.schemas.wire import ErrorBody, Href, Links
from controlplane.services.runs import usage

ERRORS = {code: {"model": ErrorBody} for code in (400, 401, 403, 429, 500, 503)}
router = APIRouter(tags=["usage"], responses=ERRORS)  # type: ignore[arg-type]

FILTER_HELP = (
    'Required. SCIM style: name eq "runs" (or several: (name eq "runs" or name eq "duration"); names runs, '
    "scheduledRuns, triggeredRuns, webhookRuns, duration, bandwidthIn, bandwidthOut) and date eq/ge/gt/le/lt "
    '"YYYY-MM-DD", joined by and.'
)


@router.get("/usage", response_model=UsagePublic, response_model_exclude_none=True)
async def get_usage(
    request: Request,
    platform: PlatformDep,
    principal: PrincipalDep,
    filter: Annotated[str | None, Query(description=FILTER_HELP)] = None,
    breakdownBy: Annotated[
        str | None, Query(description="automation: one entry per automation, with automation {guid, name, ownerId}.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=10000, description="Entries per page.")] = 1000,
    page: Annotated[str | None, Query(description="Cursor from links.next / links.prev.")] = None,
) -> UsagePublic:
    """Per day (UTC) usage of the tenant's automations (admins): runs by how they started, run time in
    seconds, and bytes the runs' sandboxes received (bandwidthIn) and sent (bandwidthOut)."""
    result = await usage.query_usage(
        platform.sessions, principal, filter_text=filter, breakdown_by=breakdownBy, limit=limit, cursor=page
    )

    def href(offset: int | None) -> Href | None:
        if offset is None:
            return None
        url = request.url.remove_query_params("page")
        return Href(href=str(url.include_query_params(page=usage.encode_offset(offset)) if offset else url))

    return UsagePublic.model_validate(
        {"data": result.data, "links": Links(next=href(result.next_offset), prev=href(result.prev_offset))}
    )
