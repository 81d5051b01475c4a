"""The run engine on the fake backend: every byte a run writes is stored, whatever the flush timing."""

from __future__ import annotations

import json

import pytest

from controlplane.core.states import RunContext
from controlplane.services.execution import output as output_module
from controlplane.services.platform import Platform
from controlplane.store import runs as run_store
from tests.support.platform import PlatformFactory


async def _automation(platform: Platform, behaviour: dict[str, object]) -> str:
    from controlplane.core.schemas.automations import AutomationCreate

    admin = await platform.bootstrap_principal()
    body = AutomationCreate(name="a", files={"main.py": "", "fake.json": json.dumps(behaviour)}, entrypoint="main.py")
    return (await platform.automations.create(admin, body)).id


@pytest.mark.parametrize("flush_seconds", [0.0001, 0.001, 0.25])
async def test_no_output_is_lost_at_the_end_of_a_run(
    make_platform: PlatformFactory, sqlite_url: str, monkeypatch: pytest.MonkeyPatch, flush_seconds: float
) -> None:
    # a flusher firing constantly overlaps the final flush; the stored log must still be complete
    monkeypatch.setattr(output_module, "FLUSH_SECONDS", flush_seconds)
    platform = await make_platform(sqlite_url)
    stdout = "".join(f"line {i}\n" for i in range(2000))
    aid = await _automation(platform, {"stdout": stdout, "stderr": "warn\n"})
    admin = await platform.bootstrap_principal()
    for _ in range(15):
        run = await platform.runs.submit(admin, aid, context=RunContext.API_SYNC)
        await platform.runs.wait(run)
        async with platform.sessions() as s:
            out, _ = await run_store.read_log(s, run.id, "stdout")
            err, _ = await run_store.read_log(s, run.id, "stderr")
            row = await run_store.get_any(s, run.id)
        assert row is not None and row.status == "finished with warnings"
        assert out.decode() == stdout and err == b"warn\n"
        assert row.stdout_bytes == len(stdout)


@pytest.mark.parametrize(
    ("kind", "code"),
    [("unavailable", "BACKEND_UNAVAILABLE"), ("failed", "LAUNCH_FAILED"), ("image", "SANDBOX_IMAGE_MISSING")],
)
async def test_launch_failures_are_recorded_not_lost(
    make_platform: PlatformFactory, sqlite_url: str, kind: str, code: str
) -> None:
    platform = await make_platform(sqlite_url)
    admin = await platform.bootstrap_principal()
    aid = await _automation(platform, {"launchError": kind})
    run = await platform.runs.submit(admin, aid, context=RunContext.API_SYNC)
    await platform.runs.wait(run)
    async with platform.sessions() as s:
        row = await run_store.get_any(s, run.id)
    assert row is not None and row.status == "failed", row and row.errors
    assert row.errors[0]["code"] == code and row.stop_time is not None
    assert await platform.backend.list_sandboxes() == []


async def test_every_final_run_is_added_to_the_daily_usage(make_platform: PlatformFactory, database_url: str) -> None:
    from controlplane.store import usage as usage_store

    platform = await make_platform(database_url)
    aid = await _automation(platform, {"stdout": "x", "exitCode": 0})
    admin = await platform.bootstrap_principal()
    for context in (RunContext.API_SYNC, RunContext.API_SYNC, RunContext.SCHEDULED):
        run = await platform.runs.submit(admin, aid, context=context)
        assert await platform.engine.wait(run.id, 30)
    async with platform.sessions() as s:
        rows = await usage_store.query(
            s, admin.tenant_id, names=set(), date_from=None, date_to=None, by_automation=True
        )
    values = {r["name"]: r["value"] for r in rows}
    assert values["runs"] == 3 and values["scheduledRuns"] == 1 and values["webhookRuns"] == 0
    assert rows[0]["automation"]["guid"] == aid and rows[0]["automation"]["name"] == "a"
