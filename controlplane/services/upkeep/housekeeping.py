"""Periodic upkeep, one pass every CP_HOUSEKEEPING_INTERVAL_SECONDS: the ARCHIVE clean-up of every tenant
(seed 000: "cleaned automatically according to the data retention policy") and run retention
(``services.retention``: old final runs with their logs and artifacts; usage aggregates stay).

A tenant's ARCHIVE retention is its ``archiveRetentionDays`` setting, else CP_ARCHIVE_RETENTION_DAYS. One
sweep per tenant per pass; a failing tenant, or a failing part of the pass, is logged and retried on the
next pass without holding the others up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from controlplane.backends.base import Backend
from controlplane.core import metrics
from controlplane.core.errors import BackendError
from controlplane.core.settings import Settings
from controlplane.db.tables import utcnow
from controlplane.services.upkeep.retention import Retention
from controlplane.store import tenants as tenant_store

log = logging.getLogger("controlplane.housekeeping")


class Housekeeper:
    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        backend: Backend,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.backend = backend
        self.retention = Retention(settings, sessions)
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    async def sweep_archives(self) -> dict[str, int]:
        """One pass over every tenant; returns files removed per tenant name."""
        async with self.sessions() as s:
            tenants = await tenant_store.all_tenants(s)
        removed: dict[str, int] = {}
        for tenant in tenants:
            try:
                days = int((tenant.settings or {}).get("archiveRetentionDays", self.settings.archive_retention_days))
                removed[tenant.name] = await self.backend.clean_archive(tenant.id, older_than_days=days)
            except BackendError:
                metrics.BACKEND_ERRORS.labels("archive_cleanup").inc()
                log.warning("archive clean-up of tenant %s failed; retried next pass", tenant.name, exc_info=True)
            except Exception:
                log.exception("archive clean-up of tenant %s failed; retried next pass", tenant.name)
        if any(removed.values()):
            log.info("archive clean-up removed %s", {k: v for k, v in removed.items() if v})
        return removed

    async def sweep(self, now: datetime | None = None) -> dict[str, dict[str, int]]:
        """One housekeeping pass: ARCHIVE clean-up, then run retention. Per part: count per tenant name;
        a part that fails as a whole is logged and missing from the answer, the other still runs."""
        now = now or utcnow()
        done: dict[str, dict[str, int]] = {}
        try:
            done["archives"] = await self.sweep_archives()
        except Exception:
            log.exception("archive clean-up pass failed; retried next pass")
        try:
            done["runs"] = await self.retention.sweep(now)
        except Exception:
            log.exception("run retention pass failed; retried next pass")
        return done

    def start(self) -> None:
        if self.settings.housekeeping_interval_seconds > 0:
            self._task = asyncio.create_task(self._loop(), name="housekeeping")

    async def _loop(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=self.settings.housekeeping_interval_seconds)
            if self._stop.is_set():
                return
            try:
                await self.sweep()
            except Exception:  # the loop must outlive any one bad pass
                log.exception("housekeeping pass failed")

    async def stop(self) -> None:
        """End the loop between passes; a pass in progress (deleting in transactions) is never cut."""
        self._stop.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout=30)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
