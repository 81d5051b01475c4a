"""A script's own HTTP answers (run_responses) and the executions listing of the scripting app's log.

The listing reads only the columns a status code needs, never the runs' inputs or the answers' bodies.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from controlplane.core.states import TERMINAL, RunStatus
from controlplane.db.tables import Run, RunResponse


@dataclass(frozen=True)
class Execution:
    """How one run ended, as far as the scripting app's status codes care."""

    run_id: str
    automation_id: str
    status: RunStatus
    errors: list[dict[str, Any]]
    created_at: datetime
    start_time: datetime | None
    answered: bool  # the script wrote an answer (outputs/.response/)
    answer_status: int | None
    answer_error: str | None


_COLUMNS = (
    Run.id,
    Run.automation_id,
    Run.status,
    Run.errors,
    Run.created_at,
    Run.start_time,
    RunResponse.run_id,
    RunResponse.status_code,
    RunResponse.error,
)


def _execution(row: Any) -> Execution:
    run_id, automation_id, status, errors, created_at, start_time, answered, code, error = row
    return Execution(
        run_id=str(run_id),
        automation_id=str(automation_id),
        status=RunStatus(status),
        errors=list(errors or []),
        created_at=created_at,
        start_time=start_time,
        answered=answered is not None,
        answer_status=code,
        answer_error=error,
    )


async def get(session: AsyncSession, run_id: str) -> RunResponse | None:
    return await session.get(RunResponse, run_id)


async def execution(session: AsyncSession, tenant_id: str, run_id: str) -> Execution | None:
    stmt = (
        select(*_COLUMNS)
        .outerjoin(RunResponse, RunResponse.run_id == Run.id)
        .where(Run.id == run_id, Run.tenant_id == tenant_id)
    )
    row = (await session.execute(stmt)).first()
    return _execution(row) if row is not None else None


async def finished_executions(
    session: AsyncSession, tenant_id: str, automation_id: str, version: int, *, limit: int, offset: int
) -> tuple[list[Execution], bool]:
    """Finished runs of one automation version, newest first, and whether more follow this page."""
    stmt = (
        select(*_COLUMNS)
        .outerjoin(RunResponse, RunResponse.run_id == Run.id)
        .where(
            Run.tenant_id == tenant_id,
            Run.automation_id == automation_id,
            Run.automation_version == version,
            Run.status.in_([s.value for s in TERMINAL]),
        )
        .order_by(Run.created_at.desc(), Run.id.desc())
        .offset(offset)
        .limit(limit + 1)
    )
    rows = (await session.execute(stmt)).all()
    return [_execution(r) for r in rows[:limit]], len(rows) > limit
