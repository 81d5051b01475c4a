"""Webhook runs: POST .../{id}/actions/execute with the executionToken (query or header) and no bearer token.
Fake backend, SQLite and PostgreSQL; the run's input reaches the sandbox spec, the run counts as webhookRuns."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import pytest

from controlplane.services.platform import Platform
from tests.support.api import PREFIXES, assert_envelope
from tests.support.platform import PlatformFactory, client_for, new_token
from tests.support.runs import finished, launched_input, make

BASE = "/api/v1/automations"
TOKEN = "X-Execution-Token"


async def hook(api: httpx.AsyncClient, **behaviour: object) -> tuple[str, str]:
    """(automation id, execution token) of a new fake-backend automation."""
    aid = await make(api, f"hook-{uuid.uuid4().hex[:6]}", **behaviour)
    return aid, (await api.get(f"{BASE}/{aid}")).json()["executionToken"]


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_execute_with_token_in_the_query_starts_a_webhook_run(
    platform: Platform, api: httpx.AsyncClient, prefix: str
) -> None:
    aid, token = await hook(api, stdout="hooked\n")
    async with client_for(platform, token=None) as anonymous:
        r = await anonymous.post(f"{prefix}/{aid}/actions/execute", params={TOKEN: token}, json={"order": 42})
    assert r.status_code == 201, r.text
    doc = r.json()
    assert set(doc) == {"id", "automationId", "status", "context", "createdAt"}
    assert doc["automationId"] == aid and doc["context"] == "webhook" and doc["status"] == "queued"
    assert r.headers["location"] == f"{prefix}/{aid}/runs/{doc['id']}" and r.headers["x-run-id"] == doc["id"]
    run = await finished(api, aid, doc["id"])
    assert run["status"] == "finished" and run["stdout"] == "hooked\n" and run["context"] == "webhook"
    owner = (await api.get(f"{BASE}/{aid}")).json()["ownerId"]
    assert run["executedById"] == owner  # on the owner's behalf, as scheduled runs are
    assert json.loads(launched_input(platform, doc["id"])) == {"order": 42}
    listed = (await api.get(f"{BASE}/{aid}/runs", params={"filter": 'context eq "webhook"'})).json()["data"]
    assert [x["id"] for x in listed] == [doc["id"]]


async def test_execute_with_token_in_a_header_and_any_body(platform: Platform, api: httpx.AsyncClient) -> None:
    aid, token = await hook(api)
    async with client_for(platform, token=None) as anonymous:
        r = await anonymous.post(
            f"{BASE}/{aid}/actions/execute",
            headers={TOKEN: token, "content-type": "text/csv"},
            content=b"a,b\n1,2\n",
        )
        assert r.status_code == 201, r.text
        await finished(api, aid, r.json()["id"])
        assert launched_input(platform, r.json()["id"]) == b"a,b\n1,2\n"
        empty = await anonymous.post(f"{BASE}/{aid}/actions/execute", headers={TOKEN: token})
        assert empty.status_code == 201
        await finished(api, aid, empty.json()["id"])
        assert launched_input(platform, empty.json()["id"]) == b""
        bad = await anonymous.post(
            f"{BASE}/{aid}/actions/execute",
            headers={TOKEN: token, "content-type": "application/json"},
            content=b"{not json",
        )
        assert_envelope(bad, 400, "INVALID_JSON")


async def test_wrong_missing_or_unknown_are_the_same_401(platform: Platform, api: httpx.AsyncClient) -> None:
    aid, token = await hook(api)
    other_aid, other_token = await hook(api)
    async with client_for(platform, token=None) as anonymous:
        answers = [
            await anonymous.post(f"{BASE}/{aid}/actions/execute"),
            await anonymous.post(
                f"{BASE}/{aid}/actions/execute", params={TOKEN: token[:-1] + ("y" if token.endswith("x") else "x")}
            ),
            await anonymous.post(f"{BASE}/{aid}/actions/execute", headers={TOKEN: other_token}),
            await anonymous.post(f"{BASE}/{uuid.uuid4()}/actions/execute", params={TOKEN: token}),
            await anonymous.post(f"{BASE}/{aid}/actions/execute", params={TOKEN: ""}),
        ]
    bodies = []
    for r in answers:
        first = assert_envelope(r, 401, "INVALID_EXECUTION_TOKEN")
        assert "www-authenticate" not in r.headers
        bodies.append(first)
    assert all(b == bodies[0] for b in bodies)
    # a bearer token is no execution token, not even an admin's
    assert_envelope(await api.post(f"{BASE}/{aid}/actions/execute"), 401, "INVALID_EXECUTION_TOKEN")
    assert (await api.get(f"{BASE}/{aid}/runs")).json()["data"] == []
    assert (await api.get(f"{BASE}/{other_aid}/runs")).json()["data"] == []


async def test_rotation_disables_the_old_token(platform: Platform, api: httpx.AsyncClient) -> None:
    aid, old = await hook(api)
    new = (await api.post(f"{BASE}/{aid}/actions/rotate-execution-token")).json()["executionToken"]
    async with client_for(platform, token=None) as anonymous:
        assert_envelope(await anonymous.post(f"{BASE}/{aid}/actions/execute", params={TOKEN: old}), 401)
        assert (await anonymous.post(f"{BASE}/{aid}/actions/execute", params={TOKEN: new})).status_code == 201


async def test_disabled_automation_refuses(platform: Platform, api: httpx.AsyncClient) -> None:
    aid, token = await hook(api)
    assert (await api.post(f"{BASE}/{aid}/actions/disable")).status_code == 204
    async with client_for(platform, token=None) as anonymous:
        r = await anonymous.post(f"{BASE}/{aid}/actions/execute", params={TOKEN: token})
        assert_envelope(r, 409, "AUTOMATION_DISABLED")
        await api.post(f"{BASE}/{aid}/actions/enable")
        assert (await anonymous.post(f"{BASE}/{aid}/actions/execute", params={TOKEN: token})).status_code == 201


async def test_quotas_and_input_limit_apply(make_platform: PlatformFactory, database_url: str) -> None:
    platform = await make_platform(
        database_url, background_concurrency_total=1, queue_max_per_tenant=1, input_max_bytes=100
    )
    async with client_for(platform) as api, client_for(platform, token=None) as anonymous:
        aid, token = await hook(api, sleep=30)
        url = f"{BASE}/{aid}/actions/execute"
        first = await anonymous.post(url, params={TOKEN: token})
        assert first.status_code == 201
        for _ in range(200):  # the first one leaves the queue for the only slot
            if (await api.get(f"{BASE}/{aid}/runs/{first.json()['id']}")).json()["status"] == "running":
                break
            await asyncio.sleep(0.025)
        assert (await anonymous.post(url, params={TOKEN: token})).status_code == 201  # queued
        full = await anonymous.post(url, params={TOKEN: token})
        assert_envelope(full, 429)
        assert int(full.headers["retry-after"]) >= 1
        big = await anonymous.post(url, params={TOKEN: token}, content=b"x" * 101)
        assert_envelope(big, 413)
        for run in (await api.get(f"{BASE}/{aid}/runs")).json()["data"]:
            await api.post(f"{BASE}/{aid}/runs/{run['id']}/actions/stop")


async def test_webhook_runs_count_in_usage(platform: Platform, api: httpx.AsyncClient) -> None:
    aid, token = await hook(api)
    async with client_for(platform, token=None) as anonymous:
        ids = [
            (await anonymous.post(f"{BASE}/{aid}/actions/execute", params={TOKEN: token})).json()["id"]
            for _ in range(2)
        ]
    for run_id in ids:
        await finished(api, aid, run_id)
    await finished(api, aid, (await api.post(f"{BASE}/{aid}/runs", json={"context": "api"})).json()["id"])
    r = await api.get(
        f"{BASE}/usage",
        params={"filter": '(name eq "webhookRuns" or name eq "runs")', "breakdownBy": "automation"},
    )
    assert r.status_code == 200, r.text
    values = {row["name"]: row["value"] for row in r.json()["data"] if row["automation"]["guid"] == aid}
    assert values == {"webhookRuns": 2, "runs": 3}


async def test_only_those_who_may_run_see_the_token(platform: Platform, api: httpx.AsyncClient) -> None:
    aid, token = await hook(api)
    for role, sees in (("viewer", False), ("operator", True), ("developer", True)):
        async with client_for(platform, await new_token(platform, role=role)) as c:
            one = (await c.get(f"{BASE}/{aid}")).json()
            listed = next(a for a in (await c.get(BASE)).json()["data"] if a["id"] == aid)
            assert ("executionToken" in one) is sees and ("executionToken" in listed) is sees, role
            if sees:
                assert one["executionToken"] == token
