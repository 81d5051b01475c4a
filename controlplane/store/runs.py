"""Runs, their log chunks and their artifacts."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import KeyedColumnElement

from controlplane.core.filters import PageQuery
from controlplane.core.states import ACTIVE, TERMINAL, RunStatus, transition
from controlplane.db.tables import (
    Artifact,
    Automation,
    ProcessJob,
    RuleRun,
    Run,
    RunEvent,
    RunLog,
    RunResponse,
    Token,
    utcnow,
)
from controlplane.store.query import Listing, PageResult

_c = Run.__table__.c
FILTER_COLUMNS: dict[str, KeyedColumnElement[Any]] = {
    "status": _c.status,
    "context": _c.context,
    "startTime": _c.start_time,
    "title": _c.title,
    "spaceId": _c.space_id,
    "ownerId": _c.owner_id,
    "executedById": _c.executed_by_id,
    "createdAt": _c.created_at,
    "exitCode": _c.exit_code,
    # seed 004's billable: the run got a sandbox (and so counts in usage), i.e. it has a startTime
    "billable": _c.start_time.is_not(None).label("billable"),
}
SORT_COLUMNS: dict[str, KeyedColumnElement[Any]] = {
    "id": _c.id,
    "status": _c.status,
    "startTime": _c.start_time,
    "createdAt": _c.created_at,
}
LISTING = Listing(FILTER_COLUMNS, SORT_COLUMNS, _c.id)


async def get(session: AsyncSession, tenant_id: str, run_id: str) -> Run | None:
    row = await session.get(Run, run_id)
    return row if row is not None and row.tenant_id == tenant_id else None


async def get_any(session: AsyncSession, run_id: str) -> Run | None:
    return await session.get(Run, run_id)


async def list_page(
    session: AsyncSession,
    tenant_id: str,
    automation_id: str,
    query: PageQuery,
) -> PageResult:
    stmt = select(Run).where(Run.tenant_id == tenant_id, Run.automation_id == automation_id)
    return await LISTING.page(session, stmt, query)


async def move(
    session: AsyncSession,
    run_id: str,
    from_: RunStatus | Iterable[RunStatus],
    to: RunStatus,
    **fields: Any,
) -> bool:
    """The one way a run's status changes: every move from ``from_`` to ``to`` must be in the transition
    table (core/states.py; InvalidTransition otherwise), then one compare-and-set UPDATE that changes the row
    only while its status is still one of ``from_``, with ``fields`` written alongside, and one event on the
    run's timeline. Returns whether this writer won, so two writers racing on one run cannot both win."""
    sources = [from_] if isinstance(from_, RunStatus) else list(from_)
    for source in sources:
        transition(source, to)
    return await _update(session, run_id, expect=sources, status=to.value, **fields)


async def set_fields(
    session: AsyncSession, run_id: str, *, expect: Iterable[RunStatus] | None = None, **values: Any
) -> bool:
    """UPDATE fields of one run other than its status (``move`` changes that); with ``expect``, only while its
    status is one of those. Returns whether a row changed."""
    if "status" in values:
        raise ValueError("a run's status changes only through store.runs.move()")
    return await _update(session, run_id, expect=expect, **values)


async def _update(session: AsyncSession, run_id: str, *, expect: Iterable[RunStatus] | None, **values: Any) -> bool:
    stmt = update(Run).where(Run.id == run_id)
    if expect is not None:
        stmt = stmt.where(Run.status.in_([s.value for s in expect]))
    values.setdefault("updated_at", utcnow())
    result = await session.execute(stmt.values(**values))
    changed = bool(getattr(result, "rowcount", 0))
    if changed and "status" in values:  # the run's timeline (debug record): one event per status change
        session.add(
            RunEvent(run_id=run_id, status=values["status"], at=values["updated_at"], replica=values.get("claimed_by"))
        )
    return changed


async def adopt(session: AsyncSession, run_id: str, *, status: str, owner: str | None, replica_id: str) -> bool:
    """Take an unfinished run over from ``owner`` (a dead replica, or none): compare-and-set on its owner and
    status, so two replicas adopting the same run never both win. Its status does not change."""
    owner_clause = Run.claimed_by.is_(None) if owner is None else Run.claimed_by == owner
    result = await session.execute(
        update(Run)
        .where(Run.id == run_id, Run.status == status, owner_clause)
        .values(claimed_by=replica_id, updated_at=utcnow())
    )
    return bool(getattr(result, "rowcount", 0))


async def unfinished_not_owned(session: AsyncSession, alive: set[str]) -> list[Run]:
    """Runs a live replica may have to take over: active ones, and synchronous runs still queued (their
    caller's replica claimed them at submit), whose owner is not among ``alive``."""
    stmt = select(Run).where(
        Run.status.in_([x.value for x in ACTIVE]) | ((Run.status == RunStatus.QUEUED.value) & Run.synchronous.is_(True))
    )
    return [r for r in (await session.execute(stmt)).scalars() if r.claimed_by not in alive]


async def unfinished_among(session: AsyncSession, run_ids: Iterable[str]) -> set[str]:
    stmt = select(Run.id).where(Run.id.in_(list(run_ids)), Run.status.not_in([x.value for x in TERMINAL]))
    return {str(r) for r in (await session.execute(stmt)).scalars()}


async def told_to_stop(session: AsyncSession, replica_id: str) -> list[tuple[str, str]]:
    """(run id, tenant id) of the 'must stop' runs ``replica_id`` owns."""
    stmt = select(Run.id, Run.tenant_id).where(Run.status == RunStatus.MUST_STOP.value, Run.claimed_by == replica_id)
    return [(str(r), str(t)) for r, t in (await session.execute(stmt)).all()]


async def mirror_last_run(
    session: AsyncSession,
    run: Run,
    status: RunStatus,
    *,
    finished_at: datetime | None = None,
    duration: float | None = None,
) -> None:
    """Keep the automation's lastRun* fields on its latest run."""
    values: dict[str, Any] = {"last_run_status": status.value}
    if finished_at is not None:
        values["last_run_at"] = finished_at
        values["last_run_duration"] = duration
    await session.execute(
        update(Automation).where(Automation.id == run.automation_id, Automation.last_run_id == run.id).values(**values)
    )


async def point_last_run(session: AsyncSession, run: Run) -> None:
    """A new run is its automation's latest; seed 004's lastRunStatus has no "queued" (not started yet)."""
    await session.execute(
        update(Automation)
        .where(Automation.id == run.automation_id)
        .values(last_run_id=run.id, last_run_status=RunStatus.NOT_STARTED.value)
    )


async def in_status(session: AsyncSession, statuses: Iterable[RunStatus]) -> list[Run]:
    stmt = select(Run).where(Run.status.in_([s.value for s in statuses]))
    return list((await session.execute(stmt)).scalars())


async def count_active_for_automation(session: AsyncSession, automation_id: str, statuses: Iterable[RunStatus]) -> int:
    stmt = (
        select(func.count())
        .select_from(Run)
        .where(Run.automation_id == automation_id, Run.status.in_([s.value for s in statuses]))
    )
    return int((await session.execute(stmt)).scalar_one())


# --- deleting history (retention, change-owner) ----------------------------------------------------

_FINAL = sorted(s.value for s in TERMINAL)


async def final_ids_of(session: AsyncSession, automation_id: str) -> list[str]:
    """The automation's runs that have ended (its history; unfinished runs are not history yet)."""
    stmt = select(Run.id).where(Run.automation_id == automation_id, Run.status.in_(_FINAL))
    return list((await session.execute(stmt)).scalars())


async def expired(session: AsyncSession, tenant_id: str, cutoff: datetime, limit: int) -> list[tuple[str, str]]:
    """(run id, automation id) of up to ``limit`` of the tenant's oldest final runs created and ended before
    ``cutoff`` (retention)."""
    stmt = (
        select(Run.id, Run.automation_id)
        .where(
            Run.tenant_id == tenant_id,
            Run.status.in_(_FINAL),
            Run.created_at < cutoff,
            or_(Run.stop_time.is_(None), Run.stop_time < cutoff),
        )
        .order_by(Run.created_at, Run.id)
        .limit(limit)
    )
    return [(str(r), str(a)) for r, a in (await session.execute(stmt)).all()]


async def versions_in_use(session: AsyncSession, automation_id: str) -> set[int]:
    stmt = select(Run.automation_version).where(Run.automation_id == automation_id).distinct()
    return {int(v) for v in (await session.execute(stmt)).scalars()}


async def delete_final(session: AsyncSession, run_ids: list[str], automation_ids: list[str]) -> int:
    """Delete final runs with their log chunks, artifacts, responses, events, run tokens, process jobs and rule
    links (explicitly, no reliance on cascades) and clear ``automations.last_run_id`` where it points at one of
    them. A run that is not final is never deleted, whatever the caller passed. ``automation_ids``: those the
    runs belong to (so the lastRun update goes by primary key). Returns how many runs went."""
    if not run_ids:
        return 0
    quiet = {"synchronize_session": False}
    for child in (RunLog, Artifact, RunResponse, RunEvent, Token, ProcessJob, RuleRun):
        await session.execute(delete(child).where(child.run_id.in_(run_ids)).execution_options(**quiet))
    await session.execute(
        update(Automation)
        .where(Automation.id.in_(automation_ids), Automation.last_run_id.in_(run_ids))
        .values(last_run_id=None)
        .execution_options(**quiet)
    )
    result = await session.execute(
        delete(Run).where(Run.id.in_(run_ids), Run.status.in_(_FINAL)).execution_options(**quiet)
    )
    return int(getattr(result, "rowcount", 0) or 0)


# --- logs -------------------------------------------------------------------------------------------


async def append_log(session: AsyncSession, run_id: str, stream: str, seq: int, data: bytes) -> None:
    session.add(RunLog(run_id=run_id, stream=stream, seq=seq, data=data))


async def log_positions(session: AsyncSession, run_id: str) -> dict[str, tuple[int, int]]:
    """Per stream: the last chunk's seq and the bytes stored, so a resumed supervisor appends after them."""
    stmt = (
        select(RunLog.stream, func.max(RunLog.seq), func.coalesce(func.sum(func.length(RunLog.data)), 0))
        .where(RunLog.run_id == run_id)
        .group_by(RunLog.stream)
    )
    return {str(stream): (int(last), int(stored)) for stream, last, stored in (await session.execute(stmt)).all()}


async def read_log(
    session: AsyncSession, run_id: str, stream: str, *, after_seq: int = -1, max_bytes: int | None = None
) -> tuple[bytes, int]:
    """Stored bytes of a stream from chunk ``after_seq + 1`` on (up to ``max_bytes``) and the last seq read."""
    stmt = (
        select(RunLog.seq, RunLog.data)
        .where(RunLog.run_id == run_id, RunLog.stream == stream, RunLog.seq > after_seq)
        .order_by(RunLog.seq)
    )
    out = bytearray()
    last = after_seq
    for seq, data in (await session.execute(stmt)).all():
        out += data
        last = seq
        if max_bytes is not None and len(out) >= max_bytes:
            break
    return bytes(out if max_bytes is None else out[:max_bytes]), last


async def stream_log(session: AsyncSession, run_id: str, stream: str, after_seq: int) -> list[tuple[int, bytes]]:
    stmt = (
        select(RunLog.seq, RunLog.data)
        .where(RunLog.run_id == run_id, RunLog.stream == stream, RunLog.seq > after_seq)
        .order_by(RunLog.seq)
        .limit(64)
    )
    return [(int(s), bytes(d)) for s, d in (await session.execute(stmt)).all()]


# --- artifacts --------------------------------------------------------------------------------------


async def add_artifact(session: AsyncSession, artifact: Artifact) -> None:
    session.add(artifact)
    await session.flush()


async def artifact_meta(session: AsyncSession, run_id: str) -> list[tuple[str, int, str, str]]:
    stmt = (
        select(Artifact.path, Artifact.size, Artifact.sha256, Artifact.content_type)
        .where(Artifact.run_id == run_id)
        .order_by(Artifact.path)
    )
    return [(p, int(s), h, ct) for p, s, h, ct in (await session.execute(stmt)).all()]


async def get_artifact(session: AsyncSession, run_id: str, path: str) -> Artifact | None:
    stmt = select(Artifact).where(Artifact.run_id == run_id, Artifact.path == path)
    return (await session.execute(stmt)).scalar_one_or_none()
