"""Native automations API over HTTP (fake backend), on SQLite and PostgreSQL."""

from __future__ import annotations

import httpx
import pytest

from controlplane.services.platform import Platform
from tests.support.api import PREFIXES, assert_envelope
from tests.support.platform import client_for, new_token


def body(name: str = "hello", **extra: object) -> dict[str, object]:
    return {"name": name, "code": "print('hi')", **extra}


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_create_get_update_delete(api: httpx.AsyncClient, prefix: str) -> None:
    space = (await api.post("/api/v1/spaces", json={"name": "space-1"})).json()["id"]  # spaces are real
    created = await api.post(
        prefix,
        json=body(
            description="says hi",
            args=["--x", "1"],
            env={"GREETING": "hey"},
            timeoutSeconds=30,
            resources={"cpus": 0.5, "memoryMb": 128, "pids": 64},
            maxConcurrentRuns=3,
            spaceId=space,
            schedules=[{"interval": 60, "startAt": "2030-01-01 00:00:00", "timezone": "Europe/Stockholm"}],
        ),
    )
    assert created.status_code == 201, created.text
    a = created.json()
    assert a["name"] == "hello" and a["state"] == "available" and a["runMode"] == "scheduled"
    assert a["runtime"] == "python" and a["entrypoint"] == "main.py" and a["files"] == {"main.py": "print('hi')"}
    assert a["resources"] == {"cpus": 0.5, "memoryMb": 128, "pids": 64}
    assert a["maxConcurrentRuns"] == 3 and a["spaceId"] == space and a["version"] == 1
    assert len(a["executionToken"]) > 40
    sched = a["schedules"][0]
    assert sched["interval"] == 60 and sched["timezone"] == "Europe/Stockholm"
    assert sched["nextRunAt"].startswith("2029-12-31T23:00:00")  # 00:00 Stockholm time in UTC

    got = await api.get(f"{prefix}/{a['id']}")
    assert got.status_code == 200 and got.json()["id"] == a["id"]

    # PUT with only seed-004 fields keeps the code; a code change makes a new version
    put = await api.put(f"{prefix}/{a['id']}", json={"name": "hello2", "description": "d2"})
    assert put.status_code == 200, put.text
    assert put.json()["files"] == {"main.py": "print('hi')"} and put.json()["version"] == 1
    put = await api.put(f"{prefix}/{a['id']}", json={"name": "hello2", "code": "print('v2')"})
    assert put.json()["version"] == 2 and put.json()["files"] == {"main.py": "print('v2')"}

    assert (await api.delete(f"{prefix}/{a['id']}")).status_code == 204
    assert_envelope(await api.get(f"{prefix}/{a['id']}"), 404, "NOT_FOUND")


async def test_both_mounts_are_the_same_resource(api: httpx.AsyncClient) -> None:
    a = (await api.post(PREFIXES[0], json=body())).json()
    b = (await api.get(f"{PREFIXES[1]}/{a['id']}")).json()
    assert a == b


async def test_files_and_entrypoint(api: httpx.AsyncClient) -> None:
    r = await api.post(
        PREFIXES[0],
        json={
            "name": "multi",
            "runtime": "shell",
            "files": {"run.sh": "echo hi", "lib/x.sh": "true"},
            "entrypoint": "run.sh",
        },
    )
    assert r.status_code == 201, r.text
    assert r.json()["entrypoint"] == "run.sh" and r.json()["runtime"] == "shell"


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({"name": "x"}, 422, "INVALID_CODE"),
        ({"name": "x", "code": "a", "files": {"a.py": "b"}}, 422, "INVALID_CODE"),
        ({"name": "x", "files": {"a.py": "b"}}, 422, "INVALID_CODE"),
        ({"name": "x", "files": {"a.py": "b"}, "entrypoint": "b.py"}, 422, "INVALID_CODE"),
        ({"name": "x", "files": {"../evil.py": "b"}, "entrypoint": "../evil.py"}, 422, "INVALID_PATH"),
        ({"name": "x", "files": {"/etc/x": "b"}, "entrypoint": "/etc/x"}, 422, "INVALID_PATH"),
        ({"name": "x", "code": "a", "timeoutSeconds": 841}, 422, "LIMIT_EXCEEDED"),
        ({"name": "x", "code": "a", "resources": {"memoryMb": 999999}}, 422, "LIMIT_EXCEEDED"),
        ({"name": "x", "code": "a", "maxConcurrentRuns": 11}, 422, "LIMIT_EXCEEDED"),
        ({"name": "x", "code": "a", "env": {"JETQUERY_TOKEN": "x"}}, 422, "RESERVED_ENV"),
        ({"name": "x", "code": "a", "env": {"1BAD": "x"}}, 422, "VALIDATION_FAILED"),
        ({"name": "x", "code": "a", "runtime": "cobol"}, 422, "VALIDATION_FAILED"),
        ({"name": "x", "code": "a", "network": "everything"}, 422, "VALIDATION_FAILED"),
        ({"name": "x", "code": "a", "schedules": [{"cron": "61 * * * *"}]}, 422, "INVALID_SCHEDULE"),
        ({"name": "x", "code": "a", "schedules": [{"cron": "* * * * *", "interval": 5}]}, 422, "VALIDATION_FAILED"),
        ({"name": "x", "code": "a", "schedules": [{"interval": 5, "timezone": "Mars/Base"}]}, 422, "INVALID_SCHEDULE"),
        ({"name": "", "code": "a"}, 422, "VALIDATION_FAILED"),
        ({"name": "n" * 129, "code": "a"}, 422, "VALIDATION_FAILED"),
    ],
)
async def test_bad_input_is_rejected_with_the_envelope(
    api: httpx.AsyncClient, payload: dict[str, object], status: int, code: str
) -> None:
    first = assert_envelope(await api.post(PREFIXES[0], json=payload), status, code)
    assert first.get("detail")


async def test_timeout_error_names_the_maximum(api: httpx.AsyncClient) -> None:
    first = assert_envelope(await api.post(PREFIXES[0], json=body(timeoutSeconds=900)), 422, "LIMIT_EXCEEDED")
    assert "840" in str(first["detail"]) and "900" in str(first["detail"])


async def test_malformed_json_is_400(api: httpx.AsyncClient) -> None:
    r = await api.post(PREFIXES[0], content=b"{not json", headers={"content-type": "application/json"})
    assert_envelope(r, 400, "INVALID_JSON")


async def test_names_are_unique_per_tenant(api: httpx.AsyncClient, platform: Platform) -> None:
    assert (await api.post(PREFIXES[0], json=body("same"))).status_code == 201
    assert_envelope(await api.post(PREFIXES[0], json=body("same")), 409, "NAME_TAKEN")
    other = (await api.post(PREFIXES[0], json=body("other"))).json()
    assert_envelope(await api.put(f"{PREFIXES[0]}/{other['id']}", json={"name": "same"}), 409, "NAME_TAKEN")
    # the same name in another tenant is fine
    token = await new_token(platform, role="developer", tenant="tenant-b")
    async with client_for(platform, token) as b:
        assert (await b.post(PREFIXES[0], json=body("same"))).status_code == 201


async def test_list_filter_sort_and_pagination(api: httpx.AsyncClient) -> None:
    names = [f"auto-{i:02d}" for i in range(25)]
    for n in names:
        mode = {"runMode": "webhook"} if n.endswith("7") else {}
        assert (await api.post(PREFIXES[0], json=body(n, **mode))).status_code == 201
    page = (await api.get(PREFIXES[0], params={"sort": "+name", "limit": 10})).json()
    assert [a["name"] for a in page["data"]] == names[:10]
    assert "files" not in page["data"][0]
    seen = [a["name"] for a in page["data"]]
    while page["links"].get("next"):
        page = (await api.get(page["links"]["next"]["href"])).json()
        seen += [a["name"] for a in page["data"]]
    assert seen == names
    back = (await api.get(page["links"]["prev"]["href"])).json()
    assert [a["name"] for a in back["data"]] == names[10:20]

    desc = (await api.get(PREFIXES[0], params={"sort": "-name", "limit": 3})).json()
    assert [a["name"] for a in desc["data"]] == names[::-1][:3]
    filtered = (await api.get(PREFIXES[0], params={"filter": 'runMode eq "webhook"'})).json()
    assert sorted(a["name"] for a in filtered["data"]) == ["auto-07", "auto-17"]
    both = (await api.get(PREFIXES[0], params={"filter": 'name sw "auto-1" and runMode eq "manual"'})).json()
    assert len(both["data"]) == 9

    assert_envelope(await api.get(PREFIXES[0], params={"sort": "-colour"}), 400, "INVALID_SORT")
    assert_envelope(await api.get(PREFIXES[0], params={"filter": 'secret eq "x"'}), 400, "INVALID_FILTER")
    assert_envelope(await api.get(PREFIXES[0], params={"filter": "name eq"}), 400, "INVALID_FILTER")
    assert_envelope(await api.get(PREFIXES[0], params={"page": "garbage!"}), 400, "INVALID_CURSOR")
    assert_envelope(await api.get(PREFIXES[0], params={"limit": 0}), 422, "VALIDATION_FAILED")


async def test_openapi_describes_the_native_api(api: httpx.AsyncClient) -> None:
    doc = (await api.get("/openapi.json")).json()
    for prefix in PREFIXES:
        assert {"get", "post"} <= set(doc["paths"][prefix])
        assert {"get", "put", "delete"} <= set(doc["paths"][f"{prefix}/{{id}}"])
        assert {"get", "post"} <= set(doc["paths"][f"{prefix}/{{id}}/runs"])
        assert "get" in doc["paths"][f"{prefix}/{{id}}/runs/{{runId}}/logs"]
    schemas = doc["components"]["schemas"]
    props = schemas["AutomationPublic"]["properties"]
    for field in (
        "id",
        "name",
        "state",
        "runMode",
        "ownerId",
        "spaceId",
        "lastRun",
        "lastRunStatus",
        "executionToken",
        "maxConcurrentRuns",
        "schedules",
        "runtime",
        "files",
        "entrypoint",
        "args",
        "env",
        "timeoutSeconds",
        "resources",
        "network",
    ):
        assert field in props, field
    run_props = schemas["RunPublic"]["properties"]
    for field in ("exitCode", "stdout", "stderr", "stdoutBytes", "stderrBytes", "truncated", "error", "metrics"):
        assert field in run_props, field
    assert (await api.get("/docs")).status_code == 200
    # a valid OpenAPI 3 document in which every $ref resolves (bodies parsed by hand included)
    from openapi_spec_validator import validate

    validate(doc)
    assert doc["paths"]["/api/v1/automations/{id}/runs"]["post"]["requestBody"]["content"]["application/json"]
    assert "context" in schemas["RunCreate"]["properties"] and "input" in schemas["RunCreate"]["properties"]
