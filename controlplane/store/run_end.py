"""A run's end, written in one transaction: its final status and figures, its artifacts and its script's
answer, its run tokens revoked, its automation's lastRun* fields, and the day's usage aggregates.

Either all of it is committed or none of it: a run is never final without its artifacts or usage, and
never counted in usage without being final. The status moves by compare-and-set (``runs.move``), so when
two replicas try to end one run only the first writes anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from controlplane.core.states import TERMINAL, RunStatus
from controlplane.db.tables import Artifact, Automation, Run, RunResponse
from controlplane.store import runs as run_store
from controlplane.store import tenants as tenant_store
from controlplane.store import usage as usage_store


@dataclass(frozen=True)
class Ending:
    """What the engine learned about a run, ready to be stored."""

    status: RunStatus
    exit_code: int | None
    errors: list[dict[str, Any]]
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    metrics: dict[str, Any] | None = None  # cpu, memory peak, network: merged into the run's metrics
    rx_bytes: int = 0
    tx_bytes: int = 0
    artifacts: tuple[Artifact, ...] = ()
    response: RunResponse | None = None


@dataclass(frozen=True)
class Ended:
    """A run whose end this writer recorded (the others get None)."""

    run_id: str
    tenant_id: str
    tenant_name: str
    automation_id: str
    context: str
    status: RunStatus
    start_time: datetime | None
    stop_time: datetime

    @property
    def duration(self) -> float | None:
        return (self.stop_time - self.start_time).total_seconds() if self.start_time else None


async def record_end(session: AsyncSession, run_id: str, ending: Ending, *, now: datetime) -> Ended | None:
    """Record the end of an unfinished run; None when it is gone or already final (someone else ended it)."""
    run = await run_store.get_any(session, run_id)
    if run is None:
        return None
    current = RunStatus(run.status)
    if current in TERMINAL:
        return None
    values: dict[str, Any] = {
        "exit_code": ending.exit_code,
        "stop_time": now,
        "stdout_bytes": ending.stdout_bytes,
        "stderr_bytes": ending.stderr_bytes,
        "stdout_truncated": ending.stdout_truncated,
        "stderr_truncated": ending.stderr_truncated,
        "errors": ending.errors,
    }
    if ending.metrics is not None:
        values["metrics"] = {**(run.metrics or {}), **ending.metrics}
    if not await run_store.move(session, run_id, current, ending.status, **values):
        return None
    for row in ending.artifacts:
        row.tenant_id = run.tenant_id
        session.add(row)
    if ending.response is not None:
        ending.response.tenant_id = run.tenant_id
        session.add(ending.response)
    await tenant_store.revoke_run_tokens(session, run_id)
    start = run.start_time
    duration = (now - start).total_seconds() if start else None
    await run_store.mirror_last_run(session, run, ending.status, finished_at=now, duration=duration)
    automation = await session.get(Automation, run.automation_id)
    await usage_store.record_run(  # daily aggregates: they outlive the run (retention)
        session,
        day=usage_store.day_of(now),
        tenant_id=run.tenant_id,
        automation_id=run.automation_id,
        automation_name=automation.name if automation is not None else run.title,
        owner_id=(automation.owner_id if automation is not None else run.owner_id) or "",
        context=run.context,
        status=ending.status.value,
        duration_seconds=duration or 0.0,
        rx_bytes=ending.rx_bytes,
        tx_bytes=ending.tx_bytes,
    )
    return await _ended(session, run, ending.status, now)


async def record_unstarted(
    session: AsyncSession, run_id: str, status: RunStatus, entry: dict[str, Any], *, now: datetime
) -> Ended | None:
    """End a run that never got a sandbox (cancelled or expired while queued): no figures, no usage."""
    run = await run_store.get_any(session, run_id)
    if run is None or RunStatus(run.status) != RunStatus.QUEUED:
        return None
    if not await run_store.move(session, run_id, RunStatus.QUEUED, status, stop_time=now, errors=[entry]):
        return None
    await run_store.mirror_last_run(session, run, status, finished_at=now, duration=None)
    return await _ended(session, run, status, now)


async def _ended(session: AsyncSession, run: Run, status: RunStatus, now: datetime) -> Ended:
    tenant = await tenant_store.get_tenant(session, run.tenant_id)
    return Ended(
        run_id=run.id,
        tenant_id=run.tenant_id,
        tenant_name=tenant.name if tenant is not None else run.tenant_id,
        automation_id=run.automation_id,
        context=run.context,
        status=status,
        start_time=run.start_time,
        stop_time=now,
    )
