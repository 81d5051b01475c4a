"""Seed 000's /api/core/automations on the fake backend (both databases): the args rule, job states,
schedules and their status, the Host/tenant rule with CP_TENANT_HOSTS, 429 and the other error codes.
The contract against real sandboxes is tests/e2e/test_dialect_core000.py."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest

from controlplane.core.errors import BadRequest
from controlplane.db.tables import utcnow
from controlplane.dialects.jobs.service import parse_args
from controlplane.services.platform import Platform
from tests.support.api import assert_envelope
from tests.support.platform import PlatformFactory, client_for, new_token
from tests.support.runs import make

CORE = "/api/core/automations"


@pytest.mark.parametrize(
    ("values", "argv"),
    [
        (None, None),
        ([], None),
        ([""], []),
        (["arg1,arg2"], ["arg1", "arg2"]),
        (["a,,b,"], ["a", "b"]),
        (["--action arg2 --action2 test"], ["--action", "arg2", "--action2", "test"]),
        (['--msg "hello, world" --wait 0'], ["--msg", "hello, world", "--wait", "0"]),
        (["--msg a,b"], ["--msg", "a,b"]),
        (["--msg", "a b,c"], ["--msg", "a b,c"]),
        (["$(id) `x` ;ls"], ["$(id)", "`x`", ";ls"]),
    ],
)
def test_args_rule(values: list[str] | None, argv: list[str] | None) -> None:
    assert parse_args(values) == argv


def test_bad_args() -> None:
    with pytest.raises(BadRequest):
        parse_args(['--msg "unclosed'])
    with pytest.raises(BadRequest):
        parse_args([",".join(["a"] * 300)])


async def test_exec_job_status_and_states(platform: Platform, api: httpx.AsyncClient) -> None:
    await make(api, "A100-ok", stdout="out\n", stderr="warn\n", exitCode=0)
    await make(api, "A101-fail", stderr="bad\n", exitCode=3)
    await make(api, "A102-slow", stdout="slow\n", sleep=1.0)
    for method in ("GET", "POST"):
        r = await api.request(method, f"{CORE}/exec/A100-ok", params={"args": "x,y"})
        assert r.status_code == 200, r.text
        d = r.json()["data"]
        assert d["jobstate"] == "Succeeded" and d["exitCode"] == "0" and d["stdout"] == "out\n"
        assert d["stderr"] == "warn\n" and d["jobstatus"] == f"{CORE}/status/{d['jobid']}"
        assert platform.backend.launched[-1].args == ("x", "y")  # type: ignore[attr-defined]
    d = (await api.get(f"{CORE}/exec/A101-fail")).json()["data"]
    assert d["jobstate"] == "Failed" and d["exitCode"] == "3" and d["stderr"] == "bad\n"
    r = await api.post(f"{CORE}/job/A102-slow", params={"args": "--wait 1"}, content=b"the input")
    assert r.status_code == 200, r.text
    job = r.json()["data"]
    assert set(job) == {"jobid", "jobstatus", "jobstate"} and job["jobstate"] == "Pending"
    states = []
    for _ in range(100):
        s = (await api.get(f"{CORE}/status/{job['jobid']}")).json()["data"]
        states.append(s["jobstate"])
        if s["jobstate"] in ("Succeeded", "Failed"):
            break
        await asyncio.sleep(0.05)
    assert states[-1] == "Succeeded" and "Running" in states and s["stdout"] == "slow\n" and s["exitCode"] == "0"
    spec = platform.backend.launched[-1]  # type: ignore[attr-defined]
    assert spec.input == b"the input" and spec.args == ("--wait", "1")
    assert (await api.post(f"{CORE}/status/{job['jobid']}")).json()["data"]["jobstate"] == "Succeeded"


async def test_schedules_and_their_status(platform: Platform, api: httpx.AsyncClient) -> None:
    aid = await make(api, "A103-cron", stdout="tick\n")
    r = await api.get(f"{CORE}/schedule/A103-cron", params={"cron": "*/5 * * * *"})
    assert r.status_code == 200, r.text
    d = r.json()["data"]
    assert d["jobstate"] == "Pending" and d["cron"] == "*/5 * * * *" and d["nextRunAt"] and d["lastJobid"] is None
    again = (await api.post(f"{CORE}/job/A103-cron", params={"cron": "*/5 * * * *"})).json()["data"]
    assert again["jobid"] == d["jobid"]  # the same schedule, not a second one
    other = await api.get(f"{CORE}/exec/A103-cron", params={"cron": "0 9 * * 1-5", "timezone": "Europe/Warsaw"})
    assert other.status_code == 200 and other.json()["data"]["jobid"] != d["jobid"]
    native = (await api.get(f"/api/v1/automations/{aid}")).json()
    assert [s["cron"] for s in native["schedules"]] == ["*/5 * * * *", "0 9 * * 1-5"]
    assert native["runMode"] == "scheduled"
    started = await platform.scheduler.tick(utcnow() + timedelta(minutes=6))
    assert started
    await platform.engine.wait(started[0], 10)
    s = (await api.get(f"{CORE}/status/{d['jobid']}")).json()["data"]
    assert s["lastJobid"] in started and s["jobstate"] == "Succeeded" and s["stdout"] == "tick\n"
    listing = (await api.get(f"{CORE}/browse")).json()["data"]
    mine = next(a for a in listing if a["name"] == "A103-cron")
    assert {x["jobid"] for x in mine["schedules"]} == {d["jobid"], other.json()["data"]["jobid"]}
    assert mine["lastJobid"] in started and mine["lastJobstate"] == "Succeeded"


async def test_error_codes(platform: Platform, api: httpx.AsyncClient) -> None:
    await make(api, "A104-x")
    assert_envelope(await api.get(f"{CORE}/exec/A999-missing"), 404, "AUTOMATION_NOT_FOUND")
    assert_envelope(await api.get(f"{CORE}/status/nope"), 404, "JOB_NOT_FOUND")
    assert_envelope(await api.get(f"{CORE}/schedule/A104-x"), 400, "CRON_REQUIRED")
    assert_envelope(await api.get(f"{CORE}/schedule/A104-x", params={"cron": "61 * * * *"}), 422, "INVALID_SCHEDULE")
    assert_envelope(
        await api.get(f"{CORE}/schedule/A104-x", params={"cron": "* * * * *", "timezone": "Mars/Base"}),
        422,
        "INVALID_SCHEDULE",
    )
    assert_envelope(
        await api.get(f"{CORE}/job/A104-x", params={"cron": "* * * * *", "args": "a"}), 400, "ARGS_WITH_CRON"
    )
    assert_envelope(await api.get(f"{CORE}/exec/A104-x", params={"args": "--msg 'open"}), 400, "INVALID_ARGS")
    assert_envelope(await api.put(f"{CORE}/exec/A104-x"), 405)
    async with client_for(platform, token=None) as anon:
        assert_envelope(await anon.get(f"{CORE}/browse"), 401, "UNAUTHORIZED")
    async with client_for(platform, "cp_not_a_token") as bad:
        assert_envelope(await bad.get(f"{CORE}/exec/A104-x"), 401, "UNAUTHORIZED")
    viewer = await new_token(platform, role="viewer")
    operator = await new_token(platform, role="operator")
    async with client_for(platform, viewer) as v:
        assert_envelope(await v.get(f"{CORE}/exec/A104-x"), 403, "FORBIDDEN")
        assert_envelope(await v.get(f"{CORE}/job/A999-missing"), 403, "FORBIDDEN")
    sysadmin = await new_token(platform, role="sys_administrator")  # seed 000's name of the admin role
    async with client_for(platform, sysadmin) as sa:
        assert (await sa.get(f"{CORE}/browse")).status_code == 200
    async with client_for(platform, operator) as o:
        assert (await o.get(f"{CORE}/exec/A104-x")).status_code == 200
        assert_envelope(await o.get(f"{CORE}/schedule/A104-x", params={"cron": "* * * * *"}), 403, "FORBIDDEN")
        assert_envelope(await o.get(f"{CORE}/browse"), 403, "FORBIDDEN")
    aid = (await api.get("/api/v1/automations", params={"filter": 'name eq "A104-x"'})).json()["data"][0]["id"]
    await api.post(f"/api/v1/automations/{aid}/actions/disable")
    assert_envelope(await api.get(f"{CORE}/job/A104-x"), 409, "AUTOMATION_DISABLED")
    other = await new_token(platform, role="admin", tenant="tenant-two")
    async with client_for(platform, other) as them:
        assert_envelope(await them.get(f"{CORE}/exec/A104-x"), 404, "AUTOMATION_NOT_FOUND")
        job = (await api.get(f"{CORE}/status/nope")).json()
        assert job["errors"][0]["code"] == "JOB_NOT_FOUND"


async def test_sync_quota_is_429(make_platform: PlatformFactory, database_url: str) -> None:
    platform = await make_platform(database_url, sync_concurrency_per_tenant=1)
    async with client_for(platform) as api:
        aid = await make(api, "A105-slow", sleep=3.0)
        first = asyncio.create_task(api.get(f"{CORE}/exec/A105-slow"))
        for _ in range(200):  # until the first run holds the tenant's only synchronous slot
            if (await api.get(f"/api/v1/automations/{aid}/runs")).json()["data"]:
                break
            await asyncio.sleep(0.02)
        r = await api.get(f"{CORE}/exec/A105-slow")
        assert_envelope(r, 429, "SYNC_LIMIT")
        assert int(r.headers["retry-after"]) >= 1
        assert (await first).json()["data"]["jobstate"] == "Succeeded"


async def test_token_must_match_the_hosts_tenant(make_platform: PlatformFactory, sqlite_url: str) -> None:
    platform = await make_platform(sqlite_url, tenant_hosts={"App.Example.com": "default", "b.example.com": "tb"})
    mine = await new_token(platform, role="admin", tenant="default")
    theirs = await new_token(platform, role="admin", tenant="tb")
    async with client_for(platform, mine) as api:
        await make(api, "A106-host")
        for host, status in (
            ("app.example.com", 200),
            ("APP.example.com:8443", 200),
            ("testserver", 200),  # names no tenant
            ("default", 200),  # the token's own tenant by name
            ("b.example.com", 401),
            ("tb", 401),  # another tenant by name
            ("tb:8080", 401),
        ):
            r = await api.get(f"{CORE}/browse", headers={"Host": host})
            assert r.status_code == status, (host, r.text)
            if status == 401:
                assert_envelope(r, 401, "TOKEN_HOST_MISMATCH")
    async with client_for(platform, theirs) as api:
        assert (await api.get(f"{CORE}/browse", headers={"Host": "b.example.com"})).status_code == 200
        assert_envelope(await api.get(f"{CORE}/browse", headers={"Host": "app.example.com"}), 401)
