"""Automation rules as API clients see them (seed 003): create, read, list, update, delete, evaluations.

A rule belongs to one automation (the seed's ``app_offering``, given by id or name) and is seen by whoever
sees that automation (services/tenancy/spaces.py): others get the 404 of a missing rule. Writing needs the write
permission on the automation (developer and up, editor in its space). The rule's CEL text is compiled on
every write (services/rules/language.py), so a rule that is stored always compiles. The engine that runs
rules is services/rules/engine.py.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from controlplane.core.auth import Permission, Principal
from controlplane.core.errors import BadRequest, Code, NotFound, ValidationFailed
from controlplane.core.settings import Settings
from controlplane.db.session import transaction
from controlplane.db.tables import Automation, AutomationRule, utcnow
from controlplane.dialects.rules import fields
from controlplane.dialects.rules.schemas import RuleEvaluationPublic, RulePublic
from controlplane.services.rules.language import RuleSyntaxError, compile_rule
from controlplane.services.tenancy.spaces import SpaceService, View
from controlplane.store import automations as automation_store
from controlplane.store import rules as store

FILTERS = ("id", "name", "trigger", "rulable_type", "app_offering", "position", "created_at", "updated_at")
_COMPARE = re.compile(r"(>=|<=|>|<)?([^<>]+)")


def rule_missing(rule_id: object) -> NotFound:
    return NotFound(f"app offering automation rule {rule_id} does not exist")


def _rule_id(value: str) -> int:
    if not (value.isascii() and value.isdigit()) or len(value) > 18:  # '²' is a digit to isdigit()
        raise rule_missing(value)
    return int(value)


class RuleService:
    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.settings = settings
        self.sessions = sessions
        self.spaces = SpaceService(sessions)

    async def _view(self, s: AsyncSession, principal: Principal) -> View:
        return await self.spaces.view(s, principal)

    async def _load(
        self, s: AsyncSession, principal: Principal, rule_id: str, permission: Permission
    ) -> tuple[AutomationRule, Automation]:
        principal.require(permission)
        found = await store.get(s, principal.tenant_id, _rule_id(rule_id))
        if found is None:
            raise rule_missing(rule_id)
        grants = (await self._view(s, principal)).grants_on(found[1])
        if Permission.READ not in grants:
            raise rule_missing(rule_id)
        if permission not in grants:
            (await self._view(s, principal)).require_on(found[1], permission)  # 403 with the reason
        return found

    async def _offering(self, s: AsyncSession, principal: Principal, ref: str) -> Automation:
        """The automation ``app_offering`` names (id, else name) that the caller may write."""
        row = await automation_store.get(s, principal.tenant_id, ref)
        if row is None:
            row = await automation_store.get_by_name(s, principal.tenant_id, ref)
        missing = ValidationFailed(f"app_offering: no automation {ref!r}", code=Code.APP_OFFERING_NOT_FOUND)
        if row is None:
            raise missing
        view = await self._view(s, principal)
        if not view.grants_on(row):
            raise missing
        view.require_on(row, Permission.WRITE)
        return row

    # --- reads --------------------------------------------------------------------------------------

    async def get(self, principal: Principal, rule_id: str) -> RulePublic:
        async with self.sessions() as s:
            rule, automation = await self._load(s, principal, rule_id, Permission.READ)
        return fields.public(rule, automation)

    async def search(
        self, principal: Principal, *, filters: dict[str, str], sort: str | None, page: int, per_page: int
    ) -> tuple[list[RulePublic], int]:
        principal.require(Permission.READ)
        conditions = [c for name, value in filters.items() for c in _filter(name, value)]
        order = _order(sort)
        async with self.sessions() as s:
            view = await self._view(s, principal)
            rows, total = await store.search(
                s,
                principal.tenant_id,
                conditions=conditions,
                order=order,
                visible=None if view.admin else (principal.user_id, view.visible_spaces()),
                offset=(page - 1) * per_page,
                limit=per_page,
            )
        return [fields.public(rule, automation) for rule, automation in rows], total

    async def evaluations(
        self, principal: Principal, rule_id: str, *, page: int, per_page: int
    ) -> tuple[list[RuleEvaluationPublic], int]:
        async with self.sessions() as s:
            rule, _ = await self._load(s, principal, rule_id, Permission.READ)
            rows, total = await store.evaluations(s, rule.id, offset=(page - 1) * per_page, limit=per_page)
        return [fields.evaluation_public(row) for row in rows], total

    # --- writes -------------------------------------------------------------------------------------

    async def create(self, principal: Principal, body: dict[str, Any]) -> RulePublic:
        principal.require(Permission.WRITE)
        values = fields.check_write(body, creating=True)
        fields.check_trigger(values["rulable_type"], values["trigger"])
        _compile(values)
        async with transaction(self.sessions) as s:
            automation = await self._offering(s, principal, values.pop("app_offering"))
            position = values.pop("position", None)
            if position is None:
                position = await store.next_position(s, principal.tenant_id)
            rule = AutomationRule(
                tenant_id=principal.tenant_id,
                automation_id=automation.id,
                created_by=principal.user_id,
                position=position,
                **values,
            )
            s.add(rule)
            await s.flush()
            out = fields.public(rule, automation)
        return out

    async def update(self, principal: Principal, rule_id: str, body: dict[str, Any]) -> RulePublic:
        principal.require(Permission.WRITE)
        values = fields.check_write(body, creating=False)
        async with transaction(self.sessions) as s:
            rule, automation = await self._load(s, principal, rule_id, Permission.WRITE)
            if "app_offering" in values:
                automation = await self._offering(s, principal, values.pop("app_offering"))
                rule.automation_id = automation.id
            if values.get("position", 0) is None:
                values["position"] = await store.next_position(s, principal.tenant_id)
            merged = {k: values.get(k, getattr(rule, k)) for k in ("rulable_type", "trigger", *fields.TEXT_FIELDS)}
            fields.check_trigger(merged["rulable_type"], merged["trigger"])
            _compile(merged)
            changed = False
            for key, value in values.items():
                if getattr(rule, key) != value:
                    setattr(rule, key, value)
                    changed = True
            if changed or "app_offering" in body:
                rule.updated_at = utcnow()
            await s.flush()
            out = fields.public(rule, automation)
        return out

    async def delete(self, principal: Principal, rule_id: str) -> None:
        async with transaction(self.sessions) as s:
            rule, _ = await self._load(s, principal, rule_id, Permission.WRITE)
            await store.delete_rule(s, rule)


def _compile(values: dict[str, Any]) -> None:
    try:
        compile_rule(values.get("expressions"), values.get("condition"), values.get("actions"))
    except RuleSyntaxError as exc:
        raise ValidationFailed(str(exc), code=Code.INVALID_RULE_TEXT, title="The rule does not compile") from None


def _order(sort: str | None) -> list[tuple[str, bool]]:
    """?sort=position,-name: ascending unless prefixed with '-' (seed 003's API family)."""
    out: list[tuple[str, bool]] = []
    for part in (sort or "").split(","):
        name = part.strip()
        if not name:
            continue
        desc = name.startswith("-")
        name = name.lstrip("+-")
        if name not in store.SORT_KEYS:
            raise BadRequest(
                f"cannot sort on {name!r}; sort accepts: {', '.join(store.SORT_KEYS)}", code=Code.INVALID_SORT
            )
        out.append((name, desc))
    return out


def _filter(name: str, raw: str) -> list[store.Condition]:
    """One ?field=value filter: exact value, '!value' (not), 'a,b' (any of, for id), and '>', '>=', '<',
    '<=' (also two of them: '>=2026-01-01<2026-02-01') for id, position, created_at and updated_at. All
    the conditions returned must hold."""
    if name == "app_offering":
        return [store.Condition(name, "=", raw)]
    if name in ("name", "trigger", "rulable_type"):
        value = fields.normal_trigger(raw.lstrip("!")) if name == "trigger" else raw.lstrip("!")
        return [store.Condition(name, "!=" if raw.startswith("!") else "=", value)]
    if name == "id" and "," in raw:
        return [store.Condition(name, "in", [_typed(name, x) for x in raw.split(",") if x.strip()])]
    if raw.startswith("!"):
        return [store.Condition(name, "!=", _typed(name, raw[1:]))]
    parts = _COMPARE.findall(raw)
    if not parts or "".join(op + v for op, v in parts) != raw:
        raise BadRequest(f"filter {name}: cannot read {raw!r}", code=Code.INVALID_FILTER)
    return [store.Condition(name, op or "=", _typed(name, text)) for op, text in parts]


def _typed(name: str, text: str) -> Any:
    text = text.strip()
    try:
        if name in ("id", "position"):
            return int(text)
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    except ValueError:
        kind = "an integer" if name in ("id", "position") else "an ISO 8601 date or time"
        raise BadRequest(f"filter {name}: {text!r} is not {kind}", code=Code.INVALID_FILTER) from None
