"""/api/v1/spaces: the spaces automations live in, and their members (admins manage; members read)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from controlplane.api.deps import PlatformDep, PrincipalDep, page_links
from controlplane.core.filters import ListQuery
from controlplane.core.schemas.spaces import SpaceCreate, SpaceMemberPublic, SpaceMemberUpdate, SpacePublic, SpaceUpdate
from controlplane.core.schemas.wire import ErrorBody, Links, Page

ERRORS = {code: {"model": ErrorBody} for code in (400, 401, 403, 404, 409, 422, 500, 503)}
router = APIRouter(tags=["spaces"], responses=ERRORS)  # type: ignore[arg-type]


@router.get("", response_model=Page[SpacePublic], response_model_exclude_none=True)
async def list_spaces(
    request: Request,
    platform: PlatformDep,
    principal: PrincipalDep,
    filter: Annotated[str | None, Query(description='SCIM-style on name and isDefault, e.g. name eq "x".')] = None,
    sort: Annotated[str | None, Query(description="name, createdAt, updatedAt or id, with +/- prefix.")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    page: Annotated[str | None, Query(description="Cursor from links.next / links.prev.")] = None,
    listAll: Annotated[bool, Query(description="Every space of the tenant (tenant admins only; else 403).")] = False,
) -> Page[SpacePublic]:
    """The spaces the caller belongs to (the tenant's default space always among them)."""
    query = ListQuery(filter=filter, sort=sort, limit=limit, cursor=page)
    items, result = await platform.automations.spaces.search(principal, query, list_all=listAll)
    return Page[SpacePublic](data=items, links=page_links(request, result))


@router.post("", status_code=201, response_model=SpacePublic, response_model_exclude_none=True)
async def create_space(body: SpaceCreate, platform: PlatformDep, principal: PrincipalDep) -> SpacePublic:
    """Create a space (admins); add members with PUT .../members/{userId}."""
    return await platform.automations.spaces.create(principal, body)


@router.get("/{spaceId}", response_model=SpacePublic, response_model_exclude_none=True)
async def get_space(spaceId: str, platform: PlatformDep, principal: PrincipalDep) -> SpacePublic:
    return await platform.automations.spaces.get(principal, spaceId)


@router.put("/{spaceId}", response_model=SpacePublic, response_model_exclude_none=True)
async def update_space(spaceId: str, body: SpaceUpdate, platform: PlatformDep, principal: PrincipalDep) -> SpacePublic:
    """Rename a space or change its description (admins)."""
    return await platform.automations.spaces.update(principal, spaceId, body)


@router.delete("/{spaceId}", status_code=204, response_class=Response)
async def delete_space(spaceId: str, platform: PlatformDep, principal: PrincipalDep) -> Response:
    """Delete an empty space (admins; 409 while automations live in it or for the default space)."""
    await platform.automations.spaces.delete(principal, spaceId)
    return Response(status_code=204)


@router.get("/{spaceId}/members", response_model=Page[SpaceMemberPublic])
async def list_members(spaceId: str, platform: PlatformDep, principal: PrincipalDep) -> Page[SpaceMemberPublic]:
    """The space's members and their roles (admins and members; the default space lists none, as every user
    of the tenant belongs to it)."""
    members = await platform.automations.spaces.members(principal, spaceId)
    return Page[SpaceMemberPublic](data=members, links=Links())


@router.put(
    "/{spaceId}/members/{userId}",
    response_model=SpaceMemberPublic,
    responses={201: {"model": SpaceMemberPublic, "description": "The user was added to the space."}},
)
async def put_member(
    spaceId: str, userId: str, body: SpaceMemberUpdate, platform: PlatformDep, principal: PrincipalDep
) -> Response:
    """Add a user of the tenant to the space (201) or change their role (200): viewer, operator or editor."""
    member, created = await platform.automations.spaces.put_member(principal, spaceId, userId, body.role)
    return JSONResponse(member.model_dump(mode="json", by_alias=True), status_code=201 if created else 200)


@router.delete("/{spaceId}/members/{userId}", status_code=204, response_class=Response)
async def remove_member(spaceId: str, userId: str, platform: PlatformDep, principal: PrincipalDep) -> Response:
    await platform.automations.spaces.remove_member(principal, spaceId, userId)
    return Response(status_code=204)
