"""Spaces and their members (SQL only; the access rules live in services/tenancy/spaces.py).

Each tenant's default space has an id derived from the tenant id, so creating it on demand is an
``INSERT … ON CONFLICT DO NOTHING`` that any number of requests may race on.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import KeyedColumnElement

from controlplane.core.filters import PageQuery
from controlplane.db.tables import Automation, Space, SpaceMember, User, utcnow
from controlplane.store.query import Listing, PageResult

# the 0003 migration derives the same ids: keep both in step
DEFAULT_SPACE_NAMESPACE = uuid.UUID("6f1c0f3e-3d0b-4f55-9a43-6c0d2f8e4b21")
DEFAULT_SPACE_NAME = "Default"

_c = Space.__table__.c
FILTER_COLUMNS: dict[str, KeyedColumnElement[Any]] = {"name": _c.name, "isDefault": _c.is_default}
SORT_COLUMNS: dict[str, KeyedColumnElement[Any]] = {
    "id": _c.id,
    "name": _c.name,
    "createdAt": _c.created_at,
    "updatedAt": _c.updated_at,
}
LISTING = Listing(FILTER_COLUMNS, SORT_COLUMNS, _c.id)


def default_space_id(tenant_id: str) -> str:
    return str(uuid.uuid5(DEFAULT_SPACE_NAMESPACE, tenant_id))


async def ensure_default(session: AsyncSession, tenant_id: str) -> Space:
    """The tenant's default space, created when it is first needed."""
    space_id = default_space_id(tenant_id)
    row = await session.get(Space, space_id)
    if row is not None:
        return row
    now = utcnow()
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    stmt = insert(Space).values(
        id=space_id,
        tenant_id=tenant_id,
        name=DEFAULT_SPACE_NAME,
        description="Every user of the tenant belongs to this space.",
        is_default=True,
        owner_id="",
        created_at=now,
        updated_at=now,
    )
    await session.execute(stmt.on_conflict_do_nothing(index_elements=["id"]))
    row = await session.get(Space, space_id)
    if row is None:  # pragma: no cover - the insert or a racing one made it
        raise RuntimeError(f"default space of tenant {tenant_id} could not be created")
    return row


async def get(session: AsyncSession, tenant_id: str, space_id: str) -> Space | None:
    row = await session.get(Space, space_id)
    return row if row is not None and row.tenant_id == tenant_id else None


async def get_for_update(session: AsyncSession, tenant_id: str, space_id: str) -> Space | None:
    stmt = select(Space).where(Space.id == space_id, Space.tenant_id == tenant_id).with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_by_name(session: AsyncSession, tenant_id: str, name: str) -> Space | None:
    stmt = select(Space).where(Space.tenant_id == tenant_id, Space.name == name)
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_page(
    session: AsyncSession,
    tenant_id: str,
    query: PageQuery,
    *,
    only: set[str] | None,
) -> PageResult:
    """Spaces of a tenant; ``only`` (when given) keeps those ids."""
    stmt = select(Space).where(Space.tenant_id == tenant_id)
    if only is not None:
        stmt = stmt.where(Space.id.in_(sorted(only)))
    return await LISTING.page(session, stmt, query)


async def count_automations(session: AsyncSession, space_id: str) -> int:
    stmt = select(func.count()).select_from(Automation).where(Automation.space_id == space_id)
    return int((await session.execute(stmt)).scalar_one())


async def roles_of(session: AsyncSession, user_id: str) -> dict[str, str]:
    """{space id: role} of every space the user is an explicit member of."""
    stmt = select(SpaceMember.space_id, SpaceMember.role).where(SpaceMember.user_id == user_id)
    return {space_id: role for space_id, role in (await session.execute(stmt)).all()}


async def member(session: AsyncSession, space_id: str, user_id: str) -> SpaceMember | None:
    return await session.get(SpaceMember, (space_id, user_id))


async def members(session: AsyncSession, space_id: str) -> list[tuple[SpaceMember, User]]:
    stmt = (
        select(SpaceMember, User)
        .join(User, User.id == SpaceMember.user_id)
        .where(SpaceMember.space_id == space_id)
        .order_by(User.name, User.id)
    )
    return [(m, u) for m, u in (await session.execute(stmt)).all()]


async def put_member(session: AsyncSession, space_id: str, user_id: str, role: str) -> SpaceMember:
    row = await member(session, space_id, user_id)
    if row is None:
        row = SpaceMember(space_id=space_id, user_id=user_id, role=role)
        session.add(row)
    else:
        row.role = role
    await session.flush()
    return row


async def remove(session: AsyncSession, row: Space | SpaceMember) -> None:
    await session.delete(row)
    await session.flush()
