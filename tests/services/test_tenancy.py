"""Tenant configuration (maxima, DSN, retention), bootstrap, and the archive retention pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane.core.errors import NotFound, ValidationFailed
from controlplane.core.schemas.automations import AutomationCreate
from controlplane.core.states import RunContext
from controlplane.services.platform import Platform
from controlplane.services.tenancy import tenants as tenancy
from tests.support.platform import PlatformFactory, make_settings


async def test_tenant_maxima_bound_automations_and_dsn_reaches_runs(platform: Platform) -> None:
    name = platform.settings.bootstrap_tenant
    shown = await tenancy.configure_tenant(
        platform.sessions,
        platform.settings,
        tenant=name,
        limits={"maxMemoryMb": 300, "maxPids": 50},
        dsn="SERVER=db;UID=x",
    )
    assert shown["limits"] == {"maxMemoryMb": 300, "maxPids": 50}
    admin = await platform.bootstrap_principal()
    with pytest.raises(ValidationFailed, match="300"):
        await platform.automations.create(admin, AutomationCreate(name="big", code="", resources={"memoryMb": 400}))
    fine = await platform.automations.create(admin, AutomationCreate(name="ok", code="", resources={"memoryMb": 300}))
    # an automation that asks for nothing gets the default, clipped to the tenant's maximum
    assert fine.resources.memory_mb == 300 and fine.resources.pids == 50
    run = await platform.runs.submit(admin, fine.id, context=RunContext.API_SYNC)
    await platform.runs.wait(run)
    spec = platform.backend.launched[-1]  # type: ignore[attr-defined]
    assert spec.env["JETQUERY_DSN"] == "SERVER=db;UID=x" and spec.resources.memory_mb == 300


async def test_configure_refuses_more_than_the_platform_allows(platform: Platform) -> None:
    with pytest.raises(ValidationFailed, match="maxCpus"):
        await tenancy.configure_tenant(platform.sessions, platform.settings, tenant="default", limits={"maxCpus": 99.0})
    with pytest.raises(NotFound):
        await tenancy.configure_tenant(platform.sessions, platform.settings, tenant="nobody", dsn="x")


async def test_archive_retention_pass_sweeps_every_tenant(platform: Platform) -> None:
    await tenancy.configure_tenant(
        platform.sessions, platform.settings, tenant="short", archive_retention_days=2, create=True
    )
    removed = await platform.housekeeper.sweep_archives()
    assert set(removed) == {"default", "short"}
    sweeps = dict(platform.backend.archive_sweeps)  # type: ignore[attr-defined]
    by_name = {}
    async with platform.sessions() as s:
        from controlplane.store import tenants as store

        for tenant_name in ("default", "short"):
            row = await store.get_tenant_by_name(s, tenant_name)
            assert row is not None
            by_name[tenant_name] = sweeps[row.id]
    assert by_name == {"default": platform.settings.archive_retention_days, "short": 2}


async def test_bootstrap_token_is_generated_once_and_kept(
    make_platform: PlatformFactory, sqlite_url: str, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, sqlite_url, bootstrap_token=None)
    from controlplane.db.session import create_engine, session_factory

    engine = create_engine(sqlite_url)
    sessions = session_factory(engine)
    try:
        _, first, generated = await tenancy.bootstrap(settings, sessions)
        _, again, generated_again = await tenancy.bootstrap(settings, sessions)
        assert generated and not generated_again and first == again
        assert (settings.data_dir / "admin-token").read_text().strip() == first
        assert oct((settings.data_dir / "admin-token").stat().st_mode & 0o777) == "0o600"
        principal = await tenancy.authenticate(sessions, f"Bearer {first}")
        assert principal.role.value == "admin"
    finally:
        await engine.dispose()
