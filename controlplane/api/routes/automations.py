"""/api/v1/automations (and /api/workflows/automations): seed 004's automation resource and its actions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse

from controlplane.api.deps import PlatformDep, PrincipalDep, page_links
from controlplane.core.filters import ListQuery
from controlplane.core.schemas.automations import (
    AutomationCopyCreate,
    AutomationCreate,
    AutomationOwnerUpdate,
    AutomationPublic,
    AutomationSettingsPublic,
    AutomationSettingsUpdate,
    AutomationSpaceUpdate,
    AutomationUpdate,
    ExecutionTokenPublic,
    WebhookRunPublic,
)
from controlplane.core.schemas.wire import ErrorBody, Page
from controlplane.core.states import AutomationState, RunStatus
from controlplane.services.automations import actions as automation_actions
from controlplane.services.automations import webhooks

ERRORS = {code: {"model": ErrorBody} for code in (400, 401, 403, 404, 409, 422, 500, 503)}
router = APIRouter(tags=["automations"], responses=ERRORS)  # type: ignore[arg-type]

FILTER_HELP = (
    'SCIM-style, e.g. name eq "x" and runMode eq "manual"; on name, runMode, lastRunStatus, ownerId, spaceId, state.'
)
Limit = Annotated[int, Query(ge=1, le=100, description="The number of automations to retrieve.")]


@router.get("/settings", response_model=AutomationSettingsPublic)
async def get_settings(platform: PlatformDep, principal: PrincipalDep) -> AutomationSettingsPublic:
    """The tenant's automation settings (admin)."""
    return AutomationSettingsPublic.model_validate(await platform.automations.get_settings(principal))


@router.put("/settings", response_model=AutomationSettingsPublic)
async def put_settings(
    body: AutomationSettingsUpdate, platform: PlatformDep, principal: PrincipalDep
) -> AutomationSettingsPublic:
    """Change the tenant's automation settings (admin)."""
    done = await platform.automations.put_settings(principal, body.max_concurrent_runs_per_automation)
    return AutomationSettingsPublic.model_validate(done)


@router.get("", response_model=Page[AutomationPublic], response_model_exclude_none=True)
async def list_automations(
    request: Request,
    platform: PlatformDep,
    principal: PrincipalDep,
    filter: Annotated[str | None, Query(description=FILTER_HELP)] = None,
    sort: Annotated[str | None, Query(description="Field with +/- prefix, e.g. -name.")] = None,
    limit: Limit = 20,
    page: Annotated[str | None, Query(description="Cursor from links.next / links.prev.")] = None,
    listAll: Annotated[
        bool, Query(description="When true, list every automation of the tenant (tenant admins only; else 403).")
    ] = False,
) -> Page[AutomationPublic]:
    query = ListQuery(filter=filter, sort=sort, limit=limit, cursor=page)
    items, result = await platform.automations.search(principal, query, list_all=listAll)
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


@router.post("/{id}/actions/copy", status_code=201, response_model=AutomationPublic, response_model_exclude_none=True)
async def copy_automation(
    id: str, body: AutomationCopyCreate, platform: PlatformDep, principal: PrincipalDep
) -> AutomationPublic:
    """Duplicate the automation (same code, settings and schedules) under a new name, owned by the caller,
    in the same space, with a new id and executionToken."""
    return await automation_actions.copy(platform.automations, principal, id, name=body.name)


@router.post("/{id}/actions/change-owner", status_code=204, response_class=Response)
async def change_owner(
    id: str, body: AutomationOwnerUpdate, platform: PlatformDep, principal: PrincipalDep
) -> Response:
    """Give the automation to another user of the tenant (tenant admins). As seed 004 says, this removes the
    automation's history and change log: its ended runs and the versions no unfinished run uses."""
    await automation_actions.change_owner(platform.automations, principal, id, user_id=body.user_id)
    return Response(status_code=204)


router.add_api_route(
    "/{id}/actions/move",
    change_owner,
    methods=["POST"],
    status_code=204,
    response_class=Response,
    name="move_automation",
    summary="Move Automation",
    description="Seed 004's older name for change-owner: the same action.",
)


@router.post("/{id}/actions/change-space", status_code=204, response_class=Response)
async def change_space(
    id: str, body: AutomationSpaceUpdate, platform: PlatformDep, principal: PrincipalDep
) -> Response:
    """Move the automation into another space the caller may write in."""
    await automation_actions.change_space(platform.automations, principal, id, space_id=body.space_id)
    return Response(status_code=204)


@router.post("/{id}/actions/rotate-execution-token", response_model=ExecutionTokenPublic)
async def rotate_execution_token(id: str, platform: PlatformDep, principal: PrincipalDep) -> ExecutionTokenPublic:
    """Replace the executionToken; webhook calls with the old one are refused from now on."""
    token = await automation_actions.rotate_execution_token(platform.automations, principal, id)
    return ExecutionTokenPublic(execution_token=token)


@router.post(
    "/{id}/actions/execute",
    status_code=201,
    response_model=WebhookRunPublic,
    openapi_extra={
        "requestBody": {
            "description": "Any content: it becomes the run's input (JSON bodies must be valid JSON).",
            "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def execute_automation(
    id: str,
    request: Request,
    platform: PlatformDep,
    token_header: Annotated[
        str | None, Header(alias="X-Execution-Token", description="The automation's executionToken.")
    ] = None,
    token_query: Annotated[
        str | None, Query(alias="X-Execution-Token", description="The executionToken, when a header cannot be set.")
    ] = None,
) -> Response:
    """Webhook run: no bearer token; the executionToken authorizes it. 201 with the queued run (context
    webhook); 401 for a wrong or missing token or an unknown id alike."""
    run = await webhooks.execute(
        platform.sessions,
        platform.runs,
        id,
        token=token_header or token_query,
        body=await request.body(),
        content_type=request.headers.get("content-type"),
    )
    doc = WebhookRunPublic(
        id=run.id,
        automation_id=run.automation_id,
        status=RunStatus(run.status),
        context=run.context,
        created_at=run.created_at,
    )
    location = f"{request.url.path.rsplit('/actions/', 1)[0]}/runs/{run.id}"
    return JSONResponse(
        doc.model_dump(mode="json", by_alias=True),
        status_code=201,
        headers={"Location": location, "X-Run-Id": run.id},
    )
