"""Seed 004 run actions (stop, retry), settings, enable/disable, and 429s through the API (fake backend)."""

from __future__ import annotations

import asyncio
import json

import httpx

from controlplane.services.platform import Platform
from tests.support.api import assert_envelope
from tests.support.platform import PlatformFactory, client_for, new_token
from tests.support.runs import BASE, make, status_of, until


async def test_stop_running_queued_twice_and_finished(make_platform: PlatformFactory, database_url: str) -> None:
    platform = await make_platform(database_url, background_concurrency_total=1, dispatch_poll_seconds=0.05)
    async with client_for(platform) as api:
        aid = await make(api, "long", stdout="partial\n", sleep=60, stopSeconds=1.5)
        running = (await api.post(f"{BASE}/{aid}/runs", json={"context": "api"})).json()["id"]
        queued = (await api.post(f"{BASE}/{aid}/runs", json={"context": "api"})).json()["id"]
        await until(api, aid, running, "running")
        assert (await status_of(api, aid, queued))["status"] == "queued"

        r = await api.post(f"{BASE}/{aid}/runs/{queued}/actions/stop")
        assert r.status_code == 204, r.text
        stopped = await status_of(api, aid, queued)
        assert stopped["status"] == "stopped" and stopped["startTime"] is None
        assert stopped["error"][0]["code"] == "STOPPED_BY_USER"  # type: ignore[index]
        assert queued not in [s.run_id for s in platform.backend.launched]  # type: ignore[attr-defined]

        # idempotent: a second stop while the first is under way (the sandbox takes 1.5 s to die) is fine too
        stop = f"{BASE}/{aid}/runs/{running}/actions/stop"
        assert (await api.post(stop)).status_code == 204
        assert (await status_of(api, aid, running))["status"] == "must stop"
        assert (await api.post(stop)).status_code == 204
        done = await until(api, aid, running, "stopped")
        assert done["stopTime"] and running in platform.backend.stopped  # type: ignore[attr-defined]
        assert await platform.backend.list_sandboxes() == []

        first = assert_envelope(await api.post(f"{BASE}/{aid}/runs/{running}/actions/stop"), 409, "RUN_ENDED")
        assert "stopped" in str(first["detail"])
        assert_envelope(await api.post(f"{BASE}/{aid}/runs/nope/actions/stop"), 404)


async def test_stop_keeps_partial_logs(make_platform: PlatformFactory, sqlite_url: str) -> None:
    platform = await make_platform(sqlite_url)
    async with client_for(platform) as api:
        aid = await make(api, "talker", stdout="line one\n", sleep=60)
        run_id = (await api.post(f"{BASE}/{aid}/runs", json={"context": "api"})).json()["id"]
        await until(api, aid, run_id, "running")
        await api.post(f"{BASE}/{aid}/runs/{run_id}/actions/stop")
        done = await until(api, aid, run_id, "stopped")
        assert done["exitCode"] is None and done["status"] == "stopped"


async def test_retry_runs_the_same_version_args_and_input(api: httpx.AsyncClient, platform: Platform) -> None:
    aid = await make(api, "flaky", exitCode=1)
    original = (
        await api.post(f"{BASE}/{aid}/runs", json={"context": "api_sync", "args": ["--x", "1"], "input": {"k": 2}})
    ).json()
    # change the automation after the first run: a retry still runs the first version
    await api.put(
        f"{BASE}/{aid}", json={"name": "flaky", "files": {"main.py": "v2", "fake.json": "{}"}, "entrypoint": "main.py"}
    )
    r = await api.post(f"{BASE}/{aid}/runs/{original['id']}/actions/retry")
    assert r.status_code == 204, r.text
    new_id = r.headers["x-run-id"]
    assert r.headers["location"].endswith(f"/runs/{new_id}")
    retried = await until(api, aid, new_id, "failed", "finished")
    assert retried["retryOf"] == original["id"] and retried["context"] == "retry"
    assert retried["automationVersion"] == original["automationVersion"] == 1
    assert retried["args"] == ["--x", "1"] and retried["status"] == "failed"
    spec = next(s for s in platform.backend.launched if s.run_id == new_id)  # type: ignore[attr-defined]
    assert json.loads(spec.input) == {"k": 2} and "fake.json" in spec.files and spec.files["main.py"] != b"v2"


async def test_retry_location_stays_under_the_mount_it_came_in_on(api: httpx.AsyncClient) -> None:
    aid = await make(api, "again", stdout="x\n")
    first = (await api.post(f"{BASE}/{aid}/runs", json={"context": "api_sync"})).json()
    for mount in ("/api/v1/automations", "/api/workflows/automations"):
        r = await api.post(f"{mount}/{aid}/runs/{first['id']}/actions/retry")
        assert r.status_code == 204, r.text
        assert r.headers["location"] == f"http://testserver{mount}/{aid}/runs/{r.headers['x-run-id']}"
        assert (await api.get(r.headers["location"])).json()["retryOf"] == first["id"]


async def test_settings_are_admin_only_and_cap_automations(platform: Platform, api: httpx.AsyncClient) -> None:
    assert (await api.get(f"{BASE}/settings")).json() == {"maxConcurrentRunsPerAutomation": 10}
    r = await api.put(f"{BASE}/settings", json={"maxConcurrentRunsPerAutomation": 3})
    assert r.status_code == 200 and r.json() == {"maxConcurrentRunsPerAutomation": 3}
    assert (await api.get("/api/workflows/automations/settings")).json()["maxConcurrentRunsPerAutomation"] == 3
    assert_envelope(await api.put(f"{BASE}/settings", json={"maxConcurrentRunsPerAutomation": 0}), 422)
    first = assert_envelope(await api.post(BASE, json={"name": "x", "code": "", "maxConcurrentRuns": 4}), 422)
    assert "3" in str(first["detail"])
    viewer = await new_token(platform, role="developer")
    async with client_for(platform, viewer) as dev:
        assert_envelope(await dev.get(f"{BASE}/settings"), 403)
        assert_envelope(await dev.put(f"{BASE}/settings", json={"maxConcurrentRunsPerAutomation": 5}), 403)


async def test_disabled_automation_refuses_runs_until_enabled(api: httpx.AsyncClient) -> None:
    aid = await make(api, "switch")
    assert (await api.post(f"{BASE}/{aid}/actions/disable")).status_code == 204
    assert (await api.get(f"{BASE}/{aid}")).json()["state"] == "disabled"
    first = assert_envelope(
        await api.post(f"{BASE}/{aid}/runs", json={"context": "api_sync"}), 409, "AUTOMATION_DISABLED"
    )
    assert "enable" in str(first["detail"])
    assert (await api.post(f"{BASE}/{aid}/actions/enable")).status_code == 204
    assert (await api.post(f"{BASE}/{aid}/runs", json={"context": "api_sync"})).status_code == 200


async def test_429_has_the_envelope_and_a_retry_after(make_platform: PlatformFactory, database_url: str) -> None:
    platform = await make_platform(database_url, sync_concurrency_per_tenant=1)
    async with client_for(platform) as api:
        aid = await make(api, "hold", sleep=4)
        holder = asyncio.create_task(api.post(f"{BASE}/{aid}/runs", json={"context": "api_sync"}))
        for _ in range(200):
            async with platform.sessions() as s:
                from sqlalchemy import func, select

                from controlplane.db.tables import Run

                if (await s.execute(select(func.count()).select_from(Run))).scalar_one():
                    break
            await asyncio.sleep(0.01)
        r = await api.post(f"{BASE}/{aid}/runs", json={"context": "api_sync"})
        first = assert_envelope(r, 429, "SYNC_LIMIT")
        assert int(r.headers["retry-after"]) >= 1 and "limit is 1" in str(first["detail"])
        assert (await holder).status_code == 200
