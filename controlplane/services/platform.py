"""The running platform: database, backend, engine and services, started and stopped as one."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from controlplane.backends import get_backend
from controlplane.backends.base import Backend
from controlplane.core import metrics
from controlplane.core.auth import Principal
from controlplane.core.errors import ControlPlaneError
from controlplane.core.settings import Settings
from controlplane.core.states import Role
from controlplane.db.session import create_engine, ping, session_factory
from controlplane.services.automations import catalog
from controlplane.services.automations.service import AutomationService
from controlplane.services.execution.dispatcher import Dispatcher
from controlplane.services.execution.engine import RunEngine
from controlplane.services.execution.replicas import Replicas, new_replica_id
from controlplane.services.rules.engine import RuleEngine
from controlplane.services.runs.exports import ExportService, load_signing_key
from controlplane.services.runs.service import RunService
from controlplane.services.scheduling.scheduler import Scheduler
from controlplane.services.tenancy import secrets
from controlplane.services.tenancy import tenants as tenancy
from controlplane.services.tenancy.ratelimit import RateLimiter
from controlplane.services.upkeep.housekeeping import Housekeeper
from controlplane.store import installation as installation_store
from controlplane.store import tenants as tenant_store

log = logging.getLogger("controlplane")


class Extension(Protocol):
    """A long-lived piece a dialect adds to the platform (for instance the processes dialect's job
    notifier): started once the platform runs, stopped with it, after its runs were stopped."""

    def start(self) -> None: ...

    async def stop(self) -> None: ...


E = TypeVar("E", bound=Extension)


@dataclass
class Platform:
    settings: Settings
    db: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    backend: Backend
    engine: RunEngine
    automations: AutomationService
    runs: RunService
    housekeeper: Housekeeper
    replicas: Replicas
    dispatcher: Dispatcher
    scheduler: Scheduler
    exports: ExportService
    ratelimiter: RateLimiter
    extensions: dict[str, Any] = field(default_factory=dict)  # name -> Extension (dialects add theirs)
    bootstrap_token: str = ""
    bootstrap_generated: bool = False
    rule_engine: RuleEngine | None = None  # seed 003's automation rules, fed by services/events/hooks.py
    backend_probe: asyncio.Task[None] | None = None  # keeps controlplane_backend_up current without probes

    @classmethod
    async def start(cls, settings: Settings, *, backend: Backend | None = None, reconcile: bool = True) -> Platform:
        db = create_engine(
            settings.database_url, pool_size=settings.database_pool_size, timeout=settings.database_timeout_seconds
        )
        sessions = session_factory(db)
        backend = backend or get_backend(settings.backend, settings)
        backend.installation = await installation_store.ensure(sessions)  # scopes its sandboxes and sweeps
        await backend.prepare()
        replicas = Replicas(settings, sessions, new_replica_id())
        await replicas.register()
        engine = RunEngine(settings=settings, sessions=sessions, backend=backend, replica_id=replicas.id)
        dispatcher = Dispatcher(settings, sessions, engine, replica_id=replicas.id, replicas=replicas)
        engine.on_finished = lambda _run_id: dispatcher.wake()  # a slot freed
        runs = RunService(settings, sessions, engine, on_queued=dispatcher.wake)
        platform = cls(
            settings=settings,
            db=db,
            sessions=sessions,
            backend=backend,
            engine=engine,
            automations=AutomationService(settings, sessions),
            runs=runs,
            housekeeper=Housekeeper(settings, sessions, backend),
            replicas=replicas,
            dispatcher=dispatcher,
            scheduler=Scheduler(settings, sessions, runs, replica_id=replicas.id),
            exports=ExportService(settings, sessions, runs, key=load_signing_key(settings)),
            ratelimiter=RateLimiter(settings, sessions),
        )
        secrets.keyring(settings)  # a bad CP_SECRETS_KEYS fails the start; unset, the key file is made now
        _, token, generated = await tenancy.bootstrap(settings, sessions)
        platform.bootstrap_token = token
        platform.rule_engine = RuleEngine(settings, sessions, runs, platform.automations)
        platform.rule_engine.start()
        platform.bootstrap_generated = generated
        if settings.sync_automations_on_start and settings.automations_dir.is_dir():
            report = await catalog.sync(
                platform.automations, await platform.bootstrap_principal(), settings.automations_dir
            )
            log.info("automations directory %s: %s", settings.automations_dir, report.summary())
        if reconcile:
            await engine.reconcile(await replicas.alive())
        replicas.start()
        dispatcher.start()
        dispatcher.wake()  # runs queued while no replica was up
        platform.scheduler.start()
        platform.housekeeper.start()
        if settings.backend_probe_seconds > 0:
            platform.backend_probe = asyncio.create_task(platform._probe_loop(), name="backend-probe")
        return platform

    def extend(self, name: str, factory: Callable[[Platform], E]) -> E:
        """The extension called ``name``, made by ``factory`` and started the first time it is asked for."""
        if name not in self.extensions:
            extension = factory(self)
            extension.start()
            self.extensions[name] = extension
        found: E = self.extensions[name]
        return found

    async def bootstrap_principal(self) -> Principal:
        async with self.sessions() as s:
            tenant = await tenant_store.get_tenant_by_name(s, self.settings.bootstrap_tenant)
            if tenant is None:
                raise ControlPlaneError("the bootstrap tenant is missing")
            admin = await tenant_store.ensure_user(s, tenant.id, self.settings.bootstrap_user, Role.ADMIN.value)
            return Principal(tenant.id, tenant.name, admin.id, Role.ADMIN, token_id="bootstrap")

    async def readiness(self) -> dict[str, Any]:
        checks: dict[str, Any] = {}
        try:
            async with asyncio.timeout(self.settings.database_timeout_seconds):
                await ping(self.sessions)
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"unavailable: {type(exc).__name__}"
        checks["backend"] = await self.probe_backend()
        return checks

    async def probe_backend(self) -> str:
        """Ping the engine: "ok" or why not; controlplane_backend_up follows (the alert's source)."""
        try:
            async with asyncio.timeout(5):
                await self.backend.ping()
            state = "ok"
        except Exception as exc:
            state = f"unavailable: {exc}"
        metrics.BACKEND_UP.set(1 if state == "ok" else 0)
        return state

    async def _probe_loop(self) -> None:
        """/readyz sets the gauge when something probes it (the chart's readiness probe); this keeps it current
        for a server nobody probes, every CP_BACKEND_PROBE_SECONDS."""
        while True:
            await self.probe_backend()
            await asyncio.sleep(self.settings.backend_probe_seconds)

    async def close(self) -> None:
        if self.backend_probe is not None:
            self.backend_probe.cancel()
            await asyncio.gather(self.backend_probe, return_exceptions=True)
        if self.rule_engine is not None:  # first: runs stopped by the shutdown fire no rule
            await self.rule_engine.close()
        await self.scheduler.stop()  # first: a pass in progress finishes its submits, the lease is released
        await self.dispatcher.stop()
        await self.housekeeper.stop()
        await self.engine.shutdown()
        for extension in reversed(list(self.extensions.values())):  # after the engine: runs it stopped count
            await extension.stop()
        await self.replicas.stop()
        await self.backend.close()
        await self.db.dispose()
