"""Seed 004's automation actions over HTTP (fake backend, SQLite and PostgreSQL): copy, change-owner and move,
change-space, rotate-execution-token, next to the existing enable/disable."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from controlplane.services.platform import Platform
from tests.support.api import PREFIXES, assert_envelope
from tests.support.platform import client_for, new_token
from tests.support.runs import run_sync
from tests.support.spaces import join, new_space, new_user

BASE = "/api/v1/automations"


async def full(api: httpx.AsyncClient, **extra: object) -> dict[str, Any]:
    """An automation using every runnable setting, a schedule and a seed-004 workspace."""
    body = {
        "name": f"source-{uuid.uuid4().hex[:6]}",
        "description": "the original",
        "files": {"main.py": "print('x')", "lib/util.py": "X = 1", "fake.json": json.dumps({"stdout": "copied\n"})},
        "entrypoint": "main.py",
        "args": ["--flag", "v"],
        "env": {"GREETING": "hey"},
        "timeoutSeconds": 30,
        "resources": {"cpus": 0.5, "memoryMb": 128, "pids": 64},
        "network": "none",
        "maxConcurrentRuns": 3,
        "workspace": {"blocks": [1, 2]},
        "schedules": [{"interval": 3600, "startAt": "2030-01-01 00:00:00", "timezone": "Europe/Stockholm"}],
        **extra,
    }
    r = await api.post(BASE, json=body)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


SAME: tuple[str, ...] = ("description", "files", "entrypoint", "args", "env", "timeoutSeconds", "resources")
SAME += ("network", "maxConcurrentRuns", "workspace", "runtime", "runMode", "state", "spaceId")


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_copy_duplicates_code_settings_and_schedules(
    platform: Platform, api: httpx.AsyncClient, prefix: str
) -> None:
    src = await full(api)
    token, dev_id = await new_user(api, "developer")
    async with client_for(platform, token) as dev:
        r = await dev.post(f"{prefix}/{src['id']}/actions/copy", json={"name": "the copy"})
        assert r.status_code == 201, r.text
        copy = r.json()
    assert copy["id"] != src["id"] and copy["name"] == "the copy"
    for field in SAME:
        assert copy[field] == src[field], field
    assert copy["ownerId"] == dev_id != src["ownerId"]
    assert copy["executionToken"] != src["executionToken"] and len(copy["executionToken"]) == 64
    assert copy["version"] == 1 and "lastRun" not in copy and copy["createdAt"] >= src["createdAt"]
    [s1], [s2] = src["schedules"], copy["schedules"]
    assert s1["id"] != s2["id"]
    for key in ("interval", "startAt", "timezone", "nextRunAt"):
        assert s1[key] == s2[key], key
    # the copy runs on its own, the original is untouched
    run = await run_sync(api, str(copy["id"]))
    assert run["stdout"] == "copied\n" and run["automationId"] == copy["id"]
    assert (await api.get(f"{BASE}/{src['id']}")).json()["name"] == src["name"]
    listed = {a["name"] for a in (await api.get(BASE)).json()["data"]}
    assert {src["name"], "the copy"} <= listed


async def test_copy_errors(platform: Platform, api: httpx.AsyncClient) -> None:
    src = await full(api)
    other = await full(api)
    assert_envelope(await api.post(f"{BASE}/{src['id']}/actions/copy", json={"name": other["name"]}), 409, "NAME_TAKEN")
    assert_envelope(await api.post(f"{BASE}/{src['id']}/actions/copy", json={}), 422, "VALIDATION_FAILED")
    assert_envelope(await api.post(f"{BASE}/{src['id']}/actions/copy", json={"name": ""}), 422)
    assert_envelope(await api.post(f"{BASE}/{uuid.uuid4()}/actions/copy", json={"name": "n"}), 404, "NOT_FOUND")
    for role in ("viewer", "operator"):
        async with client_for(platform, await new_token(platform, role=role)) as c:
            assert_envelope(await c.post(f"{BASE}/{src['id']}/actions/copy", json={"name": "n"}), 403, "FORBIDDEN")
    # a developer who cannot see it gets the 404 of a missing one
    space = await new_space(api)
    hidden = await full(api, spaceId=space)
    async with client_for(platform, await new_token(platform, role="developer")) as dev:
        assert_envelope(await dev.post(f"{BASE}/{hidden['id']}/actions/copy", json={"name": "n"}), 404, "NOT_FOUND")


@pytest.mark.parametrize("action", ["change-owner", "move"])
async def test_change_owner_and_move(platform: Platform, api: httpx.AsyncClient, action: str) -> None:
    space = await new_space(api)
    src = await full(api, spaceId=space)
    token, new_owner = await new_user(api, "developer")
    r = await api.post(f"{BASE}/{src['id']}/actions/{action}", json={"userId": new_owner})
    assert r.status_code == 204 and r.content == b""
    after = (await api.get(f"{BASE}/{src['id']}")).json()
    assert after["ownerId"] == new_owner and after["updatedAt"] > src["updatedAt"]
    async with client_for(platform, token) as owner:
        # the new owner is no member of the space, but sees, runs and changes what is theirs
        assert (await owner.get(f"{BASE}/{src['id']}")).status_code == 200
        assert src["id"] in [
            a["id"] for a in (await owner.get(BASE, params={"filter": f'ownerId eq "{new_owner}"'})).json()["data"]
        ]
        assert (await owner.post(f"{BASE}/{src['id']}/runs", json={"context": "api_sync"})).status_code == 200
        # but only tenant admins change owners (seed 004: TenantAdmin), even the owner may not
        back = await owner.post(f"{BASE}/{src['id']}/actions/{action}", json={"userId": src["ownerId"]})
        assert_envelope(back, 403, "FORBIDDEN")

    assert_envelope(
        await api.post(f"{BASE}/{src['id']}/actions/{action}", json={"userId": "nobody"}), 404, "USER_NOT_FOUND"
    )
    assert_envelope(await api.post(f"{BASE}/{src['id']}/actions/{action}", json={}), 422)
    assert_envelope(
        await api.post(f"{BASE}/{uuid.uuid4()}/actions/{action}", json={"userId": new_owner}), 404, "NOT_FOUND"
    )
    async with client_for(platform, await new_token(platform, role="admin", tenant="other")) as other:
        stranger = (await other.post("/api/v1/tokens", json={"user": "z", "role": "developer"})).json()["userId"]
        assert_envelope(
            await other.post(f"{BASE}/{src['id']}/actions/{action}", json={"userId": stranger}), 404, "NOT_FOUND"
        )
    assert_envelope(
        await api.post(f"{BASE}/{src['id']}/actions/{action}", json={"userId": stranger}), 404, "USER_NOT_FOUND"
    )
    # giving it to its current owner is fine and changes nothing
    assert (await api.post(f"{BASE}/{src['id']}/actions/{action}", json={"userId": new_owner})).status_code == 204


async def test_change_space(platform: Platform, api: httpx.AsyncClient) -> None:
    default = (await api.get(BASE.replace("automations", "spaces"))).json()["data"][0]["id"]
    src = await full(api)
    assert src["spaceId"] == default
    run_before = await run_sync(api, str(src["id"]))
    target = await new_space(api)
    token, dev_id = await new_user(api, "developer")
    async with client_for(platform, token) as dev:
        # the developer sees it (default space) but may not put it into a space they do not write in
        assert_envelope(
            await dev.post(f"{BASE}/{src['id']}/actions/change-space", json={"spaceId": target}), 404, "SPACE_NOT_FOUND"
        )
        await join(api, target, dev_id, "operator")
        assert_envelope(
            await dev.post(f"{BASE}/{src['id']}/actions/change-space", json={"spaceId": target}), 403, "FORBIDDEN"
        )
        await join(api, target, dev_id, "editor")
        r = await dev.post(f"{BASE}/{src['id']}/actions/change-space", json={"spaceId": target})
        assert r.status_code == 204, r.text
    moved = (await api.get(f"{BASE}/{src['id']}")).json()
    assert moved["spaceId"] == target and moved["updatedAt"] > src["updatedAt"]
    # runs keep the space they were made in; new ones are made in the new space
    assert (await api.get(f"{BASE}/{src['id']}/runs/{run_before['id']}")).json()["spaceId"] == default
    assert (await run_sync(api, str(src["id"])))["spaceId"] == target
    assert_envelope(
        await api.post(f"{BASE}/{src['id']}/actions/change-space", json={"spaceId": "nope"}), 404, "SPACE_NOT_FOUND"
    )
    assert_envelope(await api.post(f"{BASE}/{src['id']}/actions/change-space", json={}), 422)
    assert_envelope(
        await api.post(f"{BASE}/{uuid.uuid4()}/actions/change-space", json={"spaceId": target}), 404, "NOT_FOUND"
    )
    async with client_for(platform, await new_token(platform, role="operator")) as op:
        assert_envelope(
            await op.post(f"{BASE}/{src['id']}/actions/change-space", json={"spaceId": default}), 403, "FORBIDDEN"
        )


async def test_rotate_execution_token(platform: Platform, api: httpx.AsyncClient) -> None:
    src = await full(api)
    r = await api.post(f"{BASE}/{src['id']}/actions/rotate-execution-token")
    assert r.status_code == 200, r.text
    token = r.json()["executionToken"]
    assert token != src["executionToken"] and len(token) == 64
    assert (await api.get(f"{BASE}/{src['id']}")).json()["executionToken"] == token
    async with client_for(platform, await new_token(platform, role="operator")) as op:
        assert_envelope(await op.post(f"{BASE}/{src['id']}/actions/rotate-execution-token"), 403, "FORBIDDEN")
    assert_envelope(await api.post(f"{BASE}/{uuid.uuid4()}/actions/rotate-execution-token"), 404, "NOT_FOUND")


async def test_enable_disable_are_kept(platform: Platform, api: httpx.AsyncClient) -> None:
    src = await full(api)
    assert (await api.post(f"{BASE}/{src['id']}/actions/disable")).status_code == 204
    assert (await api.get(f"{BASE}/{src['id']}")).json()["state"] == "disabled"
    copy = (await api.post(f"{BASE}/{src['id']}/actions/copy", json={"name": "copy-of-disabled"})).json()
    assert copy["state"] == "disabled"  # a faithful duplicate: its schedules do not start firing
    assert (await api.post(f"{BASE}/{src['id']}/actions/enable")).status_code == 204
    async with client_for(platform, await new_token(platform, role="viewer")) as viewer:
        assert_envelope(await viewer.post(f"{BASE}/{src['id']}/actions/disable"), 403, "FORBIDDEN")


async def test_actions_are_in_the_openapi_document(api: httpx.AsyncClient) -> None:
    paths = (await api.get("/openapi.json")).json()["paths"]
    for prefix in PREFIXES:
        for action in ("copy", "change-owner", "move", "change-space", "enable", "disable", "execute"):
            assert "post" in paths[f"{prefix}/{{id}}/actions/{action}"], action
    assert {"get", "post"} <= set(paths["/api/v1/spaces"])
    assert {"put", "delete"} <= set(paths["/api/v1/spaces/{spaceId}/members/{userId}"])
