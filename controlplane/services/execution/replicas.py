"""Replicas: each running control plane records a heartbeat, so the others know whose runs are looked after.

A replica is dead when its heartbeat is older than CP_REPLICA_DEAD_AFTER_SECONDS, or at once when it ran
on this same host and its process no longer exists (a restart after kill -9 need not wait). Runs claimed by
a dead replica are taken over by the engine (services/execution/engine.py: take_over).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from controlplane.core.settings import Settings
from controlplane.db.session import transaction
from controlplane.db.tables import utcnow
from controlplane.store import replicas as store

log = logging.getLogger("controlplane.replicas")
HOST = socket.gethostname()


def new_replica_id() -> str:
    return f"{HOST}-{os.getpid()}-{secrets.token_hex(3)}"


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class Replicas:
    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession], replica_id: str) -> None:
        self.settings = settings
        self.sessions = sessions
        self.id = replica_id
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    async def register(self) -> None:
        async with transaction(self.sessions) as s:
            await store.register(s, self.id, host=HOST, pid=os.getpid(), now=utcnow())

    async def beat(self) -> None:
        async with transaction(self.sessions) as s:
            await store.beat(s, self.id, utcnow())

    async def alive(self) -> set[str]:
        """Ids of replicas that are alive now (this one always is)."""
        now = utcnow()
        cutoff = now - timedelta(seconds=self.settings.replica_dead_after_seconds)
        async with self.sessions() as s:
            rows = await store.all_replicas(s)
        out = {self.id}
        for row in rows:
            if row.heartbeat_at < cutoff:
                continue
            if row.host == HOST and row.id != self.id and row.pid and _process_gone(row.pid):
                continue
            out.add(row.id)
        return out

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="replica-heartbeat")

    async def _loop(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=self.settings.replica_heartbeat_seconds)
            if self._stop.is_set():
                return
            try:
                await self.beat()
                await self._forget_long_dead()
            except Exception:  # a missed beat is retried; others only act after several
                log.warning("heartbeat failed", exc_info=True)

    async def _forget_long_dead(self) -> None:
        cutoff = utcnow() - timedelta(days=1)
        async with transaction(self.sessions) as s:
            await store.forget_silent_since(s, cutoff)

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, timeout=10)
        with contextlib.suppress(Exception):
            async with transaction(self.sessions) as s:
                await store.forget(s, self.id)
