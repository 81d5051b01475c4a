"""Daily usage aggregates: one row per day, tenant and automation, kept after the runs themselves are deleted.

The engine adds each finished run to its row inside the transaction that records the run's outcome
(``record_run``); the usage API (seed 004's ``GET /automations/usage``) reads them back with ``query``.
Adding is one ``INSERT … ON CONFLICT DO UPDATE SET col = col + excluded.col`` on both dialects, so any
number of replicas finishing runs of one automation at once never lose a count.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from controlplane.core.errors import ValidationFailed
from controlplane.core.states import RunStatus
from controlplane.db.tables import Automation, Run, UsageDaily

# seed-004 metric name -> column it reads, in the order rows are returned for one day
METRICS: dict[str, str] = {
    "runs": "runs",
    "scheduledRuns": "scheduled_runs",
    "triggeredRuns": "triggered_runs",
    "webhookRuns": "webhook_runs",
    "duration": "duration_seconds",
    "bandwidthIn": "rx_bytes",
    "bandwidthOut": "tx_bytes",
}
# the seed's response enum spells two of them in the singular; accepted in filters, answered in the plural
ALIASES = {"scheduledRun": "scheduledRuns", "triggeredRun": "triggeredRuns"}

_FAILED = frozenset({RunStatus.FAILED.value, RunStatus.EXCEEDED_LIMIT.value})
_CONTEXT_COLUMN = {"scheduled": "scheduled_runs", "triggered": "triggered_runs", "webhook": "webhook_runs"}
_ADDED = (
    "runs",
    "scheduled_runs",
    "triggered_runs",
    "webhook_runs",
    "failed_runs",
    "duration_seconds",
    "rx_bytes",
    "tx_bytes",
)


def day_of(moment: datetime) -> str:
    """The usage day (UTC, YYYY-MM-DD) a moment belongs to."""
    return moment.astimezone(UTC).date().isoformat()


async def record_run(
    session: AsyncSession,
    *,
    day: str,
    tenant_id: str,
    automation_id: str,
    automation_name: str,
    owner_id: str,
    context: str,
    status: str,
    duration_seconds: float,
    rx_bytes: int,
    tx_bytes: int,
) -> None:
    """Add one finished run to its day's row (created on first use); atomic under concurrency."""
    values: dict[str, Any] = {
        "day": day,
        "tenant_id": tenant_id,
        "automation_id": automation_id,
        "automation_name": automation_name,
        "owner_id": owner_id,
        "runs": 1,
        "scheduled_runs": 0,
        "triggered_runs": 0,
        "webhook_runs": 0,
        "failed_runs": 1 if status in _FAILED else 0,
        "duration_seconds": max(0.0, float(duration_seconds)),
        "rx_bytes": max(0, int(rx_bytes)),
        "tx_bytes": max(0, int(tx_bytes)),
    }
    if context in _CONTEXT_COLUMN:
        values[_CONTEXT_COLUMN[context]] = 1
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(UsageDaily).values(**values)
    table = UsageDaily.__table__.c
    updates: dict[str, Any] = {name: table[name] + stmt.excluded[name] for name in _ADDED}
    updates["automation_name"] = stmt.excluded.automation_name
    updates["owner_id"] = stmt.excluded.owner_id
    await session.execute(
        stmt.on_conflict_do_update(index_elements=["day", "tenant_id", "automation_id"], set_=updates)
    )


def metric_names(names: set[str] | frozenset[str]) -> list[str]:
    """Canonical metric names asked for, in answer order; an empty set means all of them."""
    wanted = {ALIASES.get(n, n) for n in names}
    unknown = sorted(wanted - set(METRICS))
    if unknown:
        raise ValidationFailed(f"unknown usage metric {', '.join(unknown)}; one of {', '.join(METRICS)}")
    return [n for n in METRICS if n in wanted] if wanted else list(METRICS)


def _day(value: str | None, what: str) -> str | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise ValidationFailed(f"{what} must be a date YYYY-MM-DD, not {value!r}") from None


def _value(name: str, raw: Any) -> int:
    number = float(raw or 0)
    return int(number + 0.5) if name == "duration" else int(number)  # duration: whole seconds, rounded


async def query(
    session: AsyncSession,
    tenant_id: str,
    *,
    names: set[str],
    date_from: str | None,
    date_to: str | None,
    by_automation: bool,
    limit: int | None = None,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Seed-004 usage rows of one tenant, dates inclusive, ordered by date (then automation, then metric).

    Without ``by_automation`` each day's metrics are totals over the tenant's automations; with it every
    row carries ``automation`` ({guid, name, ownerId}: the automation's current name and owner while it
    exists, else the ones recorded with its last run). ``limit``/``offset`` page over the groups (days, or
    day and automation pairs), each of which gives one row per metric asked for.
    """
    wanted = metric_names(names)
    first, last = _day(date_from, "date_from"), _day(date_to, "date_to")
    u = UsageDaily.__table__.c
    conditions = [u.tenant_id == tenant_id]
    if first is not None:
        conditions.append(u.day >= first)
    if last is not None:
        conditions.append(u.day <= last)
    out: list[dict[str, Any]] = []
    if not by_automation:
        sums = [func.sum(u[METRICS[n]]).label(n) for n in wanted]
        stmt = select(u.day, *sums).where(*conditions).group_by(u.day).order_by(u.day).offset(offset).limit(limit)
        for row in (await session.execute(stmt)).mappings():
            out += [{"date": row["day"], "name": n, "value": _value(n, row[n])} for n in wanted]
        return out
    a = Automation.__table__.c
    name = func.coalesce(a.name, u.automation_name).label("automation_name")
    owner = func.coalesce(a.owner_id, u.owner_id).label("automation_owner")
    columns = [u[METRICS[n]].label(n) for n in wanted]
    stmt = (
        select(u.day, u.automation_id, name, owner, *columns)
        .select_from(UsageDaily.__table__.outerjoin(Automation.__table__, a.id == u.automation_id))
        .where(*conditions)
        .order_by(u.day, name, u.automation_id)
        .offset(offset)
        .limit(limit)
    )
    for row in (await session.execute(stmt)).mappings():
        automation = {"guid": row["automation_id"], "name": row["automation_name"], "ownerId": row["automation_owner"]}
        out += [
            {"date": row["day"], "name": n, "value": _value(n, row[n]), "automation": dict(automation)} for n in wanted
        ]
    return out


async def add_api_call(session: AsyncSession, run_id: str) -> None:
    """One more request made with a run's own token (seed 004 metrics.totalApiCalls); atomic."""
    await session.execute(update(Run).where(Run.id == run_id).values(api_calls=Run.api_calls + 1))
