"""The scripting dialect (seed 002) over HTTP on the fake backend, on SQLite and PostgreSQL: every status
code the seed lists, the log listing and its paging, the request reaching the run, the native /response.
Real sandboxes answering through outputs/.response/ are in tests/e2e/test_dialect_scripting.py."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any, cast

import httpx
import pytest

from controlplane.backends.fake import FakeBackend
from controlplane.core.settings import Settings
from controlplane.dialects.scripting.service import REQUEST_MAGIC
from controlplane.services.platform import Platform
from tests.support.api import assert_envelope
from tests.support.platform import PlatformFactory, client_for, new_token
from tests.support.scripting import make

BASE = "/api/v1/automations"
METHODS = ("POST", "GET", "PUT", "DELETE", "PATCH")
DATE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def sent_request(platform: Platform) -> tuple[dict[str, Any], bytes]:
    """The wrapped request the last launched run got as its input (what the runner unwraps)."""
    data = bytes(cast(FakeBackend, platform.backend).launched[-1].input)
    assert data.startswith(REQUEST_MAGIC)
    line, _, body = data[len(REQUEST_MAGIC) :].partition(b"\n")
    return json.loads(line), body


async def test_the_scripts_answer_comes_back_for_every_method(api: httpx.AsyncClient, platform: Platform) -> None:
    answer = {"status": "201", "contentType": "text/csv", "body": "name;n\nJohn Smith;1\n"}
    sid = await make(api, "answers", response=answer)
    for method in METHODS:
        r = await api.request(
            method,
            f"/scripting/script/{sid}/run?a=1&a=2&b=",
            content=b'{"name": "John Smith"}',
            headers={"Content-Type": "application/json", "X-Custom": "yes"},
        )
        assert r.status_code == 201, r.text
        assert r.headers["content-type"] == "text/csv"  # exactly as the script said: no charset added
        assert r.content == b"name;n\nJohn Smith;1\n"
        doc, body = sent_request(platform)
        assert body == b'{"name": "John Smith"}'
        req = doc["request"]
        assert req["method"] == method and req["path"] == f"/scripting/script/{sid}/run"
        assert req["query"] == "a=1&a=2&b=" and req["queryParams"] == {"a": ["1", "2"], "b": [""]}
        assert req["contentType"] == "application/json" and req["headers"]["x-custom"] == "yes"
        assert "authorization" not in req["headers"] and req["scriptId"] == sid and req["mode"] == "run"
        assert doc["env"]["JETQUERY_REQUEST_METHOD"] == method
        assert doc["env"]["JETQUERY_REQUEST_FILE"] == "/work/request.json"
        run = (await api.get(f"{BASE}/{sid}/runs/{r.headers['x-execution-id']}")).json()
        assert run["context"] == "api_sync" and run["status"] == "finished"


async def test_any_content_type_and_the_script_name(api: httpx.AsyncClient, platform: Platform) -> None:
    await make(api, "by-name", stdout="Hello John Smith!\n")
    binary = bytes(range(256))
    r = await api.put("/scripting/script/by-name/run", content=binary, headers={"Content-Type": "image/png"})
    assert r.status_code == 200 and r.content == b"Hello John Smith!\n"  # stdout, as text/plain
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    doc, body = sent_request(platform)
    assert body == binary and doc["request"]["contentType"] == "image/png"
    r = await api.get("/scripting/script/by-name/run")  # no body, no content type
    assert r.status_code == 200
    doc, body = sent_request(platform)
    assert body == b"" and doc["request"]["contentType"] is None


@pytest.mark.parametrize(
    ("behaviour", "status", "code", "cause"),
    [
        ({"stderr": "boom\n", "exitCode": 3}, 502, "SCRIPT_FAILED", "NON_ZERO_EXIT"),
        ({"exitCode": 1, "response": {"status": "200", "body": "ok"}}, 502, "SCRIPT_FAILED", "NON_ZERO_EXIT"),
        ({"oom": True}, 502, "SCRIPT_FAILED", "OUT_OF_MEMORY"),
        ({"response": {"status": "99"}}, 502, "SCRIPT_FAILED", "INVALID_RESPONSE"),
        ({"response": {"contentType": "text/plain\r\nX-Evil: 1"}}, 502, "SCRIPT_FAILED", "INVALID_RESPONSE"),
        ({"launchError": "failed"}, 500, "SCRIPT_NOT_STARTED", "LAUNCH_FAILED"),
        ({"launchError": "image"}, 500, "SCRIPT_NOT_STARTED", "SANDBOX_IMAGE_MISSING"),
    ],
)
async def test_executions_that_do_not_deliver(
    api: httpx.AsyncClient, behaviour: dict[str, Any], status: int, code: str, cause: str
) -> None:
    sid = await make(api, **behaviour)
    r = await api.post(f"/scripting/script/{sid}/run", json={"name": "x"})
    assert_envelope(r, status, code)
    assert cause in [e["code"] for e in r.json()["errors"][1:]]
    execution = r.headers["x-execution-id"]
    logs = (await api.get(f"/scripting/log/script/{sid}")).json()["filteredLogs"]
    assert [(e["executionId"], e["statusCode"]) for e in logs] == [(execution, status)]
    content = await api.get(f"/scripting/log/script/{sid}/execution/{execution}")
    assert content.status_code == 200 and content.headers["x-script-status-code"] == str(status)
    assert content.headers["content-type"] == "application/json"
    assert content.json()["errors"] == r.json()["errors"]  # what /run answered, minus the traceId
    native = await api.get(f"{BASE}/{sid}/runs/{execution}/response")
    assert_envelope(native, 409, "RUN_HAS_NO_RESPONSE")


async def test_a_script_past_its_deadline_is_504(api: httpx.AsyncClient) -> None:
    sid = await make(api, timeout=1, sleep=30)
    r = await api.patch(f"/scripting/script/{sid}/run")
    assert_envelope(r, 504, "SCRIPT_TIMEOUT")
    assert r.json()["errors"][1]["code"] == "RUN_TIMEOUT"
    logs = (await api.get(f"/scripting/log/script/{sid}")).json()
    assert logs["filteredLogs"][0]["statusCode"] == 504


async def test_auth_and_missing_scripts(api: httpx.AsyncClient, platform: Platform) -> None:
    sid = await make(api, stdout="x")
    paths = [
        f"/scripting/script/{sid}/run",
        f"/scripting/script/{sid}/background",
        f"/scripting/log/script/{sid}",
        f"/scripting/log/script/{sid}/execution/x",
    ]
    async with client_for(platform, token=None) as anonymous, client_for(platform, "cp_not_a_token") as bad:
        for path in paths:
            assert_envelope(await anonymous.get(path), 401, "UNAUTHORIZED")
            assert_envelope(await bad.get(path), 401, "UNAUTHORIZED")
    other = await new_token(platform, role="admin", tenant="other-tenant")
    async with client_for(platform, other) as stranger:
        for path in paths:
            theirs = await stranger.get(path)
            missing = await stranger.get(path.replace(sid, "00000000-0000-0000-0000-000000000000"))
            assert_envelope(theirs, 404, "NOT_FOUND")
            assert theirs.json()["errors"] == [
                {**e, "detail": e["detail"].replace("00000000-0000-0000-0000-000000000000", sid)}
                for e in missing.json()["errors"]
            ]  # another tenant's script is a missing one
    assert_envelope(await api.get(f"/scripting/log/script/{sid}/execution/nope"), 404)


async def test_viewers_may_not_query_logs_or_run(api: httpx.AsyncClient, platform: Platform) -> None:
    sid = await make(api, stdout="x")
    viewer = await new_token(platform, role="viewer")
    operator = await new_token(platform, role="operator")
    async with client_for(platform, viewer) as as_viewer, client_for(platform, operator) as as_operator:
        assert_envelope(await as_viewer.get(f"/scripting/log/script/{sid}"), 403, "FORBIDDEN")
        assert_envelope(await as_viewer.get(f"/scripting/log/script/{sid}/execution/x"), 403, "FORBIDDEN")
        assert_envelope(await as_viewer.post(f"/scripting/script/{sid}/run"), 403, "FORBIDDEN")
        assert (await as_operator.post(f"/scripting/script/{sid}/run")).status_code == 200
        assert (await as_operator.get(f"/scripting/log/script/{sid}")).status_code == 200


async def test_log_listing_pages_and_shows_the_latest_version(api: httpx.AsyncClient) -> None:
    sid = await make(api, "paged", response={"status": "207", "contentType": "application/json", "body": "{}"})
    done = [(await api.post(f"/scripting/script/{sid}/run")).headers["x-execution-id"] for _ in range(3)]
    page = await api.get(f"/scripting/log/script/{sid}", params={"limit": 2})
    assert page.status_code == 200
    doc = page.json()
    assert set(doc) == {"filteredLogs", "moreElements"} and doc["moreElements"] is True
    for entry in doc["filteredLogs"]:
        assert set(entry) == {"executionId", "scriptId", "executionDate", "statusCode"}
        assert entry["scriptId"] == sid and entry["statusCode"] == 207 and DATE.match(entry["executionDate"])
    rest = (await api.get(f"/scripting/log/script/{sid}", params={"limit": 2, "offset": 2})).json()
    assert rest["moreElements"] is False
    listed = [e["executionId"] for e in doc["filteredLogs"] + rest["filteredLogs"]]
    assert listed == done[::-1]  # newest first
    by_name = (await api.get("/scripting/log/script/paged")).json()
    assert [e["executionId"] for e in by_name["filteredLogs"]] == listed
    assert_envelope(await api.get(f"/scripting/log/script/{sid}", params={"limit": 0}), 422)
    content = await api.get(f"/scripting/log/script/{sid}/execution/{done[0]}")
    assert content.content == b"{}" and content.headers["content-type"] == "application/json"
    assert content.headers["x-script-status-code"] == "207"
    other = await make(api, "other")  # an execution is found under its own script only
    assert_envelope(await api.get(f"/scripting/log/script/{other}/execution/{done[0]}"), 404, "NOT_FOUND")
    # a new version of the script: its log starts empty; old executions stay readable by id
    files = {"main.py": "print(2)", "fake.json": "{}"}
    r = await api.put(f"{BASE}/{sid}", json={"name": "paged", "entrypoint": "main.py", "files": files})
    assert r.status_code == 200, r.text
    assert (await api.get(f"/scripting/log/script/{sid}")).json() == {"filteredLogs": [], "moreElements": False}
    assert (await api.get(f"/scripting/log/script/{sid}/execution/{done[0]}")).status_code == 200


async def test_background_is_202_and_lands_in_the_log(api: httpx.AsyncClient, platform: Platform) -> None:
    sid = await make(api, "bg", stdout="Hello John Smith!\n")
    r = await api.delete(f"/scripting/script/{sid}/background", headers={"Content-Type": "text/plain"})
    assert r.status_code == 202, r.text
    execution = r.json()["executionId"]
    assert r.json() == {"executionId": execution, "scriptId": sid}
    assert r.headers["location"].endswith(f"/scripting/log/script/{sid}/execution/{execution}")
    for _ in range(100):
        content = await api.get(r.headers["location"])
        if content.status_code == 200:
            break
        assert_envelope(content, 404, "EXECUTION_NOT_FINISHED")
        await asyncio.sleep(0.05)
    assert content.status_code == 200 and content.content == b"Hello John Smith!\n"
    doc, _ = sent_request(platform)
    assert doc["request"]["mode"] == "background" and doc["request"]["method"] == "DELETE"
    run = (await api.get(f"{BASE}/{sid}/runs/{execution}")).json()
    assert run["context"] == "api_async" and run["timeoutSeconds"] == Settings().background_timeout_seconds == 840
    native = await api.get(f"{BASE}/{sid}/runs/{execution}/response")
    assert native.status_code == 200 and native.content == b"Hello John Smith!\n"
    assert native.headers["x-response-source"] == "stdout" and native.headers["x-script-status-code"] == "200"


async def test_disabled_scripts_cannot_start_or_be_scheduled(api: httpx.AsyncClient) -> None:
    sid = await make(api)
    assert (await api.post(f"{BASE}/{sid}/actions/disable")).status_code == 204
    assert_envelope(await api.post(f"/scripting/script/{sid}/run"), 500, "SCRIPT_NOT_STARTED")
    assert_envelope(await api.post(f"/scripting/script/{sid}/background"), 500, "SCRIPT_NOT_SCHEDULED")


async def test_a_full_queue_cannot_schedule(make_platform: PlatformFactory, sqlite_url: str) -> None:
    platform = await make_platform(sqlite_url, background_concurrency_total=1, queue_max_per_tenant=1)
    async with client_for(platform) as api:
        sid = await make(api, sleep=5)
        assert (await api.post(f"/scripting/script/{sid}/background")).status_code == 202  # runs
        assert (await api.post(f"/scripting/script/{sid}/background")).status_code == 202  # waits
        r = await api.post(f"/scripting/script/{sid}/background")
        assert_envelope(r, 500, "SCRIPT_NOT_SCHEDULED")
        assert int(r.headers["retry-after"]) >= 1 and r.json()["errors"][1]["code"] == "QUEUE_FULL"


async def test_the_eleventh_simultaneous_execution_is_429(api: httpx.AsyncClient) -> None:
    assert Settings().sync_concurrency_per_tenant == 10  # the seed's limit is the default
    slow = [await make(api, f"slow-{i}", sleep=3) for i in range(2)]  # 2 scripts: each under its own cap
    calls = [asyncio.create_task(api.post(f"/scripting/script/{slow[i % 2]}/run")) for i in range(10)]
    for _ in range(200):
        runs = [(await api.get(f"{BASE}/{s}/runs")).json()["data"] for s in slow]
        if sum(len(r) for r in runs) == 10:
            break
        await asyncio.sleep(0.05)
    other = await make(api, "quick")
    r = await api.post(f"/scripting/script/{other}/run")
    assert_envelope(r, 429, "SYNC_LIMIT")
    assert int(r.headers["retry-after"]) >= 1
    assert [c.status_code for c in await asyncio.gather(*calls)] == [200] * 10


async def test_huge_headers_are_431(api: httpx.AsyncClient) -> None:
    sid = await make(api)
    r = await api.post(f"/scripting/script/{sid}/background", headers={"X-Big": "x" * (256 * 1024)})
    assert_envelope(r, 431, "HEADERS_TOO_LARGE")
    assert Settings().max_header_bytes == 256 * 1024
