"""Automation rules, their evaluation records and the runs rules started: the queries, nothing more."""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from controlplane.db.tables import Automation, AutomationRule, AutomationRuleEvaluation, RuleRun, utcnow

_COLUMNS: dict[str, Any] = {
    "id": AutomationRule.id,
    "name": AutomationRule.name,
    "position": AutomationRule.position,
    "trigger": AutomationRule.trigger,
    "rulable_type": AutomationRule.rulable_type,
    "created_at": AutomationRule.created_at,
    "updated_at": AutomationRule.updated_at,
}


SORT_KEYS = tuple(_COLUMNS)

_OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "=": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}


@dataclass(frozen=True)
class Condition:
    """One filter on a rule's field: ``field op value``; op is one of = != > >= < <= in. ``app_offering``
    matches the rule's automation by id or name."""

    field: str
    op: str
    value: Any

    def clause(self) -> ColumnElement[bool]:
        if self.field == "app_offering":
            return or_(Automation.id == self.value, Automation.name == self.value)
        column = _COLUMNS[self.field]
        if self.op == "in":
            return column.in_(list(self.value))  # type: ignore[no-any-return]
        return _OPERATORS[self.op](column, self.value)  # type: ignore[no-any-return]


async def get(session: AsyncSession, tenant_id: str, rule_id: int) -> tuple[AutomationRule, Automation] | None:
    stmt = (
        select(AutomationRule, Automation)
        .join(Automation, Automation.id == AutomationRule.automation_id)
        .where(AutomationRule.id == rule_id, AutomationRule.tenant_id == tenant_id)
    )
    row = (await session.execute(stmt)).first()
    return (row[0], row[1]) if row is not None else None


async def search(
    session: AsyncSession,
    tenant_id: str,
    *,
    conditions: Sequence[Condition],
    order: Sequence[tuple[str, bool]],
    visible: tuple[str | None, set[str]] | None,
    offset: int,
    limit: int,
) -> tuple[list[tuple[AutomationRule, Automation]], int]:
    """One page of a tenant's rules (with their automation) and how many match in all. ``order`` is
    (sort key, descending) pairs; ``visible`` is (user id, space ids) for callers who see only their own
    automations and those in their spaces (None: all of them, for tenant admins)."""
    where = [c.clause() for c in conditions]
    if visible is not None:
        user_id, spaces = visible
        where.append(
            or_(Automation.owner_id == user_id, Automation.space_id.is_(None), Automation.space_id.in_(spaces))
        )
    base = (
        select(AutomationRule, Automation)
        .join(Automation, Automation.id == AutomationRule.automation_id)
        .where(AutomationRule.tenant_id == tenant_id, *where)
    )
    keys = [_COLUMNS[key].desc() if desc else _COLUMNS[key].asc() for key, desc in order]
    total = int((await session.execute(select(func.count()).select_from(base.subquery()))).scalar_one())
    rows = (await session.execute(base.order_by(*keys, AutomationRule.id).offset(offset).limit(limit))).all()
    return [(r[0], r[1]) for r in rows], total


async def delete_rule(session: AsyncSession, rule: AutomationRule) -> None:
    await session.delete(rule)


async def next_position(session: AsyncSession, tenant_id: str) -> int:
    stmt = select(func.max(AutomationRule.position)).where(AutomationRule.tenant_id == tenant_id)
    top = (await session.execute(stmt)).scalar_one_or_none()
    return 1 if top is None else int(top) + 1


async def matching(
    session: AsyncSession, tenant_id: str, *, automation_id: str, rulable_type: str, triggers: Sequence[str]
) -> list[AutomationRule]:
    """Rules an event fires, in execution order (position, then id). ``on automation created`` watches every
    automation of the tenant (the rule's own automation exists before the rule), the others their own."""
    scope = or_(AutomationRule.automation_id == automation_id, AutomationRule.trigger == "on automation created")
    stmt = (
        select(AutomationRule)
        .where(
            AutomationRule.tenant_id == tenant_id,
            AutomationRule.rulable_type == rulable_type,
            AutomationRule.trigger.in_(list(triggers)),
            scope,
        )
        .order_by(AutomationRule.position, AutomationRule.id)
    )
    return list((await session.execute(stmt)).scalars())


async def depth_of_run(session: AsyncSession, run_id: str) -> int:
    depth = (await session.execute(select(RuleRun.depth).where(RuleRun.run_id == run_id))).scalar_one_or_none()
    return int(depth or 0)


async def record(session: AsyncSession, evaluation: AutomationRuleEvaluation, *, keep: int) -> None:
    """Store an evaluation, summarise it on its rule (last_fired_at / last_error) and keep the newest ``keep``."""
    session.add(evaluation)
    await session.flush()
    now = utcnow()
    values: dict[str, Any] = (
        {"last_fired_at": now}
        if evaluation.outcome == "fired"
        else {"last_error": evaluation.error, "last_error_at": now}
    )
    await session.execute(update(AutomationRule).where(AutomationRule.id == evaluation.rule_id).values(**values))
    cutoff = (
        await session.execute(
            select(AutomationRuleEvaluation.id)
            .where(AutomationRuleEvaluation.rule_id == evaluation.rule_id)
            .order_by(AutomationRuleEvaluation.id.desc())
            .offset(keep)
            .limit(1)
        )
    ).scalar_one_or_none()
    if cutoff is not None:
        await session.execute(
            delete(AutomationRuleEvaluation).where(
                AutomationRuleEvaluation.rule_id == evaluation.rule_id, AutomationRuleEvaluation.id <= cutoff
            )
        )


async def evaluations(
    session: AsyncSession, rule_id: int, *, offset: int, limit: int
) -> tuple[list[AutomationRuleEvaluation], int]:
    where = AutomationRuleEvaluation.rule_id == rule_id
    total = int(
        (await session.execute(select(func.count()).select_from(AutomationRuleEvaluation).where(where))).scalar_one()
    )
    stmt = select(AutomationRuleEvaluation).where(where).order_by(AutomationRuleEvaluation.id.desc())
    return list((await session.execute(stmt.offset(offset).limit(limit))).scalars()), total
