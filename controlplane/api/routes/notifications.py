"""/api/v1/notifications: the caller's own notifications (a processes job with notification-type N or B
ended, ...), newest first, and marking them read. Every role has its own; another user's is a 404."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from controlplane.api.deps import PlatformDep, PrincipalDep
from controlplane.core.schemas.tenancy import NotificationListPublic
from controlplane.core.schemas.wire import ErrorBody
from controlplane.services.events import notifications

ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (401, 404, 429)}
router = APIRouter(tags=["notifications"], responses=ERRORS)


@router.get("", response_model=NotificationListPublic)
async def list_notifications(
    principal: PrincipalDep,
    platform: PlatformDep,
    unread: Annotated[bool, Query(description="Only those not marked read.")] = False,
    limit: Annotated[int, Query(ge=1, le=500, description="At most this many.")] = 100,
) -> NotificationListPublic:
    """The caller's notifications, newest first."""
    items = await notifications.list_for(platform.sessions, principal, unread_only=unread, limit=limit)
    return NotificationListPublic(data=items)


@router.post("/actions/read-all", status_code=204, response_class=Response)
async def read_all(principal: PrincipalDep, platform: PlatformDep) -> Response:
    """Mark every notification of the caller read."""
    await notifications.mark_all_read(platform.sessions, principal)
    return Response(status_code=204)


@router.post("/{notification_id}/actions/read", status_code=204, response_class=Response)
async def read_one(notification_id: str, principal: PrincipalDep, platform: PlatformDep) -> Response:
    """Mark one notification read (again is fine)."""
    await notifications.mark_read(platform.sessions, principal, notification_id)
    return Response(status_code=204)
