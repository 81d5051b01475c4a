"""Reads behind a run's export archive and debug record: its timeline, stored log sizes, artifact slices.

Artifacts are read in slices (``substr`` on the blob, on SQLite and PostgreSQL alike) and logs a few stored
chunks at a time, so an export never holds a whole large artifact or log in memory.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import LargeBinary, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from controlplane.db.tables import Artifact, Automation, RunEvent, RunLog


async def events(session: AsyncSession, run_id: str) -> list[tuple[str, datetime, str | None]]:
    """The run's recorded status changes, oldest first: (status, at, replica)."""
    stmt = select(RunEvent.status, RunEvent.at, RunEvent.replica).where(RunEvent.run_id == run_id).order_by(RunEvent.id)
    return [(str(s), at, r) for s, at, r in (await session.execute(stmt)).all()]


async def log_size(session: AsyncSession, run_id: str, stream: str) -> int:
    """Bytes stored for one stream of a run (what its log file in an export holds)."""
    stmt = select(func.coalesce(func.sum(func.length(RunLog.data)), 0)).where(
        RunLog.run_id == run_id, RunLog.stream == stream
    )
    return int((await session.execute(stmt)).scalar_one())


async def artifact_slice(session: AsyncSession, run_id: str, path: str, offset: int, length: int) -> bytes:
    """``length`` bytes of an artifact from ``offset`` (fewer at its end; empty past it)."""
    piece = func.substr(Artifact.data, offset + 1, length, type_=LargeBinary)
    stmt = select(piece).where(Artifact.run_id == run_id, Artifact.path == path)
    value = (await session.execute(stmt)).scalar_one_or_none()
    return bytes(value or b"")


async def log_chunks(
    session: AsyncSession, run_id: str, stream: str, after_seq: int, *, limit: int = 4
) -> list[tuple[int, bytes]]:
    """Up to ``limit`` stored chunks (each at most 256 KiB) of a stream after ``after_seq``, in order."""
    stmt = (
        select(RunLog.seq, RunLog.data)
        .where(RunLog.run_id == run_id, RunLog.stream == stream, RunLog.seq > after_seq)
        .order_by(RunLog.seq)
        .limit(limit)
    )
    return [(int(n), bytes(d)) for n, d in (await session.execute(stmt)).all()]


async def automation_summary(session: AsyncSession, automation_id: str) -> dict[str, Any] | None:
    """What a debug record says about the automation (never its files, which may be large)."""
    a = Automation.__table__.c
    stmt = select(a.name, a.runtime, a.network, a.owner_id, a.space_id).where(a.id == automation_id)
    row = (await session.execute(stmt)).first()
    if row is None:
        return None
    return {
        "name": row.name,
        "runtime": row.runtime,
        "network": row.network,
        "ownerId": row.owner_id,
        "spaceId": row.space_id,
    }
