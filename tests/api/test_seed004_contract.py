"""Seed 004 (../shared/seeds/004_3b2b0087bdc78981.txt) read line by line against our native API, over HTTP
(fake backend; SQLite and PostgreSQL). Organised by the seed's sections; each test quotes the seed lines it
proves. What other modules already prove in depth (filters' grammar, paging, webhooks, export archives,
usage values, rate-limit mechanics, spaces) is only touched here where the seed names something they skip.

Not applicable here (the seed's no-code product has it, a script platform has nothing to give it):
- lastRun.metrics.blocks[] (type snippetBlock|endpointBlock, rxBytes, txBytes, apiCalls, snippetId,
  endpointId, connectorId): blocks are the visual editor's building blocks; a script has none, so the list
  is always []. The run-level network {rxBytes, txBytes} and totalApiCalls are real measurements.
- snippetIds, endpointIds, connectorIds: "detected in the workspace" of the visual editor: always [].
  workspace itself is stored and returned as given.
- change-owner/move "All linked connections ... are detached": we have no per-user connections (tenant
  variables and secrets belong to the tenant, not to the owner).
- Scopes (automations, admin.automations, automations.private|shared, ...) and the roles AutomationCreator /
  AnalyticsAdmin: our tokens carry roles instead (admin = TenantAdmin/AnalyticsAdmin, developer =
  AutomationCreator); private/shared spaces are our spaces with viewer/operator/editor members.
- lastRunStatus "paused" and state "unavailable": values no script run takes (a sandbox is never paused; an
  automation is runnable unless disabled). They are never produced, and filtering on them finds nothing.
- archived / isArchived: always false. Retention deletes an old run whole (usage keeps counting it) rather
  than archiving it.

Deliberate differences: decided by the issues (which win over the seed), or cases the seed gives no code for:
- run context also takes scheduled, triggered and retry (issue 3: "Scheduled runs have context scheduled",
  retry "context retry"); POST .../runs with context api_sync answers 200 with the finished run (issue 2).
- 422 VALIDATION_FAILED for a well-formed body with invalid values (issue 2: "timeoutSeconds above the max
  rejected at create/update (422)"); malformed JSON, bad filter, sort or cursor are the seed's 400.
- 409 for states the seed gives no code for: a name already taken (seed 000 addresses automations by name),
  deleting an automation with unfinished runs, running a disabled one, stopping an ended run (issue 3:
  "finished -> 409 RUN_ENDED"); 429 past the quotas and the rate-limit tiers.
- 404 SPACE_NOT_FOUND for a spaceId the caller cannot see, on create and update too (an unseen space is
  answered like a missing one, as automations are); 413 for bodies over CP_MAX_BODY_BYTES.
- usage names: the seed's filter says scheduledRuns/triggeredRuns, its response enum scheduledRun/
  triggeredRun; we answer the filter's (plural) names, which issue 4 lists, and accept both in the filter.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from controlplane.db.session import transaction
from controlplane.services.platform import Platform
from controlplane.store import automations as automation_store
from tests.support.api import assert_envelope
from tests.support.platform import PlatformFactory, client_for, new_token
from tests.support.runs import make, run_sync, until
from tests.support.spaces import new_space, new_user

PREFIXES = ["/api/v1/automations", "/api/workflows/automations"]
BASE = PREFIXES[0]

RUN_STATUS = {
    "failed", "finished", "finished with warnings", "must stop", "not started",
    "running", "starting", "stopped", "exceeded limit", "queued",
}  # fmt: skip
LAST_RUN_STATUS = (RUN_STATUS - {"queued"}) | {"paused"}
STATES = {"available", "unavailable", "disabled"}
RUN_MODES = {"manual", "scheduled", "triggered", "webhook"}
CONTEXTS = {"test_run", "editor", "detail", "api_sync", "api_async", "webhook", "lookup"}

# - lastRun properties ... (seed lines 27-85): every key the seed lists for the automation's lastRun (the
# automation routes leave out null values: scheduledStartTime is there for scheduled runs only)
LAST_RUN_KEYS = {
    "id", "error", "title", "status", "context", "metrics", "ownerId", "spaceId", "testRun", "archived",
    "stopTime", "createdAt", "isTestRun", "startTime", "updatedAt", "isArchived", "executedById",
}  # fmt: skip
# GET /runs data properties (seed lines 1790-1830) and POST/GET one run (lines 1942-2010)
RUN_KEYS = {
    "id", "error", "title", "status", "context", "ownerId", "spaceId", "testRun", "archived", "duration",
    "stopTime", "createdAt", "isTestRun", "startTime", "updatedAt", "isArchived", "executedById", "metrics",
    "scheduledStartTime",
}  # fmt: skip
AUTOMATION_KEYS = {
    "id", "name", "state", "lastRun", "ownerId", "runMode", "spaceId", "duration", "createdAt", "lastRunAt",
    "updatedAt", "workspace", "snippetIds", "description", "endpointIds", "connectorIds", "lastRunStatus",
    "executionToken", "maxConcurrentRuns", "schedules",
}  # fmt: skip


def iso(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def finished_automation(
    api: httpx.AsyncClient, name: str = "seed", **behaviour: object
) -> tuple[str, dict[str, Any]]:
    aid = await make(api, name, stdout="out\n", **behaviour)
    return aid, await run_sync(api, aid)


# --- Endpoints: every path and method of the seed, its success code and its rate-limit tier ------------

# | Rate limit | Tier 1 (1000 requests per minute) |  /  | Rate limit | Tier 2 (100 requests per minute) |
TIER1, TIER2 = "1000", "100"


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_every_endpoint_answers_its_success_code_and_tier(
    platform: Platform, api: httpx.AsyncClient, prefix: str
) -> None:
    async def call(method: str, path: str, status: int, tier: str, **kw: Any) -> httpx.Response:
        r = await api.request(method, prefix + path, **kw)
        assert r.status_code == status, (method, path, r.text)
        assert r.headers["x-ratelimit-limit"] == tier, (method, path)
        return r

    me = (await api.get(f"{prefix}/{await make(api, 'probe')}")).json()["ownerId"]
    # "Creates a new automation." 201 Created, Tier 2
    created = (await call("POST", "", 201, TIER2, json=long_body("ep"))).json()
    aid = created["id"]
    # "Retrieves a list of the automations that the requesting user has access to." 200, Tier 1
    listed = (await call("GET", "", 200, TIER1)).json()
    assert set(listed) == {"data", "links"} and aid in [a["id"] for a in listed["data"]]
    await call("GET", f"/{aid}", 200, TIER1)  # "Retrieves the full definition of an automation."
    await call("PUT", f"/{aid}", 200, TIER2, json={"description": "put"})  # "Updates the full definition"
    # runs: "Creates a run for a specific automation." context "Can be one of: "api"" -> 201 Created
    run = (await call("POST", f"/{aid}/runs", 201, TIER2, json={"context": "api"})).json()
    assert run["context"] in CONTEXTS and run["status"] in RUN_STATUS
    rid = run["id"]
    await call("GET", f"/{aid}/runs", 200, TIER1)  # "Retrieves a list of runs for a specific automation."
    await call("GET", f"/{aid}/runs/{rid}", 200, TIER1)  # "Retrieves a specific run for an automation."
    export = (await call("POST", f"/{aid}/runs/{rid}/actions/export", 200, TIER2)).json()
    assert set(export) == {"url"} and export["url"].startswith("http")  # "- urlstring"
    debug = await call("GET", f"/{aid}/runs/{rid}/debug", 200, TIER1)  # "- text/plainstring"
    assert debug.headers["content-type"].startswith("text/plain") and debug.text.startswith("http")
    await call("POST", f"/{aid}/runs/{rid}/actions/stop", 204, TIER2)  # "Forcefully stops" 204
    await until(api, aid, rid, "stopped")
    retry = await call("POST", f"/{aid}/runs/{rid}/actions/retry", 204, TIER2)  # "Retries a specific run" 204
    assert retry.content == b""
    await call("POST", f"/{aid}/runs/{retry.headers['x-run-id']}/actions/stop", 204, TIER2)
    # actions on the automation
    copy = (await call("POST", f"/{aid}/actions/copy", 201, TIER2, json={"name": "ep-copy"})).json()
    assert copy["id"] and copy["id"] != aid  # "201 Created - idstring"
    default = (await api.get("/api/v1/spaces")).json()["data"][0]["id"]
    await call("POST", f"/{copy['id']}/actions/change-space", 204, TIER2, json={"spaceId": default})
    await call("POST", f"/{copy['id']}/actions/change-owner", 204, TIER2, json={"userId": me})
    await call("POST", f"/{copy['id']}/actions/move", 204, TIER2, json={"userId": me})
    await call("POST", f"/{copy['id']}/actions/disable", 204, TIER2)
    await call("POST", f"/{copy['id']}/actions/enable", 204, TIER2)
    await call("DELETE", f"/{copy['id']}", 204, TIER2)  # "Deletes an automation." 204 No Content
    # settings and usage
    settings = (await call("GET", "/settings", 200, TIER1)).json()
    assert settings == {"maxConcurrentRunsPerAutomation": 10}  # Example Response
    put = await call("PUT", "/settings", 200, TIER2, json={"maxConcurrentRunsPerAutomation": 10})
    assert put.json() == {"maxConcurrentRunsPerAutomation": 10}
    await call("GET", "/usage", 200, TIER1, params={"filter": 'name eq "runs"'})


def _long_files() -> dict[str, str]:
    return {"main.py": "pass", "fake.json": json.dumps({"sleep": 60})}


def long_body(name: str) -> dict[str, Any]:
    return {"name": name, "files": _long_files(), "entrypoint": "main.py"}


# --- Errors: 401, 403, 404 in the envelope on every endpoint --------------------------------------------

# (method, path, body) with {a} the automation and {r} a run
ENDPOINTS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "", None),
    ("POST", "", {"name": "n", "code": "x"}),
    ("GET", "/{a}", None),
    ("PUT", "/{a}", {"name": "n"}),
    ("DELETE", "/{a}", None),
    ("POST", "/{a}/actions/change-owner", {"userId": "u"}),
    ("POST", "/{a}/actions/change-space", {"spaceId": "s"}),
    ("POST", "/{a}/actions/copy", {"name": "c"}),
    ("POST", "/{a}/actions/disable", None),
    ("POST", "/{a}/actions/enable", None),
    ("POST", "/{a}/actions/move", {"userId": "u"}),
    ("GET", "/{a}/runs", None),
    ("POST", "/{a}/runs", {"context": "api"}),
    ("GET", "/{a}/runs/{r}", None),
    ("POST", "/{a}/runs/{r}/actions/export", None),
    ("POST", "/{a}/runs/{r}/actions/retry", None),
    ("POST", "/{a}/runs/{r}/actions/stop", None),
    ("GET", "/{a}/runs/{r}/debug", None),
    ("GET", "/settings", None),
    ("PUT", "/settings", {"maxConcurrentRunsPerAutomation": 5}),
    ("GET", "/usage", None),
]


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_401_on_every_endpoint_without_or_with_a_bad_token(platform: Platform, prefix: str) -> None:
    """401 Unauthorized - errors [{code, title, detail}] - traceId "A way to trace the source of the error."."""
    async with client_for(platform) as api:
        aid, run = await finished_automation(api)
    for token in (None, "cp_not_a_token"):
        async with client_for(platform, token) as anon:
            for method, path, body in ENDPOINTS:
                url = prefix + path.format(a=aid, r=run["id"])
                first = assert_envelope(await anon.request(method, url, json=body), 401, "UNAUTHORIZED")
                assert first["title"], (method, path)


async def test_404_for_a_missing_automation_or_run_on_every_endpoint(api: httpx.AsyncClient) -> None:
    """404 Not found on every {id} endpoint (and {runId} one), same envelope."""
    aid, _ = await finished_automation(api)
    missing = str(uuid.uuid4())
    for method, path, body in ENDPOINTS:
        if "{a}" not in path:
            continue
        first = assert_envelope(
            await api.request(method, BASE + path.format(a=missing, r=missing), json=body), 404, "NOT_FOUND"
        )
        assert missing in str(first.get("detail")), (method, path)
        if "{r}" in path:
            assert_envelope(await api.request(method, BASE + path.format(a=aid, r=missing), json=body), 404)


async def test_403_where_the_role_does_not_allow_it(platform: Platform, api: httpx.AsyncClient) -> None:
    """403 Forbidden: writes for a viewer; change-owner/move, settings, usage and listAll for non-admins
    ("The requesting user must be assigned the TenantAdmin or AnalyticsAdmin role", "Restricted to tenant
    admins and analytics admins")."""
    aid, run = await finished_automation(api)
    async with client_for(platform, await new_token(platform, role="viewer")) as viewer:
        for method, path, body in ENDPOINTS:
            if method == "GET" and path not in ("/settings", "/usage"):
                continue
            url = BASE + path.format(a=aid, r=run["id"])
            assert_envelope(await viewer.request(method, url, json=body), 403, "FORBIDDEN")
    async with client_for(platform, await new_token(platform, role="developer")) as dev:
        for method, path in (("POST", "/{a}/actions/change-owner"), ("POST", "/{a}/actions/move")):
            r = await dev.request(method, BASE + path.format(a=aid), json={"userId": "x"})
            assert_envelope(r, 403, "FORBIDDEN")
        for method, path in (("GET", "/settings"), ("PUT", "/settings"), ("GET", "/usage")):
            r = await dev.request(method, BASE + path, json={"maxConcurrentRunsPerAutomation": 5})
            assert_envelope(r, 403, "FORBIDDEN")
        assert_envelope(await dev.get(BASE, params={"listAll": "true"}), 403, "FORBIDDEN")


# --- GET /automations ------------------------------------------------------------------------------------

# "Can be one of: "id""name""runMode""state""createdAt""updatedAt""lastRunAt""lastRunStatus""+id"...
# ..."-lastRunStatus""maxConcurrentRuns""+maxConcurrentRuns""-maxConcurrentRuns""
SORT_FIELDS = ["id", "name", "runMode", "state", "createdAt", "updatedAt", "lastRunAt", "lastRunStatus"]
SORT_FIELDS += ["maxConcurrentRuns"]


async def test_list_sorts_on_every_value_the_seed_names(api: httpx.AsyncClient) -> None:
    specs = [("c-hook", "webhook", 3, True), ("a-man", "manual", 7, False), ("b-trig", "triggered", 1, True)]
    ids = []
    for name, mode, most, run in specs:
        r = await api.post(BASE, json={"name": name, "code": "x", "runMode": mode, "maxConcurrentRuns": most})
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
        if run:
            await run_sync(api, r.json()["id"])
    assert (await api.post(f"{BASE}/{ids[1]}/actions/disable")).status_code == 204
    for field in SORT_FIELDS:
        for sign in ("", "+", "-"):
            r = await api.get(BASE, params={"sort": sign + field})
            assert r.status_code == 200, (sign + field, r.text)
            rows = r.json()["data"]
            assert sorted(a["id"] for a in rows) == sorted(ids)
            values = [a[field] for a in rows if a.get(field) is not None]
            if field.endswith("At"):
                values = [iso(v) for v in values]
            assert values == sorted(values, reverse=sign == "-"), (sign + field, values)


async def test_list_filters_on_every_attribute_the_seed_allows(platform: Platform, api: httpx.AsyncClient) -> None:
    """Seed: "Allowed filters: name,runMode,lastRunStatus,ownerId,spaceId." and "- limitinteger"."""
    space = await new_space(api)
    failing = await make(api, "failing", exitCode=3)
    await run_sync(api, failing)
    hook = (await api.post(BASE, json={"name": "hook", "code": "x", "runMode": "webhook", "spaceId": space})).json()
    token, dev_id = await new_user(api, "developer")
    async with client_for(platform, token) as dev:
        mine = (await dev.post(BASE, json={"name": "mine", "code": "x"})).json()["id"]

    async def names(filter: str, **params: Any) -> list[str]:
        r = await api.get(BASE, params={"filter": filter, **params})
        assert r.status_code == 200, (filter, r.text)
        return sorted(a["name"] for a in r.json()["data"])

    assert await names('name eq "hook"') == ["hook"]
    assert await names('runMode eq "webhook"') == ["hook"]
    assert await names('lastRunStatus eq "failed"') == ["failing"]
    assert await names(f'ownerId eq "{dev_id}"') == ["mine"]
    assert await names(f'spaceId eq "{space}"') == ["hook"]
    assert await names(f'spaceId eq "{space}" and runMode eq "webhook"') == ["hook"]
    page = (await api.get(BASE, params={"limit": 1, "sort": "name"})).json()
    assert [a["name"] for a in page["data"]] == ["failing"] and page["links"]["next"]["href"]
    assert mine and hook["id"]


async def test_list_and_get_carry_every_field_of_the_seed(api: httpx.AsyncClient) -> None:
    """data properties (seed lines 20-132): id ... maxConcurrentRuns, with lastRun's own properties."""
    aid, run = await finished_automation(api, stderr="careful\n")
    listed = (await api.get(BASE)).json()["data"][0]
    got = (await api.get(f"{BASE}/{aid}")).json()
    for doc in (listed, got):
        assert AUTOMATION_KEYS <= set(doc), AUTOMATION_KEYS - set(doc)
        assert doc["state"] in STATES and doc["runMode"] in RUN_MODES
        assert doc["lastRunStatus"] in LAST_RUN_STATUS
        assert isinstance(doc["duration"], int)  # "- durationinteger"
        assert isinstance(doc["maxConcurrentRuns"], int) and isinstance(doc["executionToken"], str)
        for key in ("snippetIds", "endpointIds", "connectorIds"):
            assert doc[key] == []
        last = doc["lastRun"]
        assert LAST_RUN_KEYS <= set(last), LAST_RUN_KEYS - set(last)
        assert last["id"] == run["id"] and last["status"] == "finished with warnings" in LAST_RUN_STATUS
        assert last["context"] in CONTEXTS and last["ownerId"] == doc["ownerId"]
        assert last["spaceId"] == doc["spaceId"] and last["executedById"] == run["executedById"]
        assert last["testRun"] is last["isTestRun"] is False and last["archived"] is last["isArchived"] is False
        metrics = last["metrics"]  # "- blocks ... - network { rxBytes, txBytes } - totalApiCalls"
        assert metrics["blocks"] == [] and set(metrics["network"]) == {"rxBytes", "txBytes"}
        assert isinstance(metrics["totalApiCalls"], int)
        assert iso(last["startTime"]) <= iso(last["stopTime"]) <= iso(last["updatedAt"])
        # "lastRunAt: The date and time when the last automation run was finished."
        assert iso(doc["lastRunAt"]) >= iso(last["stopTime"])
    # "Duration of the last run, indicated in seconds. Calculated from start and stop times."
    seconds = (iso(got["lastRun"]["stopTime"]) - iso(got["lastRun"]["startTime"])).total_seconds()
    assert got["duration"] == round(seconds)


async def test_duration_of_the_last_run_outlives_the_run(platform: Platform, api: httpx.AsyncClient) -> None:
    """Seed: "- durationinteger Duration of the last run": kept with lastRunAt and lastRunStatus when retention has
    deleted the run itself (lastRun then goes: there is no run to show)."""
    aid, _ = await finished_automation(api, sleep=1.2)
    before = (await api.get(f"{BASE}/{aid}")).json()
    assert before["duration"] >= 1
    assert await platform.housekeeper.retention.sweep(now=datetime.now(UTC) + timedelta(days=3650))
    after = (await api.get(f"{BASE}/{aid}")).json()
    assert "lastRun" not in after and (await api.get(f"{BASE}/{aid}/runs")).json()["data"] == []
    for key in ("duration", "lastRunAt", "lastRunStatus"):
        assert after[key] == before[key], key


async def test_test_runs_are_flagged(api: httpx.AsyncClient) -> None:
    """Seed: "testRun / isTestRun: Indicates if this automation run is a test run." (context test_run)"""
    aid = await make(api, "tested")
    r = await api.post(f"{BASE}/{aid}/runs", json={"context": "test_run"})
    assert r.status_code == 200 and r.json()["testRun"] is r.json()["isTestRun"] is True
    last = (await api.get(f"{BASE}/{aid}")).json()["lastRun"]
    assert last["context"] == "test_run" and last["testRun"] is last["isTestRun"] is True


async def test_queued_last_run_is_not_started_never_queued(make_platform: PlatformFactory, database_url: str) -> None:
    """lastRunStatus "Can be one of: "failed""finished""finished with warnings""must stop""not started""paused"
    ..." (no "queued"), while lastRun.status does list "queued". Also the runs filter's "billable"."""
    platform = await make_platform(database_url, background_concurrency_total=1, dispatch_poll_seconds=0.05)
    async with client_for(platform) as api:
        aid = await make(api, "slow", sleep=60)
        running = (await api.post(f"{BASE}/{aid}/runs", json={"context": "api"})).json()["id"]
        await until(api, aid, running, "running")
        queued = (await api.post(f"{BASE}/{aid}/runs", json={"context": "api"})).json()["id"]
        doc = (await api.get(f"{BASE}/{aid}")).json()
        assert doc["lastRun"]["id"] == queued and doc["lastRun"]["status"] == "queued"
        assert doc["lastRunStatus"] == "not started"
        found = (await api.get(BASE, params={"filter": 'lastRunStatus eq "not started"'})).json()["data"]
        assert [a["id"] for a in found] == [aid]
        assert (await api.get(BASE, params={"filter": 'lastRunStatus eq "queued"'})).json()["data"] == []

        # "Allowed filters: status,context,startTime,title,spaceId,ownerId,executedById,billable."
        # billable: the run got a sandbox (it has a startTime), so it counts in usage
        assert (await api.post(f"{BASE}/{aid}/runs/{queued}/actions/stop")).status_code == 204
        assert (await api.post(f"{BASE}/{aid}/runs/{running}/actions/stop")).status_code == 204
        await until(api, aid, running, "stopped")
        runs = {r["id"]: r for r in (await api.get(f"{BASE}/{aid}/runs")).json()["data"]}
        assert runs[running]["billable"] is True and runs[queued]["billable"] is False
        billed = (await api.get(f"{BASE}/{aid}/runs", params={"filter": "billable eq true"})).json()["data"]
        assert [r["id"] for r in billed] == [running]
        free = (await api.get(f"{BASE}/{aid}/runs", params={"filter": "billable eq false"})).json()["data"]
        assert [r["id"] for r in free] == [queued]
        assert_envelope(await api.get(f"{BASE}/{aid}/runs", params={"filter": 'billable eq "yes"'}), 400)
        assert (await api.get(f"{BASE}/{aid}")).json()["lastRunStatus"] == "stopped"


# --- POST /automations -----------------------------------------------------------------------------------


async def test_create_with_the_seeds_example_body(api: httpx.AsyncClient) -> None:
    """-d '{"name":"My automation","spaceId":...,"schedules":[{"stopAt":"2022-12-01 00:00:00","startAt":
    "2022-01-01 00:00:00","interval":30,"timezone":"Europe/Stockholm"}],"workspace":{},"description":"",
    "maxConcurrentRuns":1}' (plus our code; the seed's spaceId is replaced by a real one of ours)."""
    space = await new_space(api)
    body = {
        "name": "My automation",
        "spaceId": space,
        "schedules": [
            {
                "stopAt": "2022-12-01 00:00:00",
                "startAt": "2022-01-01 00:00:00",
                "interval": 30,
                "timezone": "Europe/Stockholm",
            }
        ],
        "workspace": {},
        "description": "",
        "maxConcurrentRuns": 1,
        "code": "print('hi')",
    }
    r = await api.post(BASE, json=body)
    assert r.status_code == 201, r.text
    a = r.json()
    assert a["name"] == "My automation" and a["spaceId"] == space and a["maxConcurrentRuns"] == 1
    assert a["state"] == "available" and a["runMode"] == "scheduled" and a["workspace"] == {}
    [sched] = a["schedules"]  # schedules properties: id, stopAt, startAt, interval, timezone, lastStartedAt
    assert sched["id"] and sched["interval"] == 30 and sched["timezone"] == "Europe/Stockholm"
    assert iso(sched["startAt"]) == datetime(2021, 12, 31, 23, 0, tzinfo=UTC)  # 00:00 in Stockholm
    assert iso(sched["stopAt"]) == datetime(2022, 11, 30, 23, 0, tzinfo=UTC)
    assert "nextRunAt" not in sched  # stopAt is past: the schedule never fires again
    # "The maximum value is defined in automations settings."
    over = await api.post(BASE, json={"name": "too many", "code": "x", "maxConcurrentRuns": 11})
    assert_envelope(over, 422, "LIMIT_EXCEEDED")
    assert (await api.put(f"{BASE}/settings", json={"maxConcurrentRunsPerAutomation": 11})).status_code == 200
    assert (await api.post(BASE, json={"name": "too many", "code": "x", "maxConcurrentRuns": 11})).status_code == 201
    # - namestringRequired
    assert_envelope(await api.post(BASE, json={"code": "x"}), 422, "VALIDATION_FAILED")
    assert_envelope(await api.post(BASE, content=b"{", headers={"content-type": "application/json"}), 400)


@pytest.mark.parametrize("mode", sorted(RUN_MODES))
async def test_every_run_mode_is_accepted_and_kept(api: httpx.AsyncClient, mode: str) -> None:
    """runMode "Defines how the automation run is started. Can be one of: "manual""scheduled""triggered""webhook""."""
    r = await api.post(BASE, json={"name": f"m-{mode}", "code": "x", "runMode": mode})
    assert r.status_code == 201 and r.json()["runMode"] == mode
    assert (await api.get(f"{BASE}/{r.json()['id']}")).json()["runMode"] == mode


# --- PUT /automations/{id} -------------------------------------------------------------------------------


async def test_put_takes_the_seeds_body_and_name_is_optional(api: httpx.AsyncClient) -> None:
    """Request Body: "- namestring" (not Required), schedules, workspace, description, maxConcurrentRuns;
    -d '{"name":"My automation","schedules":[...],"workspace":{},"description":"","maxConcurrentRuns":1}'."""
    aid = await make(api, "before", stdout="kept\n")
    r = await api.put(f"{BASE}/{aid}", json={"description": "no name given", "maxConcurrentRuns": 2})
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "before" and r.json()["description"] == "no name given"
    assert r.json()["maxConcurrentRuns"] == 2
    sched = {"stopAt": "2032-12-01 00:00:00", "startAt": "2032-01-01 00:00:00", "interval": 30}
    body = {
        "name": "My automation",
        "schedules": [{**sched, "timezone": "Europe/Stockholm"}],
        "workspace": {},
        "description": "",
        "maxConcurrentRuns": 1,
    }
    r = await api.put(f"{BASE}/{aid}", json=body)
    assert r.status_code == 200, r.text
    a = r.json()
    assert a["name"] == "My automation" and a["description"] == "" and a["maxConcurrentRuns"] == 1
    assert a["schedules"][0]["interval"] == 30 and a["runMode"] == "scheduled"
    assert (await run_sync(api, aid))["stdout"] == "kept\n"  # the code a seed client never sent is kept
    # 409 Conflict with the current state of the resource
    other = await make(api, "other")
    assert_envelope(await api.put(f"{BASE}/{other}", json={"name": "My automation"}), 409, "NAME_TAKEN")
    assert_envelope(await api.put(f"{BASE}/{other}", json={"name": ""}), 422)


# --- actions: change-owner, move, change-space, copy, disable, enable ----------------------------------


@pytest.mark.parametrize("action", ["change-owner", "move"])
async def test_change_owner_removes_the_history_and_change_logs(
    platform: Platform, api: httpx.AsyncClient, action: str
) -> None:
    """Seed: "Changes the owner of an automation to another user. This action removes the history and change logs
    of this automation." Unfinished runs are not history yet: they stay. Usage keeps counting."""
    aid = await make(api, "handed-over", stdout="old\n")
    first = await run_sync(api, aid)
    r = await api.put(f"{BASE}/{aid}", json={"args": ["v2"]})  # version 2: the change log has two entries
    assert r.status_code == 200 and r.json()["version"] == 2, r.text
    second = await run_sync(api, aid)
    r = await api.put(f"{BASE}/{aid}", json={"files": _long_files(), "entrypoint": "main.py"})  # version 3
    assert r.status_code == 200 and r.json()["version"] == 3, r.text
    live = (await api.post(f"{BASE}/{aid}/runs", json={"context": "api"})).json()["id"]
    await until(api, aid, live, "running")
    _, new_owner = await new_user(api, "developer")

    r = await api.post(f"{BASE}/{aid}/actions/{action}", json={"userId": new_owner})
    assert r.status_code == 204, r.text
    assert [x["id"] for x in (await api.get(f"{BASE}/{aid}/runs")).json()["data"]] == [live]
    for gone in (first["id"], second["id"]):
        assert_envelope(await api.get(f"{BASE}/{aid}/runs/{gone}"), 404)
        assert_envelope(await api.get(f"{BASE}/{aid}/runs/{gone}/logs"), 404)
    doc = (await api.get(f"{BASE}/{aid}")).json()
    assert doc["ownerId"] == new_owner and doc["lastRun"]["id"] == live and doc["version"] == 3
    async with transaction(platform.sessions) as s:  # the change log: only the version the live run uses
        kept = [v for v in (1, 2, 3) if await automation_store.get_version(s, aid, v) is not None]
    assert kept == [3]
    today = datetime.now(UTC).date().isoformat()
    used = (await api.get(f"{BASE}/usage", params={"filter": f'name eq "runs" and date eq "{today}"'})).json()
    assert used["data"][0]["value"] >= 2  # usage outlives the history

    assert (await api.post(f"{BASE}/{aid}/runs/{live}/actions/stop")).status_code == 204
    await until(api, aid, live, "stopped")
    # giving it to the owner it already has removes nothing
    assert (await api.post(f"{BASE}/{aid}/actions/{action}", json={"userId": new_owner})).status_code == 204
    assert [x["id"] for x in (await api.get(f"{BASE}/{aid}/runs")).json()["data"]] == [live]
    # once more to someone else: the last run was history too, so lastRun* go with it
    _, third = await new_user(api, "developer")
    assert (await api.post(f"{BASE}/{aid}/actions/{action}", json={"userId": third})).status_code == 204
    doc = (await api.get(f"{BASE}/{aid}")).json()
    assert "lastRun" not in doc and "lastRunStatus" not in doc and "lastRunAt" not in doc
    assert (await api.get(f"{BASE}/{aid}/runs")).json()["data"] == []
    # - userIdstringRequired
    assert_envelope(await api.post(f"{BASE}/{aid}/actions/{action}", json={}), 422, "VALIDATION_FAILED")


async def test_copy_answers_201_with_the_new_id(api: httpx.AsyncClient) -> None:
    """copy: "Request Body Required - namestringRequired Name of the new automation." 201 "- idstring";
    Example Response { "id": "00000000-0000-0000-0000-000000000000"}."""
    aid = await make(api, "orig", stdout="same code\n")
    r = await api.post(f"{BASE}/{aid}/actions/copy", json={"name": "My automation"})
    assert r.status_code == 201 and uuid.UUID(r.json()["id"]) and r.json()["id"] != aid
    assert (await run_sync(api, r.json()["id"]))["stdout"] == "same code\n"
    assert_envelope(await api.post(f"{BASE}/{aid}/actions/copy", json={}), 422, "VALIDATION_FAILED")


async def test_disable_and_enable(api: httpx.AsyncClient) -> None:
    """Seed: "Disables an automation so that it cannot be run." / "Enables an automation so that it can be run"."""
    aid = await make(api, "toggled")
    assert (await api.post(f"{BASE}/{aid}/actions/disable")).status_code == 204
    assert (await api.get(f"{BASE}/{aid}")).json()["state"] == "disabled"
    assert_envelope(await api.post(f"{BASE}/{aid}/runs", json={"context": "api"}), 409, "AUTOMATION_DISABLED")
    assert (await api.post(f"{BASE}/{aid}/actions/enable")).status_code == 204
    assert (await api.get(f"{BASE}/{aid}")).json()["state"] == "available"
    assert (await api.post(f"{BASE}/{aid}/runs", json={"context": "api"})).status_code == 201


async def test_change_space_needs_space_id(api: httpx.AsyncClient) -> None:
    """change-space: "- spaceIdstringRequired The unique identifier of the new space." -> 204."""
    aid = await make(api, "spaced")
    space = await new_space(api)
    assert (await api.post(f"{BASE}/{aid}/actions/change-space", json={"spaceId": space})).status_code == 204
    assert (await api.get(f"{BASE}/{aid}")).json()["spaceId"] == space
    assert_envelope(await api.post(f"{BASE}/{aid}/actions/change-space", json={}), 422, "VALIDATION_FAILED")


# --- runs ------------------------------------------------------------------------------------------------

RUN_SORTS = ["id", "status", "startTime"]  # "Can be one of: "id""status""startTime""-id""-status"...


async def test_runs_list_sorts_filters_and_fields(platform: Platform, api: httpx.AsyncClient) -> None:
    """GET .../runs: "Allowed filters: status,context,startTime,title,spaceId,ownerId,executedById,billable."
    sort id|status|startTime with +/-; data properties as the seed lists them; links next/prev."""
    ok = await make(api, "runs", stdout="x\n")
    first = await run_sync(api, ok, title="first")
    second = (await api.post(f"{BASE}/{ok}/runs", json={"context": "api", "title": "second"})).json()
    second = await until(api, ok, second["id"], "finished")
    op_token = await new_token(platform, role="operator")
    async with client_for(platform, op_token) as op:
        third = (await op.post(f"{BASE}/{ok}/runs", json={"context": "test_run"})).json()
    ids = {first["id"], second["id"], third["id"]}
    page = (await api.get(f"{BASE}/{ok}/runs")).json()
    assert set(page) == {"data", "links"}
    for run in page["data"]:
        assert RUN_KEYS <= set(run), RUN_KEYS - set(run)
        assert run["status"] in RUN_STATUS and run["context"] in CONTEXTS
        assert isinstance(run["duration"], int)  # "- durationinteger ... Calculated from start and stop times"
    for field in RUN_SORTS:
        for sign in ("", "+", "-"):
            rows = (await api.get(f"{BASE}/{ok}/runs", params={"sort": sign + field})).json()["data"]
            assert {r["id"] for r in rows} == ids
            values = [iso(r[field]) if field == "startTime" else r[field] for r in rows]
            assert values == sorted(values, reverse=sign == "-"), (sign + field, values)

    async def found(filter: str) -> set[str]:
        r = await api.get(f"{BASE}/{ok}/runs", params={"filter": filter})
        assert r.status_code == 200, (filter, r.text)
        return {x["id"] for x in r.json()["data"]}

    assert await found('status eq "finished"') == ids
    assert await found('context eq "api_async"') == {second["id"]}
    assert await found('context eq "test_run"') == {third["id"]}
    assert await found('title eq "first"') == {first["id"]}
    assert await found(f'startTime ge "{second["startTime"]}"') == {second["id"], third["id"]}
    assert await found(f'spaceId eq "{first["spaceId"]}"') == ids
    assert await found(f'ownerId eq "{first["ownerId"]}"') == ids
    assert await found(f'executedById eq "{third["executedById"]}"') == {third["id"]}
    assert await found("billable eq true") == ids
    # "(?query=-startTime=> sort on the startTime field using descending order)": the seed's own spelling
    by_query = (await api.get(f"{BASE}/{ok}/runs", params={"query": "-startTime"})).json()["data"]
    assert [r["id"] for r in by_query] == [third["id"], second["id"], first["id"]]
    limited = (await api.get(f"{BASE}/{ok}/runs", params={"limit": 2})).json()
    assert len(limited["data"]) == 2 and limited["links"]["next"]["href"]
    assert_envelope(await api.get(f"{BASE}/{ok}/runs", params={"sort": "-title"}), 400, "INVALID_SORT")
    assert_envelope(await api.get(f"{BASE}/{ok}/runs", params={"filter": 'colour eq "x"'}), 400, "INVALID_FILTER")


async def test_create_get_and_actions_of_a_run(api: httpx.AsyncClient) -> None:
    """POST .../runs -d '{"context":"api"}' -> 201 with the run (id, error, title, status, context, metrics,
    ownerId, spaceId, testRun, archived, stopTime, createdAt, isTestRun, startTime, updatedAt, isArchived,
    executedById, scheduledStartTime); retry 204 "creating a new run using the same inputs"; stop 204."""
    aid = await make(api, "api-run", stdout="done\n")
    r = await api.post(f"{BASE}/{aid}/runs", json={"context": "api"})
    assert r.status_code == 201, r.text
    run = r.json()
    assert RUN_KEYS - {"duration"} <= set(run) and run["context"] == "api_async"
    assert set(run["metrics"]) >= {"blocks", "network", "totalApiCalls"}
    done = await until(api, aid, run["id"], "finished")
    assert done["stdout"] == "done\n" and done["executedById"] and done["title"] == "api-run"
    # "Can be one of: "api"": anything outside the contexts is a clear error
    assert_envelope(await api.post(f"{BASE}/{aid}/runs", json={"context": "webhook"}), 422, "VALIDATION_FAILED")
    retry = await api.post(f"{BASE}/{aid}/runs/{run['id']}/actions/retry")
    assert retry.status_code == 204 and retry.headers["location"].endswith(retry.headers["x-run-id"])
    again = await until(api, aid, retry.headers["x-run-id"], "finished")
    assert again["stdout"] == "done\n" and again["retryOf"] == run["id"]
    # the export's url and the debug URL (Example Response { "url": ".../runs/{runId}/debug" })
    url = (await api.post(f"{BASE}/{aid}/runs/{run['id']}/actions/export")).json()["url"]
    async with httpx.AsyncClient(transport=api._transport, base_url="http://testserver") as anon:
        assert (await anon.get(url)).status_code == 200  # a URL to download from, without a token
        debug_url = (await api.get(f"{BASE}/{aid}/runs/{run['id']}/debug")).text
        record = (await anon.get(debug_url)).json()
    assert record["run"]["id"] == run["id"] and record["timeline"][0]["event"] == "created"


# --- settings --------------------------------------------------------------------------------------------


async def test_settings_shape_and_bad_bodies(api: httpx.AsyncClient) -> None:
    """GET/PUT settings: { "maxConcurrentRunsPerAutomation": 10 }; PUT "Request Body Required"."""
    put = await api.put(f"{BASE}/settings", json={"maxConcurrentRunsPerAutomation": 4})
    assert put.status_code == 200 and put.json() == {"maxConcurrentRunsPerAutomation": 4}
    assert (await api.get(f"{BASE}/settings")).json() == {"maxConcurrentRunsPerAutomation": 4}
    assert_envelope(await api.put(f"{BASE}/settings", json={}), 422, "VALIDATION_FAILED")
    assert_envelope(await api.put(f"{BASE}/settings", json={"maxConcurrentRunsPerAutomation": 0}), 422)
    assert_envelope(await api.put(f"{BASE}/settings", content=b"x", headers={"content-type": "application/json"}), 400)


# --- usage -----------------------------------------------------------------------------------------------

USAGE_NAMES = ["runs", "scheduledRuns", "triggeredRuns", "webhookRuns", "duration", "bandwidthIn", "bandwidthOut"]


async def test_usage_takes_every_documented_name_and_answers_the_seeds_shape(api: httpx.AsyncClient) -> None:
    """Seed: "- filterstringRequired ... Supported enum values: runs,scheduledRuns,triggeredRuns,webhookRuns,duration,
    bandwidthIn,bandwidthOut" - "date (... e.g. "2025-08-01")" - "breakdownBy ... each automation";
    data: date, name, value (integer), automation {guid, name, ownerId}."""
    aid, _ = await finished_automation(api)
    today = datetime.now(UTC).date().isoformat()
    for name in [*USAGE_NAMES, "scheduledRun", "triggeredRun"]:
        r = await api.get(f"{BASE}/usage", params={"filter": f'name eq "{name}" and date eq "{today}"'})
        assert r.status_code == 200, (name, r.text)
        for entry in r.json()["data"]:
            assert set(entry) == {"date", "name", "value"} and entry["date"] == today
            assert entry["name"] in USAGE_NAMES and isinstance(entry["value"], int)
    per = await api.get(f"{BASE}/usage", params={"filter": 'name eq "runs"', "breakdownBy": "automation"})
    [entry] = per.json()["data"]
    me = (await api.get(f"{BASE}/{aid}")).json()
    assert entry["automation"] == {"guid": aid, "name": me["name"], "ownerId": me["ownerId"]} and entry["value"] == 1
    assert_envelope(await api.get(f"{BASE}/usage"), 400, "FILTER_REQUIRED")
