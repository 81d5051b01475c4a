"""Spaces hold in the dialects too: an automation in a space a user does not belong to is as invisible
through seed 000's /api/core/automations and seed 002's /scripting as through the native API (the same 404
as a missing one), a member of the space reaches it with their space role, and moving it into the default
space shows it to everyone. Fake backend, SQLite and PostgreSQL."""

from __future__ import annotations

import httpx

from controlplane.services.platform import Platform
from tests.support.platform import client_for
from tests.support.scripting import make
from tests.support.spaces import default_space, join, new_space, new_user

BASE = "/api/v1/automations"
CORE = "/api/core/automations"


def status(r: httpx.Response) -> int:
    return r.status_code


async def surfaces(client: httpx.AsyncClient, aid: str, name: str, run_id: str) -> dict[str, int]:
    """What each surface answers this caller for the automation and one of its runs."""
    return {
        "native get": status(await client.get(f"{BASE}/{aid}")),
        "native run": status(await client.get(f"{BASE}/{aid}/runs/{run_id}")),
        "000 exec": status(await client.post(f"{CORE}/exec/{name}")),
        "000 job": status(await client.get(f"{CORE}/job/{name}")),
        "000 status": status(await client.get(f"{CORE}/status/{run_id}")),
        "002 run": status(await client.post(f"/scripting/script/{aid}/run", content=b"{}")),
        "002 log": status(await client.get(f"/scripting/log/script/{aid}")),
        "002 execution": status(await client.get(f"/scripting/log/script/{aid}/execution/{run_id}")),
    }


async def test_a_private_space_is_private_on_every_surface(platform: Platform, api: httpx.AsyncClient) -> None:
    name = "private-report"
    aid = await make(api, name, stdout="secret numbers\n")
    space = await new_space(api)
    moved = await api.post(f"{BASE}/{aid}/actions/change-space", json={"spaceId": space})
    assert moved.status_code == 204, moved.text
    run = await api.post(f"{BASE}/{aid}/runs", json={"context": "api_sync"})
    assert run.status_code == 200, run.text
    run_id = run.json()["id"]

    outsider_token, _ = await new_user(api, "developer")
    member_token, member_id = await new_user(api, "developer")
    viewer_token, viewer_id = await new_user(api, "developer")
    assert (await join(api, space, member_id, "operator")).status_code in (200, 201)
    assert (await join(api, space, viewer_id, "viewer")).status_code in (200, 201)

    async with client_for(platform, outsider_token) as outsider:
        seen = await surfaces(outsider, aid, name, run_id)
        assert set(seen.values()) == {404}, seen
        # the same answer as for something that does not exist at all
        missing = await outsider.post(f"{CORE}/exec/no-such-automation")
        hidden = await outsider.post(f"{CORE}/exec/{name}")
        assert missing.json()["errors"][0]["code"] == hidden.json()["errors"][0]["code"] == "AUTOMATION_NOT_FOUND"
        assert aid not in hidden.text
        assert (await outsider.get(f"{CORE}/browse")).status_code == 403  # browse is for admins

    async with client_for(platform, member_token) as member:  # operator in the space: read and run
        seen = await surfaces(member, aid, name, run_id)
        assert seen == {
            "native get": 200,
            "native run": 200,
            "000 exec": 200,
            "000 job": 200,
            "000 status": 200,
            "002 run": 200,
            "002 log": 200,
            "002 execution": 200,
        }, seen
        status_doc = (await member.get(f"{CORE}/status/{run_id}")).json()["data"]
        assert status_doc["stdout"] == "secret numbers\n" and status_doc["jobstate"] == "Succeeded"
        # running is not changing: scheduling needs write access, which the operator space role does not give
        assert (await member.post(f"{CORE}/schedule/{name}", params={"cron": "0 5 * * *"})).status_code == 403

    async with client_for(platform, viewer_token) as viewer:  # viewer in the space: read only
        seen = await surfaces(viewer, aid, name, run_id)
        assert seen["native get"] == seen["native run"] == seen["000 status"] == 200, seen
        assert seen["000 exec"] == seen["000 job"] == seen["002 run"] == 403, seen
        assert seen["002 log"] == seen["002 execution"] == 403, seen  # seed 002: reading logs needs run rights

    # an admin sees it in browse; moved into the default space, everyone sees it
    browsed = (await api.get(f"{CORE}/browse")).json()["data"]
    assert name in [a["name"] for a in browsed]
    assert (
        await api.post(f"{BASE}/{aid}/actions/change-space", json={"spaceId": await default_space(api)})
    ).status_code == 204
    async with client_for(platform, outsider_token) as outsider:
        seen = await surfaces(outsider, aid, name, run_id)
        assert set(seen.values()) == {200}, seen
