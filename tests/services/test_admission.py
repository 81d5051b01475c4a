"""Admission and dispatch on the fake backend, on SQLite and PostgreSQL: quotas hold under races, the queue
is fair across tenants, waiting runs expire, several replicas never start a run twice."""

from __future__ import annotations

import asyncio
import json

import pytest
from sqlalchemy import select

from controlplane.core.auth import Principal
from controlplane.core.errors import QuotaExceeded
from controlplane.core.schemas.automations import AutomationCreate
from controlplane.core.states import Role, RunContext, RunStatus
from controlplane.db.tables import Run
from controlplane.services.platform import Platform
from tests.support.clock import FakeClock
from tests.support.platform import PlatformFactory, new_token


async def automation(
    platform: Platform, principal: Principal, name: str, *, max_runs: int | None = None, **behaviour: object
) -> str:
    body = AutomationCreate(
        name=name,
        files={"main.py": "", "fake.json": json.dumps(behaviour)},
        entrypoint="main.py",
        max_concurrent_runs=max_runs,
    )
    return (await platform.automations.create(principal, body)).id


async def principal_of(platform: Platform, tenant: str) -> Principal:
    from controlplane.services.tenancy import tenants as tenancy

    token = await new_token(platform, role="developer", tenant=tenant)
    return await tenancy.authenticate(platform.sessions, f"Bearer {token}")


async def statuses(platform: Platform, run_ids: list[str]) -> list[str]:
    async with platform.sessions() as s:
        rows = {r.id: r.status for r in (await s.execute(select(Run).where(Run.id.in_(run_ids)))).scalars()}
    return [rows[r] for r in run_ids]


async def test_sync_limit_refuses_the_next_run_with_a_computed_retry_after(
    make_platform: PlatformFactory, database_url: str
) -> None:
    platform = await make_platform(database_url, sync_concurrency_per_tenant=3)
    admin = await platform.bootstrap_principal()
    quick = await automation(platform, admin, "quick", sleep=0.05)
    slow = await automation(platform, admin, "slow", sleep=6)
    # history: the slow automation usually takes ~6 s
    async with platform.sessions() as s, s.begin():
        pass
    runs = [await platform.runs.submit(admin, slow, context=RunContext.API_SYNC) for _ in range(3)]
    with pytest.raises(QuotaExceeded) as caught:
        await platform.runs.submit(admin, quick, context=RunContext.API_SYNC)
    assert caught.value.code == "SYNC_LIMIT" and caught.value.status_code == 429
    # no history yet: half the deadline of the soonest holder (sync default 60 s)
    assert 20 <= caught.value.retry_after <= 31, caught.value.retry_after
    # other tenants are not affected
    other = await principal_of(platform, "other-tenant")
    other_quick = await automation(platform, other, "quick", sleep=0.01)
    done = await platform.runs.submit(other, other_quick, context=RunContext.API_SYNC)
    await platform.runs.wait(done)
    for run in runs:
        await platform.runs.wait(run)
    # with history the estimate follows the automation's typical duration (~6 s), not a constant
    again = [await platform.runs.submit(admin, slow, context=RunContext.API_SYNC) for _ in range(3)]
    platform.runs.clock = clock = FakeClock()
    clock.advance(1.0)  # a second into the slow runs
    with pytest.raises(QuotaExceeded) as caught:
        await platform.runs.submit(admin, quick, context=RunContext.API_SYNC)
    assert 3 <= caught.value.retry_after <= 6, caught.value.retry_after
    for run in again:
        await platform.engine.wait(run.id, 30)


async def test_two_requests_racing_for_the_last_slot_never_both_win(
    make_platform: PlatformFactory, database_url: str
) -> None:
    platform = await make_platform(database_url, sync_concurrency_per_tenant=2)
    admin = await platform.bootstrap_principal()
    aid = await automation(platform, admin, "hold", sleep=3)

    async def attempt() -> str:
        try:
            run = await platform.runs.submit(admin, aid, context=RunContext.API_SYNC)
        except QuotaExceeded:
            return "refused"
        return run.id

    outcomes = await asyncio.gather(*(attempt() for _ in range(25)))
    admitted = [o for o in outcomes if o != "refused"]
    assert len(admitted) == 2, outcomes
    for run_id in admitted:
        await platform.engine.wait(run_id, 30)


async def test_background_total_and_per_automation_limits(make_platform: PlatformFactory, database_url: str) -> None:
    platform = await make_platform(database_url, background_concurrency_total=2, dispatch_poll_seconds=0.05)
    admin = await platform.bootstrap_principal()
    wide = await automation(platform, admin, "wide", sleep=0.4)
    narrow = await automation(platform, admin, "narrow", max_runs=1, sleep=0.4)
    ids = [(await platform.runs.submit(admin, wide, context=RunContext.API_ASYNC)).id for _ in range(4)]
    ids += [(await platform.runs.submit(admin, narrow, context=RunContext.API_ASYNC)).id for _ in range(2)]
    peak = peak_narrow = 0
    while True:
        now = await statuses(platform, ids)
        busy = [s for s in now if s in ("starting", "running")]
        peak = max(peak, len(busy))
        peak_narrow = max(peak_narrow, sum(1 for s in now[4:] if s in ("starting", "running")))
        if all(s == "finished" for s in now):
            break
        await asyncio.sleep(0.02)
    assert peak <= 2 and peak_narrow <= 1
    # a synchronous run over the automation's limit cannot wait: 429
    hold = await platform.runs.submit(admin, narrow, context=RunContext.API_ASYNC)
    while (await statuses(platform, [hold.id]))[0] != "running":
        await asyncio.sleep(0.02)
    with pytest.raises(QuotaExceeded) as caught:
        await platform.runs.submit(admin, narrow, context=RunContext.API_SYNC)
    assert caught.value.code == "AUTOMATION_LIMIT"
    await platform.engine.wait(hold.id, 10)


async def test_queue_cap_per_tenant_is_429(make_platform: PlatformFactory, database_url: str) -> None:
    platform = await make_platform(database_url, background_concurrency_total=1, queue_max_per_tenant=2)
    admin = await platform.bootstrap_principal()
    aid = await automation(platform, admin, "long", sleep=5)
    first = await platform.runs.submit(admin, aid, context=RunContext.API_ASYNC)
    while (await statuses(platform, [first.id]))[0] != "running":
        await asyncio.sleep(0.02)
    queued = [await platform.runs.submit(admin, aid, context=RunContext.API_ASYNC) for _ in range(2)]
    with pytest.raises(QuotaExceeded) as caught:
        await platform.runs.submit(admin, aid, context=RunContext.API_ASYNC)
    assert caught.value.code == "QUEUE_FULL" and caught.value.retry_after >= 1
    for run in queued:
        await platform.runs.stop(admin, aid, run.id)
    await platform.runs.stop(admin, aid, first.id)


async def test_fair_share_round_robin_across_tenants_fifo_within(
    make_platform: PlatformFactory, database_url: str
) -> None:
    platform = await make_platform(database_url, background_concurrency_total=10_000)
    await platform.dispatcher.stop()  # drive claims by hand: nothing is launched, only the order is decided
    tenants = {}
    for name, count in (("tenant-a", 300), ("tenant-b", 1), ("tenant-c", 3)):
        who = await principal_of(platform, name)
        aid = await automation(platform, who, "job")
        tenants[name] = [(await platform.runs.submit(who, aid, context=RunContext.API_ASYNC)).id for _ in range(count)]
    order = []
    for _ in range(8):
        run_id = await platform.dispatcher.claim_one()
        assert run_id is not None
        order.append(next(name for name, ids in tenants.items() if run_id in ids))
    # turns alternate while several tenants have work: B's single run waits for at most one other run,
    # and no tenant is served twice in a row while another one is waiting (C has 3 runs, B has 1)
    assert order.index("tenant-b") <= 2, order
    assert all(order[i] != order[i + 1] for i in range(6)), order
    assert order.count("tenant-c") == 3 and order.count("tenant-b") == 1
    claimed = set(await _claimed(platform))
    claimed_a = [r for r in tenants["tenant-a"] if r in claimed]
    assert claimed_a == tenants["tenant-a"][: len(claimed_a)]  # FIFO within a tenant


async def _claimed(platform: Platform) -> list[str]:
    async with platform.sessions() as s:
        return [str(r) for r in (await s.execute(select(Run.id).where(Run.status == "starting"))).scalars()]


async def test_a_run_that_waits_too_long_ends_not_started(make_platform: PlatformFactory, sqlite_url: str) -> None:
    platform = await make_platform(sqlite_url, background_concurrency_total=1, queue_wait_timeout_seconds=1)
    admin = await platform.bootstrap_principal()
    aid = await automation(platform, admin, "blocker", sleep=30)
    blocker = await platform.runs.submit(admin, aid, context=RunContext.API_ASYNC)
    # the blocker holds the only slot before the second run queues: when the dispatcher's clock moves on,
    # the second run is the only one still waiting (a queued blocker would expire with it)
    while (await statuses(platform, [blocker.id]))[0] != "running":
        await asyncio.sleep(0.02)
    waiting = await platform.runs.submit(admin, aid, context=RunContext.API_ASYNC)
    platform.dispatcher.clock = clock = FakeClock()
    clock.advance(5)  # past the 1 s the second run may wait
    await platform.dispatcher.pump()
    async with platform.sessions() as s:
        row = await s.get(Run, waiting.id)
    assert row is not None and row.status == "not started" and row.errors[0]["code"] == "QUEUE_TIMEOUT"
    assert waiting.id not in [spec.run_id for spec in platform.backend.launched]  # type: ignore[attr-defined]
    await platform.runs.stop(admin, aid, blocker.id)


async def test_two_replicas_on_one_database_never_start_a_run_twice(
    make_platform: PlatformFactory, database_url: str
) -> None:
    first = await make_platform(database_url, dispatch_poll_seconds=0.02, background_concurrency_total=6)
    second = await make_platform(database_url, dispatch_poll_seconds=0.02, background_concurrency_total=6)
    admin = await first.bootstrap_principal()
    aid = await automation(first, admin, "shared", sleep=0.1)
    ids = [(await first.runs.submit(admin, aid, context=RunContext.API_ASYNC)).id for _ in range(30)]
    for run_id in ids:
        assert await first.engine.wait(run_id, 60)
    launched = [s.run_id for p in (first, second) for s in p.backend.launched]  # type: ignore[attr-defined]
    assert sorted(launched) == sorted(ids), "every run launched exactly once"
    assert all(s == "finished" for s in await statuses(first, ids))
    assert {len(p.backend.launched) > 0 for p in (first, second)} == {True}  # type: ignore[attr-defined]


async def test_sync_quota_holds_across_replicas(make_platform: PlatformFactory, database_url: str) -> None:
    first = await make_platform(database_url, sync_concurrency_per_tenant=2)
    second = await make_platform(database_url, sync_concurrency_per_tenant=2)
    admin = await first.bootstrap_principal()
    aid = await automation(first, admin, "hold", sleep=3)
    a = await first.runs.submit(admin, aid, context=RunContext.API_SYNC)
    b = await second.runs.submit(admin, aid, context=RunContext.API_SYNC)
    for platform in (first, second):
        with pytest.raises(QuotaExceeded):
            await platform.runs.submit(admin, aid, context=RunContext.API_SYNC)
    await first.engine.wait(a.id, 30)
    await second.engine.wait(b.id, 30)


async def test_role_needed_to_start_is_still_enforced(platform: Platform) -> None:
    viewer = Principal(platform.settings.bootstrap_tenant, "default", "v", Role.VIEWER, "t")
    with pytest.raises(Exception, match="may not run"):
        await platform.runs.submit(viewer, "x", context=RunContext.API_SYNC)
    assert RunStatus.QUEUED.value == "queued"


def sample(name: str, **labels: str) -> float:
    from controlplane.core.metrics import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_queue_and_quota_metrics(make_platform: PlatformFactory, sqlite_url: str) -> None:
    platform = await make_platform(
        sqlite_url, background_concurrency_total=1, queue_max_per_tenant=2, sync_concurrency_per_tenant=1
    )
    admin = await platform.bootstrap_principal()
    aid = await automation(platform, admin, "long", sleep=30)
    waited = sample("controlplane_queue_wait_seconds_count", kind="background")
    refused = {k: sample("controlplane_quota_rejections_total", kind=k) for k in ("queue_full", "sync_tenant")}
    failed = sample("controlplane_backend_errors_total", operation="run")

    first = await platform.runs.submit(admin, aid, context=RunContext.API_ASYNC)
    while (await statuses(platform, [first.id]))[0] != "running":
        await asyncio.sleep(0.02)
    assert sample("controlplane_queue_wait_seconds_count", kind="background") == waited + 1
    queued = [await platform.runs.submit(admin, aid, context=RunContext.API_ASYNC) for _ in range(2)]
    await platform.dispatcher.pump()
    assert sample("controlplane_queue_depth", tenant="default") == 2
    with pytest.raises(QuotaExceeded):
        await platform.runs.submit(admin, aid, context=RunContext.API_ASYNC)
    held = await platform.runs.submit(admin, aid, context=RunContext.API_SYNC)
    with pytest.raises(QuotaExceeded):
        await platform.runs.submit(admin, aid, context=RunContext.API_SYNC)
    assert {k: sample("controlplane_quota_rejections_total", kind=k) for k in refused} == {
        k: v + 1 for k, v in refused.items()
    }

    for run in [*queued, held, first]:
        await platform.runs.stop(admin, aid, run.id)
    await platform.dispatcher.pump()
    assert sample("controlplane_queue_depth", tenant="default") == 0
    broken = await automation(platform, admin, "broken", launchError="unavailable")
    assert await platform.engine.wait((await platform.runs.submit(admin, broken, context=RunContext.API_SYNC)).id, 10)
    assert sample("controlplane_backend_errors_total", operation="run") == failed + 1
