"""/api/v1/automations (and /api/workflows/automations): seed 004's automation resource."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from controlplane.api.deps import PlatformDep, PrincipalDep, page_links
from controlplane.core.schemas import (
    AutomationCreate,
    AutomationPublic,
    AutomationSettings,
    AutomationUpdate,
    ErrorBody,
    Page,
)
from controlplane.core.states import AutomationState

ERRORS = {code: {"model": ErrorBody} for code in (400, 401, 403, 404, 409, 422, 500, 503)}
router = APIRouter(tags=["automations"], responses=ERRORS)  # type: ignore[arg-type]

FILTER_HELP = (
    'SCIM-style, e.g. name eq "x" and runMode eq "manual"; on name, runMode, lastRunStatus, ownerId, spaceId, state.'
)
Limit = Annotated[int, Query(ge=1, le=100, description="The number of automations to retrieve.")]


@router.get("/settings", response_model=AutomationSettings)
async def get_settings(platform: PlatformDep, principal: PrincipalDep) -> AutomationSettings:
    """The tenant's automation settings (admin)."""
    return AutomationSettings.model_validate(await platform.automations.get_settings(principal))


@router.put("/settings", response_model=AutomationSettings)
async def put_settings(body: AutomationSettings, platform: PlatformDep, principal: PrincipalDep) -> AutomationSettings:
    """Change the tenant's automation settings (admin)."""
    done = await platform.automations.put_settings(principal, body.max_concurrent_runs_per_automation)
    return AutomationSettings.model_validate(done)


@router.get("", response_model=Page[AutomationPublic], response_model_exclude_none=True)
async def list_automations(
    request: Request,
    platform: PlatformDep,
    principal: PrincipalDep,
    filter: Annotated[str | None, Query(description=FILTER_HELP)] = None,
    sort: Annotated[str | None, Query(description="Field with +/- prefix, e.g. -name.")] = None,
    limit: Limit = 20,
    page: Annotated[str | None, Query(description="Cursor from links.next / links.prev.")] = None,
    listAll: Annotated[bool, Query(description="Admins: every automation of the tenant.")] = False,
) -> Page[AutomationPublic]:
    items, result = await platform.automations.search(
        principal, filter_text=filter, sort=sort, limit=limit, cursor=page
    )
    return Page[AutomationPublic](data=items, links=page_links(request, result))


@router.post("", status_code=201, response_model=AutomationPublic, response_model_exclude_none=True)
async def create_automation(body: AutomationCreate, platform: PlatformDep, principal: PrincipalDep) -> AutomationPublic:
    return await platform.automations.create(principal, body)


@router.get("/{id}", response_model=AutomationPublic, response_model_exclude_none=True)
async def get_automation(id: str, platform: PlatformDep, principal: PrincipalDep) -> AutomationPublic:
    return await platform.automations.get(principal, id)


@router.put("/{id}", response_model=AutomationPublic, response_model_exclude_none=True)
async def update_automation(
    id: str, body: AutomationUpdate, platform: PlatformDep, principal: PrincipalDep
) -> AutomationPublic:
    return await platform.automations.update(principal, id, body)


@router.post("/{id}/actions/enable", status_code=204, response_class=Response)
async def enable_automation(id: str, platform: PlatformDep, principal: PrincipalDep) -> Response:
    """Make the automation runnable again; its schedules resume from now (missed ticks are not fired)."""
    await platform.automations.set_state(principal, id, AutomationState.AVAILABLE)
    return Response(status_code=204)


@router.post("/{id}/actions/disable", status_code=204, response_class=Response)
async def disable_automation(id: str, platform: PlatformDep, principal: PrincipalDep) -> Response:
    """Refuse new runs (409) and fire no schedules until enabled; runs in flight continue."""
    await platform.automations.set_state(principal, id, AutomationState.DISABLED)
    return Response(status_code=204)


@router.delete("/{id}", status_code=204, response_class=Response)
async def delete_automation(id: str, platform: PlatformDep, principal: PrincipalDep) -> Response:
    await platform.automations.delete(principal, id)
    return Response(status_code=204)
