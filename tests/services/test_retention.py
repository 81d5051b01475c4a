"""Run retention on the fake backend, on SQLite and PostgreSQL: what goes, what stays, in bounded batches."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from controlplane.core.schemas.automations import AutomationCreate
from controlplane.core.states import RunContext, RunStatus
from controlplane.db.session import transaction
from controlplane.db.tables import Artifact, Automation, Run, RunLog, Tenant, Token, UsageDaily, new_id, utcnow
from controlplane.services.platform import Platform
from controlplane.services.tenancy import tenants as tenancy
from controlplane.services.upkeep.retention import Retention
from controlplane.store import usage
from tests.support.platform import PlatformFactory, client_for

SCRIPT = {"stdout": "out\n", "stderr": "warn\n", "artifacts": {"report.txt": "r", "sub/n.txt": "n"}}


async def _automation(platform: Platform, name: str = "a") -> str:
    admin = await platform.bootstrap_principal()
    body = AutomationCreate(name=name, files={"main.py": "", "fake.json": json.dumps(SCRIPT)}, entrypoint="main.py")
    return (await platform.automations.create(admin, body)).id


async def _runs(platform: Platform, automation_id: str, n: int) -> list[str]:
    """n synchronous runs through the platform, each with log chunks, artifacts and a run token."""
    admin = await platform.bootstrap_principal()
    ids = []
    for _ in range(n):
        run = await platform.runs.submit(admin, automation_id, context=RunContext.API_SYNC)
        await platform.runs.wait(run)
        ids.append(run.id)
    return ids


async def _backdate(platform: Platform, run_ids: list[str], days: float) -> None:
    then = utcnow() - timedelta(days=days)
    async with transaction(platform.sessions) as s:
        await s.execute(update(Run).where(Run.id.in_(run_ids)).values(created_at=then, start_time=then, stop_time=then))


async def _unfinished_old_run(platform: Platform, automation_id: str, status: RunStatus, days: float) -> str:
    then = utcnow() - timedelta(days=days)
    async with transaction(platform.sessions) as s:
        automation = await s.get(Automation, automation_id)
        assert automation is not None
        run = Run(
            id=new_id(),
            tenant_id=automation.tenant_id,
            automation_id=automation_id,
            automation_version=1,
            status=status.value,
            context=RunContext.API_ASYNC.value,
            timeout_seconds=60,
            created_at=then,
            start_time=then if status != RunStatus.QUEUED else None,
        )
        s.add(run)
    return run.id


async def _left(platform: Platform, run_ids: list[str]) -> dict[str, int]:
    async with platform.sessions() as s:

        async def count(model: Any, column: Any) -> int:
            stmt = select(func.count()).select_from(model).where(column.in_(run_ids))
            return int((await s.execute(stmt)).scalar_one())

        return {
            "runs": await count(Run, Run.id),
            "logs": await count(RunLog, RunLog.run_id),
            "artifacts": await count(Artifact, Artifact.run_id),
            "tokens": await count(Token, Token.run_id),
        }


async def _usage_rows(platform: Platform) -> list[tuple[Any, ...]]:
    async with platform.sessions() as s:
        rows = (await s.execute(select(UsageDaily).order_by(UsageDaily.day, UsageDaily.automation_id))).scalars()
        return [
            (r.day, r.tenant_id, r.automation_id, r.runs, r.failed_runs, r.duration_seconds, r.rx_bytes, r.tx_bytes)
            for r in rows
        ]


async def _record_usage(platform: Platform, run_ids: list[str]) -> None:
    """What finalize records for each run (idempotent if the engine already does it: compared before/after)."""
    async with transaction(platform.sessions) as s:
        for run_id in run_ids:
            run = await s.get(Run, run_id)
            assert run is not None and run.stop_time is not None
            await usage.record_run(
                s,
                day=usage.day_of(run.stop_time),
                tenant_id=run.tenant_id,
                automation_id=run.automation_id,
                automation_name=run.title,
                owner_id=run.owner_id or "",
                context=run.context,
                status=run.status,
                duration_seconds=1.5,
                rx_bytes=10,
                tx_bytes=20,
            )


async def _set_tenant(platform: Platform, name: str, **values: Any) -> None:
    async with transaction(platform.sessions) as s:
        tenant = (await s.execute(select(Tenant).where(Tenant.name == name))).scalar_one()
        tenant.settings = {**(tenant.settings or {}), **values}


async def test_old_final_runs_go_with_their_logs_and_artifacts(platform: Platform) -> None:
    aid = await _automation(platform)
    old = await _runs(platform, aid, 3)
    recent = await _runs(platform, aid, 2)
    await _backdate(platform, old, days=31)
    await _backdate(platform, recent[:1], days=29)  # inside the 30-day default
    stuck = [
        await _unfinished_old_run(platform, aid, status, days=400)
        for status in (RunStatus.QUEUED, RunStatus.STARTING, RunStatus.RUNNING, RunStatus.MUST_STOP)
    ]
    before = await _left(platform, old)
    assert before["runs"] == 3 and before["logs"] >= 6 and before["artifacts"] == 6 and before["tokens"] >= 3
    await _record_usage(platform, old + recent)
    usage_before = await _usage_rows(platform)

    deleted = await platform.housekeeper.retention.sweep()

    assert deleted == {"default": 3}
    assert await _left(platform, old) == {"runs": 0, "logs": 0, "artifacts": 0, "tokens": 0}
    kept = await _left(platform, recent)
    assert kept["runs"] == 2 and kept["logs"] >= 4 and kept["artifacts"] == 4
    assert (await _left(platform, stuck))["runs"] == 4
    # the deleted runs' days keep their aggregates (today's row may grow meanwhile: the dispatcher ends the
    # 400-day-old queued run as not started - QUEUE_TIMEOUT - and that end is counted today)
    today = usage.day_of(utcnow())
    past = [row for row in usage_before if row[0] != today]
    assert [row for row in await _usage_rows(platform) if row[0] != today] == past and len(past) == 2
    # a second pass finds nothing more
    assert await platform.housekeeper.retention.sweep() == {"default": 0}


async def test_a_tenants_run_retention_days_win_over_the_default(platform: Platform) -> None:
    aid = await _automation(platform)
    runs = await _runs(platform, aid, 4)
    await _backdate(platform, runs[:2], days=8)
    await _backdate(platform, runs[2:3], days=6)
    await tenancy.configure_tenant(platform.sessions, platform.settings, tenant="other", create=True)
    await _set_tenant(platform, "other", runRetentionDays=1)  # a tenant with nothing to delete

    assert await platform.housekeeper.retention.sweep() == {"default": 0, "other": 0}  # default: 30 days
    await _set_tenant(platform, "default", runRetentionDays=7)
    assert await platform.housekeeper.retention.sweep() == {"default": 2, "other": 0}
    assert (await _left(platform, runs))["runs"] == 2
    await _set_tenant(platform, "default", runRetentionDays="5")  # a number given as text is taken
    assert await platform.housekeeper.retention.sweep() == {"default": 1, "other": 0}
    await _backdate(platform, runs[3:], days=100)
    await _set_tenant(platform, "default", runRetentionDays=0)  # nonsense: nothing of that tenant is deleted
    assert await platform.housekeeper.retention.sweep() == {"other": 0}
    assert (await _left(platform, runs))["runs"] == 1


async def test_a_run_that_ended_recently_is_kept_even_if_created_long_ago(platform: Platform) -> None:
    aid = await _automation(platform)
    (run_id,) = await _runs(platform, aid, 1)
    async with transaction(platform.sessions) as s:
        long_ago = utcnow() - timedelta(days=40)
        await s.execute(update(Run).where(Run.id == run_id).values(created_at=long_ago))
    assert await platform.housekeeper.retention.sweep() == {"default": 0}
    await _backdate(platform, [run_id], days=40)
    assert await platform.housekeeper.retention.sweep() == {"default": 1}


async def test_batches_are_bounded_and_a_pass_takes_everything(
    make_platform: PlatformFactory, database_url: str
) -> None:
    platform = await make_platform(database_url, retention_batch_size=3)
    aid = await _automation(platform)
    old = await _runs(platform, aid, 10)
    (recent,) = await _runs(platform, aid, 1)
    await _backdate(platform, old, days=45)

    retention = platform.housekeeper.retention
    assert await retention.sweep() == {"default": 10}
    assert retention.last_pass["default"].batches == (3, 3, 3, 1)
    assert not retention.last_pass["default"].more
    assert (await _left(platform, old))["runs"] == 0 and (await _left(platform, [recent]))["runs"] == 1

    # a pass does at most max_batches transactions per tenant; the next pass goes on
    more = await _runs(platform, aid, 7)
    await _backdate(platform, more, days=45)
    limited = Retention(platform.settings, platform.sessions, max_batches=2)
    assert await limited.sweep() == {"default": 6}
    assert limited.last_pass["default"].batches == (3, 3) and limited.last_pass["default"].more
    assert await limited.sweep() == {"default": 1}
    assert not limited.last_pass["default"].more


async def test_last_run_id_is_cleared_and_the_automation_still_reads(platform: Platform) -> None:
    aid = await _automation(platform, "kept")
    other = await _automation(platform, "other")
    (old,) = await _runs(platform, aid, 1)
    (mine,) = await _runs(platform, other, 1)
    await _backdate(platform, [old], days=60)
    async with platform.sessions() as s:
        before = await s.get(Automation, aid)
        assert before is not None and before.last_run_id == old
        last_at, last_status = before.last_run_at, before.last_run_status

    assert await platform.housekeeper.retention.sweep() == {"default": 1}

    async with platform.sessions() as s:
        after = await s.get(Automation, aid)
        untouched = await s.get(Automation, other)
    assert after is not None and after.last_run_id is None
    assert (after.last_run_at, after.last_run_status) == (last_at, last_status)  # history stays
    assert untouched is not None and untouched.last_run_id == mine
    async with client_for(platform) as api:
        got = await api.get(f"/api/v1/automations/{aid}")
        assert got.status_code == 200, got.text
        doc = got.json()
        assert "lastRun" not in doc and doc["lastRunStatus"] == "finished with warnings"
        assert (await api.get(f"/api/v1/automations/{aid}/runs/{old}")).status_code == 404
        listed = await api.get("/api/v1/automations")
        assert listed.status_code == 200 and {a["name"] for a in listed.json()["data"]} == {"kept", "other"}


async def test_housekeeping_pass_runs_both_parts_and_survives_a_failing_one(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    aid = await _automation(platform)
    old = await _runs(platform, aid, 2)
    await _backdate(platform, old, days=31)

    async def broken(*_: object, **__: object) -> int:
        raise RuntimeError("archive volume on fire")

    monkeypatch.setattr(platform.backend, "clean_archive", broken)
    done = await platform.housekeeper.sweep()
    assert done["archives"] == {} and done["runs"] == {"default": 2}

    async def broken_sweep(*_: object, **__: object) -> dict[str, int]:
        raise RuntimeError("database gone")

    monkeypatch.undo()
    monkeypatch.setattr(platform.housekeeper.retention, "sweep", broken_sweep)
    done = await platform.housekeeper.sweep()
    assert "runs" not in done and set(done["archives"]) == {"default"}


async def test_one_failing_tenant_does_not_stop_the_others(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    aid = await _automation(platform)
    old = await _runs(platform, aid, 2)
    await _backdate(platform, old, days=31)
    await tenancy.configure_tenant(platform.sessions, platform.settings, tenant="aaa-first", create=True)
    retention = platform.housekeeper.retention
    real = retention.sweep_tenant

    async def flaky(tenant_id: str, *, name: str, days: int, now: Any) -> Any:
        if name == "aaa-first":
            raise RuntimeError("boom")
        return await real(tenant_id, name=name, days=days, now=now)

    monkeypatch.setattr(retention, "sweep_tenant", flaky)
    assert await retention.sweep() == {"default": 2}
