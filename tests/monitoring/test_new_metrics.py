"""The series added for the dashboard and the alerts, on the fake backend: configured limits, sandbox
seconds per tenant, runs stuck past their deadline, and whether the engine answered the readiness check."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

from sqlalchemy import update

from controlplane.core.metrics import REGISTRY
from controlplane.core.schemas.automations import AutomationCreate
from controlplane.core.states import RunContext
from controlplane.db.tables import Run, utcnow
from controlplane.services.platform import Platform
from tests.support.platform import PlatformFactory, client_for


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def automation(platform: Platform, name: str, **behaviour: object) -> str:
    admin = await platform.bootstrap_principal()
    body = AutomationCreate(name=name, files={"main.py": "", "fake.json": json.dumps(behaviour)}, entrypoint="main.py")
    return (await platform.automations.create(admin, body)).id


async def test_limits_are_exported(make_platform: PlatformFactory, sqlite_url: str) -> None:
    await make_platform(
        sqlite_url, sync_concurrency_per_tenant=4, background_concurrency_total=17, queue_max_per_tenant=33
    )
    assert sample("controlplane_concurrency_limit", kind="sync_per_tenant") == 4
    assert sample("controlplane_concurrency_limit", kind="background_total") == 17
    assert sample("controlplane_concurrency_limit", kind="queue_per_tenant") == 33


async def test_sandbox_seconds_per_tenant(make_platform: PlatformFactory, sqlite_url: str) -> None:
    platform = await make_platform(sqlite_url)
    admin = await platform.bootstrap_principal()
    tenant = platform.settings.bootstrap_tenant
    aid = await automation(platform, "nap", sleep=0.3)
    before = sample("controlplane_run_seconds_total", tenant=tenant)
    run = await platform.runs.submit(admin, aid, context=RunContext.API_SYNC)
    assert await platform.engine.wait(run.id, 10)
    assert sample("controlplane_run_seconds_total", tenant=tenant) >= before + 0.3


async def test_runs_overdue(make_platform: PlatformFactory, database_url: str) -> None:
    platform = await make_platform(database_url)
    admin = await platform.bootstrap_principal()
    aid = await automation(platform, "hangs", sleep=60)
    run = await platform.runs.submit(admin, aid, context=RunContext.API_ASYNC)
    await platform.dispatcher.pump()
    assert sample("controlplane_runs_overdue") == 0
    # its deadline passed long ago and it is still not finished: what a hung supervisor looks like
    async with platform.sessions() as s, s.begin():
        await s.execute(update(Run).where(Run.id == run.id).values(deadline_at=utcnow() - timedelta(minutes=5)))
    await platform.dispatcher.pump()
    assert sample("controlplane_runs_overdue") == 1
    # just past the deadline is the normal kill in progress, not stuck
    async with platform.sessions() as s, s.begin():
        await s.execute(update(Run).where(Run.id == run.id).values(deadline_at=utcnow() - timedelta(seconds=5)))
    await platform.dispatcher.pump()
    assert sample("controlplane_runs_overdue") == 0
    async with platform.sessions() as s, s.begin():
        await s.execute(update(Run).where(Run.id == run.id).values(deadline_at=utcnow() - timedelta(minutes=5)))
    await platform.runs.stop(admin, aid, run.id)
    assert await platform.engine.wait(run.id, 10)
    await platform.dispatcher.pump()
    assert sample("controlplane_runs_overdue") == 0  # finished runs are never overdue


async def test_backend_up_follows_readiness(make_platform: PlatformFactory, sqlite_url: str) -> None:
    platform = await make_platform(sqlite_url)
    async with client_for(platform, token=None) as client:
        assert (await client.get("/readyz")).status_code == 200
        assert sample("controlplane_backend_up") == 1
        platform.backend.available = False  # type: ignore[attr-defined]
        r = await client.get("/readyz")
        assert r.status_code == 503 and r.json()["checks"]["backend"].startswith("unavailable")
        assert sample("controlplane_backend_up") == 0
        platform.backend.available = True  # type: ignore[attr-defined]
        assert (await client.get("/readyz")).status_code == 200
        assert sample("controlplane_backend_up") == 1


async def test_backend_up_is_kept_current_without_readiness_probes(
    make_platform: PlatformFactory, sqlite_url: str
) -> None:
    platform = await make_platform(sqlite_url, backend_probe_seconds=0.05)
    assert platform.backend_probe is not None

    async def becomes(value: float) -> None:
        for _ in range(200):
            if sample("controlplane_backend_up") == value:
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"controlplane_backend_up never became {value}")

    await becomes(1)
    platform.backend.available = False  # type: ignore[attr-defined]
    await becomes(0)
    platform.backend.available = True  # type: ignore[attr-defined]
    await becomes(1)
