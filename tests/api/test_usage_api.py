"""GET /automations/usage (seed 004): admins only, the seed's SCIM filter on name and date, per-day values
that match the runs that really happened, breakdownBy=automation, paging, and clear 400s."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from controlplane.db.session import transaction
from controlplane.services.platform import Platform
from controlplane.store import usage as usage_store
from tests.support.api import assert_envelope
from tests.support.platform import PlatformFactory, client_for, new_token
from tests.support.runs import make, run_sync, until

BASE = "/api/v1/automations"
NAMES = ["runs", "scheduledRuns", "triggeredRuns", "webhookRuns", "duration", "bandwidthIn", "bandwidthOut"]


def today() -> str:
    return datetime.now(UTC).date().isoformat()


async def usage(api: httpx.AsyncClient, filter: str, prefix: str = BASE, **params: Any) -> list[dict[str, Any]]:
    r = await api.get(f"{prefix}/usage", params={"filter": filter, **params})
    assert r.status_code == 200, r.text
    data: list[dict[str, Any]] = r.json()["data"]
    return data


async def record(platform: Platform, day: str, automation: str, name: str, context: str, **kw: Any) -> None:
    """A finished run of an earlier day, added the way the engine adds one (runs cannot be made in the past)."""
    principal = await platform.bootstrap_principal()
    async with transaction(platform.sessions) as s:
        await usage_store.record_run(
            s,
            day=day,
            tenant_id=principal.tenant_id,
            automation_id=automation,
            automation_name=name,
            owner_id="owner-1",
            context=context,
            status=kw.pop("status", "finished"),
            duration_seconds=kw.pop("duration", 1.0),
            rx_bytes=kw.pop("rx", 0),
            tx_bytes=kw.pop("tx", 0),
        )


async def test_values_are_the_runs_that_happened(make_platform: PlatformFactory, database_url: str) -> None:
    platform = await make_platform(database_url, scheduler_poll_seconds=0.1, dispatch_poll_seconds=0.05)
    async with client_for(platform) as api:
        manual = await make(api, "manual", sleep=0.6)
        failing = await make(api, "failing", stderr="no\n", exitCode=2)
        runs = [await run_sync(api, manual), await run_sync(api, manual), await run_sync(api, failing)]
        hooked = (await api.get(f"{BASE}/{manual}")).json()["executionToken"]
        async with client_for(platform, token=None) as anon:
            r = await anon.post(f"{BASE}/{manual}/actions/execute", headers={"X-Execution-Token": hooked}, json={})
            assert r.status_code == 201, r.text
        runs.append(await until(api, manual, r.json()["id"], "finished"))
        start = datetime.now(UTC).isoformat()
        body = {"name": "ticking", "code": "x", "schedules": [{"interval": 1, "startAt": start}]}
        ticking = (await api.post(BASE, json=body)).json()["id"]
        for _ in range(200):
            listed = (await api.get(f"{BASE}/{ticking}/runs")).json()["data"]
            if sum(r["status"] == "finished" for r in listed) >= 2:
                break
            await asyncio.sleep(0.05)
        assert (await api.post(f"{BASE}/{ticking}/actions/disable")).status_code == 204
        await asyncio.sleep(0.3)  # a tick claimed just before disabling finishes
        scheduled = [r for r in (await api.get(f"{BASE}/{ticking}/runs")).json()["data"] if r["context"] == "scheduled"]
        for run in scheduled:
            runs.append(await until(api, ticking, run["id"], "finished"))

        day = today()
        totals = {e["name"]: e["value"] for e in await usage(api, f'date eq "{day}"')}
        assert list(totals) == NAMES
        assert totals["runs"] == len(runs)
        assert totals["scheduledRuns"] == len(scheduled) >= 2
        assert totals["webhookRuns"] == 1 and totals["triggeredRuns"] == 0
        durations = [(r["durationMs"] or 0) / 1000 for r in runs]
        assert abs(totals["duration"] - sum(durations)) <= 1
        assert totals["duration"] >= 1  # the manual runs slept 0.6 s each
        assert totals["bandwidthIn"] == totals["bandwidthOut"] == 0  # the fake engine moves no bytes

        by = await usage(api, f'name eq "runs" and date eq "{day}"', breakdownBy="automation")
        counts = {e["automation"]["guid"]: e["value"] for e in by}
        assert counts == {manual: 3, failing: 1, ticking: len(scheduled)}
        entry = next(e for e in by if e["automation"]["guid"] == failing)
        owner = (await api.get(f"{BASE}/{failing}")).json()["ownerId"]
        assert entry == {
            "date": day,
            "name": "runs",
            "value": 1,
            "automation": {"guid": failing, "name": "failing", "ownerId": owner},
        }
        assert all(set(e) == {"date", "name", "value"} for e in await usage(api, f'date eq "{day}"'))

        # the same under the other prefix; another tenant's admin sees none of it
        assert await usage(api, f'date eq "{day}"', prefix="/api/workflows/automations") == [
            {"date": day, "name": n, "value": v} for n, v in totals.items()
        ]
    async with client_for(platform, await new_token(platform, role="admin", tenant="other")) as other:
        assert await usage(other, f'date eq "{day}"') == []


async def test_filter_names_and_date_ranges(platform: Platform, api: httpx.AsyncClient) -> None:
    for day, context, duration in (
        ("2025-07-31", "api_sync", 5.0),
        ("2025-08-01", "scheduled", 2.4),
        ("2025-08-01", "triggered", 1.2),
        ("2025-08-02", "webhook", 3.0),
        ("2025-08-03", "api_async", 9.0),
    ):
        await record(platform, day, "a-1", "one", context, duration=duration, rx=1000, tx=10)
    await record(platform, "2025-08-02", "a-2", "two", "api_sync", duration=1.0, rx=5, tx=7)

    rows = await usage(api, 'name eq "runs" and date ge "2025-08-01" and date le "2025-08-02"')
    assert rows == [
        {"date": "2025-08-01", "name": "runs", "value": 2},
        {"date": "2025-08-02", "name": "runs", "value": 2},
    ]
    assert [
        r["date"] for r in await usage(api, 'name eq "runs" and date gt "2025-08-01" and date lt "2025-08-03"')
    ] == ["2025-08-02"]
    rows = await usage(api, '(name eq "duration" or name eq "bandwidthIn") and date eq "2025-08-01"')
    assert rows == [
        {"date": "2025-08-01", "name": "duration", "value": 4},  # 2.4 + 1.2 s, in whole seconds
        {"date": "2025-08-01", "name": "bandwidthIn", "value": 2000},
    ]
    # the seed's response enum spells two names in the singular: accepted, answered in the plural
    rows = await usage(api, 'name eq "scheduledRun" and date eq "2025-08-01"')
    assert rows == [{"date": "2025-08-01", "name": "scheduledRuns", "value": 1}]
    assert [r["name"] for r in await usage(api, 'name ne "duration" and date eq "2025-08-02"')] == [
        n for n in NAMES if n != "duration"
    ]
    by = await usage(api, 'name eq "bandwidthOut" and date eq "2025-08-02"', breakdownBy="automation")
    assert [(e["automation"]["guid"], e["automation"]["name"], e["value"]) for e in by] == [
        ("a-1", "one", 10),
        ("a-2", "two", 7),
    ]
    assert await usage(api, 'date ge "2025-08-05" and date le "2025-08-01"') == []
    # with no date, every day
    assert [r["date"] for r in await usage(api, 'name eq "runs"')] == [
        "2025-07-31",
        "2025-08-01",
        "2025-08-02",
        "2025-08-03",
    ]


async def test_pages_follow_links(platform: Platform, api: httpx.AsyncClient) -> None:
    for day in range(1, 6):
        for automation in ("a-1", "a-2"):
            await record(platform, f"2025-09-0{day}", automation, automation, "api_sync")
    everything = await usage(api, 'name ne "duration"', breakdownBy="automation")
    assert len(everything) == 5 * 2 * 6
    seen: list[dict[str, Any]] = []
    url: str | None = f"{BASE}/usage?" + str(
        httpx.QueryParams(filter='name ne "duration"', breakdownBy="automation", limit=7)
    )
    pages = 0
    while url:
        r = await api.get(url)
        assert r.status_code == 200, r.text
        doc = r.json()
        assert len(doc["data"]) <= 7
        seen += doc["data"]
        if pages == 1:
            back = (await api.get(doc["links"]["prev"]["href"])).json()["data"]
            assert back == seen[:7]
        url = (doc["links"].get("next") or {}).get("href")
        pages += 1
    assert seen == everything and pages == 9


async def test_admins_only(platform: Platform) -> None:
    filter = {"filter": f'date eq "{today()}"'}
    for role in ("viewer", "operator", "developer"):
        async with client_for(platform, await new_token(platform, role=role)) as c:
            assert_envelope(await c.get(f"{BASE}/usage", params=filter), 403, "FORBIDDEN")
    async with client_for(platform, token=None) as anon:
        assert_envelope(await anon.get(f"{BASE}/usage", params=filter), 401, "UNAUTHORIZED")


@pytest.mark.parametrize(
    ("params", "code", "says"),
    [
        ({}, "FILTER_REQUIRED", "filter is required"),
        ({"filter": ""}, "FILTER_REQUIRED", "filter is required"),
        ({"filter": 'name eq "bogus"'}, "INVALID_FILTER", "unknown usage metric 'bogus'"),
        ({"filter": 'status eq "failed"'}, "INVALID_FILTER", "cannot filter on 'status'"),
        ({"filter": 'name co "run"'}, "INVALID_FILTER", 'name eq "runs"'),
        ({"filter": 'date eq "yesterday"'}, "INVALID_FILTER", "YYYY-MM-DD"),
        ({"filter": 'date co "2025"'}, "INVALID_FILTER", "date takes eq, ge, gt, le or lt"),
        ({"filter": 'not (name eq "runs")'}, "INVALID_FILTER", "or"),
        ({"filter": 'name eq "runs" or date eq "2025-08-01"'}, "INVALID_FILTER", "or"),
        ({"filter": 'name eq "runs" and name eq "duration"'}, "INVALID_FILTER", "exclude every metric"),
        ({"filter": "name eq"}, "INVALID_FILTER", "ends too early"),
        ({"filter": 'name eq "runs"', "breakdownBy": "space"}, "INVALID_BREAKDOWN", "automation"),
        ({"filter": 'name eq "runs"', "page": "not-a-cursor"}, "INVALID_CURSOR", "cursor"),
    ],
)
async def test_bad_requests_are_400_with_a_clear_message(
    api: httpx.AsyncClient, params: dict[str, str], code: str, says: str
) -> None:
    first = assert_envelope(await api.get(f"{BASE}/usage", params=params), 400, code)
    assert says in str(first["detail"]), first


async def test_usage_and_settings_are_not_automation_ids(api: httpx.AsyncClient) -> None:
    for prefix in (BASE, "/api/workflows/automations"):
        assert (await api.get(f"{prefix}/usage", params={"filter": 'name eq "runs"'})).status_code == 200
        assert (await api.get(f"{prefix}/settings")).status_code == 200
