"""Replicas' heartbeats: one row per running control plane."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from controlplane.db.tables import Replica


async def register(s: AsyncSession, replica_id: str, *, host: str, pid: int, now: datetime) -> None:
    s.add(Replica(id=replica_id, host=host, pid=pid, started_at=now, heartbeat_at=now))


async def beat(s: AsyncSession, replica_id: str, now: datetime) -> None:
    await s.execute(update(Replica).where(Replica.id == replica_id).values(heartbeat_at=now))


async def all_replicas(s: AsyncSession) -> list[Replica]:
    return list((await s.execute(select(Replica))).scalars())


async def forget(s: AsyncSession, replica_id: str) -> None:
    await s.execute(delete(Replica).where(Replica.id == replica_id))


async def forget_silent_since(s: AsyncSession, cutoff: datetime) -> None:
    await s.execute(delete(Replica).where(Replica.heartbeat_at < cutoff))
