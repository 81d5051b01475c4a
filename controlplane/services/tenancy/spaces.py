"""Spaces: which automations (and so which runs) a user sees, what they may do there, and the spaces admin API.

The rules, in order:
- an admin (token role admin) sees and may do everything in their tenant;
- every user of a tenant belongs to its default space, with their token role's permissions;
- an automation's owner sees it wherever it lives, with their token role's permissions;
- in any other space a member's permissions are their token role's capped by their space role
  (viewer: read; operator: read and run; editor: read, run and write);
- anything else is invisible: the same 404 as a missing object, so ids cannot be probed.
Listings show what a user sees; ``listAll=true`` (admins only, else 403) shows every object of the tenant.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from controlplane.core.auth import GRANTS, Permission, Principal
from controlplane.core.errors import Code, Conflict, Forbidden, NotFound
from controlplane.core.filters import ListQuery
from controlplane.core.schemas.spaces import SpaceCreate, SpaceMemberPublic, SpacePublic, SpaceRole, SpaceUpdate
from controlplane.core.states import Role
from controlplane.db.session import transaction
from controlplane.db.tables import Automation, Space, utcnow
from controlplane.store import automations as automation_store
from controlplane.store import spaces as store
from controlplane.store import tenants as tenant_store
from controlplane.store.query import PageResult

SPACE_GRANTS: dict[str, frozenset[Permission]] = {
    "viewer": frozenset({Permission.READ}),
    "operator": frozenset({Permission.READ, Permission.RUN}),
    "editor": frozenset({Permission.READ, Permission.RUN, Permission.WRITE}),
}


def automation_missing(automation_id: str) -> NotFound:
    """The one answer for a missing automation and one the caller may not see (byte-identical)."""
    return NotFound(f"automation {automation_id} does not exist")


def space_missing(space_id: str) -> NotFound:
    return NotFound(f"space {space_id} does not exist", code=Code.SPACE_NOT_FOUND)


@dataclass(frozen=True)
class View:
    """What one principal sees: the tenant's default space, their explicit memberships, or everything."""

    principal: Principal
    default_id: str
    roles: dict[str, str]

    @property
    def admin(self) -> bool:
        return self.principal.role == Role.ADMIN

    @property
    def token_grants(self) -> frozenset[Permission]:
        return GRANTS[self.principal.role]

    def role_in(self, space_id: str | None) -> SpaceRole | None:
        if space_id is None or space_id == self.default_id:
            return "editor"
        role = self.roles.get(space_id)
        return role if role in ("viewer", "operator", "editor") else None  # type: ignore[return-value]

    def grants_in(self, space_id: str | None) -> frozenset[Permission]:
        if self.admin:
            return self.token_grants
        role = self.role_in(space_id)
        return self.token_grants & SPACE_GRANTS[role] if role else frozenset()

    def grants_on(self, row: Automation) -> frozenset[Permission]:
        if row.owner_id == self.principal.user_id:
            return self.token_grants
        return self.grants_in(row.space_id)

    def visible_spaces(self) -> set[str]:
        return {self.default_id, *self.roles}

    def require_on(self, row: Automation, permission: Permission) -> None:
        """NotFound when the automation is invisible to the caller, Forbidden when visible but not allowed."""
        self.principal.require(permission)
        grants = self.grants_on(row)
        if not grants:
            raise automation_missing(row.id)
        if permission not in grants:
            raise Forbidden(f"your role in this automation's space does not allow {permission.value}")


class SpaceService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    # --- access rules (used by automations, actions and the runs routes) ---------------------------

    async def view(self, s: AsyncSession, principal: Principal) -> View:
        return View(principal, store.default_space_id(principal.tenant_id), await store.roles_of(s, principal.user_id))

    async def automation(
        self, s: AsyncSession, principal: Principal, automation_id: str, permission: Permission, *, lock: bool = False
    ) -> Automation:
        """Load an automation the caller may act on with ``permission`` (404 if unseen, 403 if not allowed)."""
        principal.require(permission)
        if lock:
            row = await automation_store.get_for_update(s, principal.tenant_id, automation_id)
        else:
            row = await automation_store.get(s, principal.tenant_id, automation_id)
        if row is None:
            raise automation_missing(automation_id)
        (await self.view(s, principal)).require_on(row, permission)
        return row

    async def require_automation(self, principal: Principal, automation_id: str, permission: Permission) -> None:
        """For routes whose own service checks only the tenant (runs): admins see the whole tenant, so for
        them there is nothing to add (and no query to pay)."""
        principal.require(permission)
        if principal.role == Role.ADMIN:
            return
        async with self.sessions() as s:
            await self.automation(s, principal, automation_id, permission)

    async def target(self, s: AsyncSession, principal: Principal, space_id: str | None) -> str:
        """The space an automation is put into: ``None`` is the default space; another must exist and be
        one the caller may write in (404 SPACE_NOT_FOUND when unseen, 403 when only viewer/operator)."""
        default = await store.ensure_default(s, principal.tenant_id)
        if space_id is None or space_id == default.id:
            return default.id
        space = await store.get_for_update(s, principal.tenant_id, space_id)  # held: no delete meanwhile
        view = await self.view(s, principal)
        if space is None or not (view.admin or space.id in view.roles):
            raise space_missing(space_id)
        if Permission.WRITE not in view.grants_in(space.id):
            raise Forbidden("your role in that space does not allow write")
        return space.id

    # --- the spaces API ------------------------------------------------------------------------------

    def _public(self, row: Space, view: View) -> SpacePublic:
        return SpacePublic(
            id=row.id,
            name=row.name,
            description=row.description,
            is_default=row.is_default,
            owner_id=row.owner_id,
            role=view.role_in(row.id),
            created_at=row.created_at,
            updated_at=row.updated_at,
        )

    async def _visible(self, s: AsyncSession, principal: Principal, space_id: str) -> tuple[Space, View]:
        await store.ensure_default(s, principal.tenant_id)
        view = await self.view(s, principal)
        space = await store.get(s, principal.tenant_id, space_id)
        if space is None or not (view.admin or space.id in view.visible_spaces()):
            raise space_missing(space_id)
        return space, view

    async def search(
        self,
        principal: Principal,
        query: ListQuery,
        *,
        list_all: bool,
    ) -> tuple[list[SpacePublic], PageResult]:
        principal.require(Permission.READ)
        if list_all:
            principal.require(Permission.ADMIN)
        asked = query.parse(store.FILTER_COLUMNS, store.SORT_COLUMNS, "+name")
        async with transaction(self.sessions) as s:
            await store.ensure_default(s, principal.tenant_id)
            view = await self.view(s, principal)
            only = None if list_all else view.visible_spaces()
            page = await store.list_page(s, principal.tenant_id, asked, only=only)
            return [self._public(r, view) for r in page.rows], page

    async def get(self, principal: Principal, space_id: str) -> SpacePublic:
        principal.require(Permission.READ)
        async with transaction(self.sessions) as s:
            space, view = await self._visible(s, principal, space_id)
            return self._public(space, view)

    async def create(self, principal: Principal, body: SpaceCreate) -> SpacePublic:
        principal.require(Permission.ADMIN)
        try:
            async with transaction(self.sessions) as s:
                await store.ensure_default(s, principal.tenant_id)  # first, so its name is taken
                if await store.get_by_name(s, principal.tenant_id, body.name):
                    raise _name_taken(body.name)
                row = Space(
                    tenant_id=principal.tenant_id,
                    name=body.name,
                    description=body.description,
                    is_default=False,
                    owner_id=principal.user_id,
                )
                s.add(row)
                await s.flush()
                return self._public(row, await self.view(s, principal))
        except IntegrityError as exc:
            raise _name_taken(body.name) from exc

    async def update(self, principal: Principal, space_id: str, body: SpaceUpdate) -> SpacePublic:
        principal.require(Permission.ADMIN)
        try:
            async with transaction(self.sessions) as s:
                await self._visible(s, principal, space_id)
                row = await store.get_for_update(s, principal.tenant_id, space_id)
                assert row is not None
                if body.name != row.name and await store.get_by_name(s, principal.tenant_id, body.name):
                    raise _name_taken(body.name)
                changed = body.name != row.name or (body.description not in (None, row.description))
                row.name = body.name
                if body.description is not None:
                    row.description = body.description
                if changed:
                    row.updated_at = utcnow()
                await s.flush()
                return self._public(row, await self.view(s, principal))
        except IntegrityError as exc:
            raise _name_taken(body.name) from exc

    async def delete(self, principal: Principal, space_id: str) -> None:
        """An admin deletes an empty space (409 while automations live in it; the default space stays)."""
        principal.require(Permission.ADMIN)
        async with transaction(self.sessions) as s:
            await self._visible(s, principal, space_id)
            row = await store.get_for_update(s, principal.tenant_id, space_id)
            assert row is not None
            if row.is_default:
                raise Conflict("the default space cannot be deleted", code=Code.DEFAULT_SPACE)
            count = await store.count_automations(s, row.id)
            if count:
                raise Conflict(f"{count} automation(s) live in this space; move them first", code=Code.SPACE_NOT_EMPTY)
            await store.remove(s, row)

    # --- members -------------------------------------------------------------------------------------

    async def members(self, principal: Principal, space_id: str) -> list[SpaceMemberPublic]:
        """Admins and the space's members see its member list (the default space lists none: every user
        of the tenant is implicitly an editor there)."""
        principal.require(Permission.READ)
        async with transaction(self.sessions) as s:
            space, _ = await self._visible(s, principal, space_id)
            rows = await store.members(s, space.id)
            return [
                SpaceMemberPublic(user_id=u.id, user_name=u.name, role=m.role, created_at=m.created_at) for m, u in rows
            ]

    async def put_member(
        self, principal: Principal, space_id: str, user_id: str, role: SpaceRole
    ) -> tuple[SpaceMemberPublic, bool]:
        """Add a user of the tenant to a space or change their role. Returns (member, created)."""
        principal.require(Permission.ADMIN)
        async with transaction(self.sessions) as s:
            space, _ = await self._visible(s, principal, space_id)
            if space.is_default:
                raise Conflict("every user of the tenant belongs to the default space", code=Code.DEFAULT_SPACE)
            user = await tenant_store.get_user(s, principal.tenant_id, user_id)
            if user is None:
                raise NotFound(f"user {user_id} does not exist", code=Code.USER_NOT_FOUND)
            created = await store.member(s, space.id, user.id) is None
            row = await store.put_member(s, space.id, user.id, role)
            return SpaceMemberPublic(
                user_id=user.id, user_name=user.name, role=role, created_at=row.created_at
            ), created

    async def remove_member(self, principal: Principal, space_id: str, user_id: str) -> None:
        principal.require(Permission.ADMIN)
        async with transaction(self.sessions) as s:
            space, _ = await self._visible(s, principal, space_id)
            row = await store.member(s, space.id, user_id)
            if row is None:
                raise NotFound(f"user {user_id} is not a member of space {space_id}", code=Code.MEMBER_NOT_FOUND)
            await store.remove(s, row)


def _name_taken(name: str) -> Conflict:
    return Conflict(f"a space named {name!r} already exists", code=Code.NAME_TAKEN)
