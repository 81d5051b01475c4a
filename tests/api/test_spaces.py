"""Spaces are real (seed 004's spaceId, listAll): the spaces API, who sees which automations and runs, and
the 0003 migration that puts existing automations into spaces. Fake backend, SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid

import httpx
from alembic import command
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from controlplane.db import migrate
from controlplane.services.platform import Platform
from controlplane.store.spaces import default_space_id
from tests.support.api import assert_envelope
from tests.support.platform import client_for, new_token
from tests.support.spaces import SPACES, default_space, join, new_space, new_user

BASE = "/api/v1/automations"


def same_404(a: httpx.Response, b: httpx.Response) -> None:
    assert a.status_code == b.status_code == 404, (a.text, b.text)
    x, y = a.json(), b.json()
    x.pop("traceId"), y.pop("traceId")
    assert x["errors"][0]["code"] == y["errors"][0]["code"] and x["errors"][0]["title"] == y["errors"][0]["title"]


async def test_default_space_holds_automations_without_a_space(api: httpx.AsyncClient) -> None:
    a = (await api.post(BASE, json={"name": "plain", "code": "print(1)"})).json()
    spaces = (await api.get(SPACES)).json()["data"]
    assert [s["isDefault"] for s in spaces] == [True]
    default = spaces[0]
    assert default["name"] == "Default" and default["role"] == "editor" and a["spaceId"] == default["id"]
    assert (await api.get(f"{SPACES}/{default['id']}")).json()["id"] == default["id"]
    found = (await api.get(BASE, params={"filter": f'spaceId eq "{default["id"]}"'})).json()["data"]
    assert [x["id"] for x in found] == [a["id"]]
    run = (await api.post(f"{BASE}/{a['id']}/runs", json={"context": "api_sync"})).json()
    assert run["spaceId"] == default["id"]
    # a PUT that names no space keeps it; naming the default space (or null) is the default space
    assert (await api.put(f"{BASE}/{a['id']}", json={"name": "plain", "spaceId": None})).json()["spaceId"] == a[
        "spaceId"
    ]


async def test_space_crud_is_for_admins(platform: Platform, api: httpx.AsyncClient) -> None:
    created = await api.post(SPACES, json={"name": "finance", "description": "money"})
    assert created.status_code == 201, created.text
    s = created.json()
    assert s["name"] == "finance" and s["description"] == "money" and s["isDefault"] is False
    assert s["ownerId"] and s["createdAt"] and "role" not in s  # the admin is not a member
    assert_envelope(await api.post(SPACES, json={"name": "finance"}), 409, "NAME_TAKEN")
    assert_envelope(await api.post(SPACES, json={"name": "Default"}), 409, "NAME_TAKEN")
    assert_envelope(await api.post(SPACES, json={"name": ""}), 422)

    put = await api.put(f"{SPACES}/{s['id']}", json={"name": "finance-eu"})
    assert put.status_code == 200 and put.json()["name"] == "finance-eu" and put.json()["description"] == "money"
    assert put.json()["updatedAt"] >= s["updatedAt"]
    assert_envelope(await api.get(f"{SPACES}/nope"), 404, "SPACE_NOT_FOUND")
    assert_envelope(await api.put(f"{SPACES}/nope", json={"name": "x"}), 404, "SPACE_NOT_FOUND")

    token, _ = await new_user(api, "developer")
    async with client_for(platform, token) as dev:
        assert_envelope(await dev.post(SPACES, json={"name": "mine"}), 403, "FORBIDDEN")
        assert_envelope(await dev.put(f"{SPACES}/{s['id']}", json={"name": "x"}), 403, "FORBIDDEN")
        assert_envelope(await dev.delete(f"{SPACES}/{s['id']}"), 403, "FORBIDDEN")
        assert_envelope(await dev.get(SPACES, params={"listAll": "true"}), 403, "FORBIDDEN")
        # a space they do not belong to is a 404, like a missing one
        same_404(await dev.get(f"{SPACES}/{s['id']}"), await dev.get(f"{SPACES}/{uuid.uuid4()}"))
        assert [x["isDefault"] for x in (await dev.get(SPACES)).json()["data"]] == [True]


async def test_delete_space_rules(api: httpx.AsyncClient) -> None:
    default = (await api.get(SPACES)).json()["data"][0]["id"]
    assert_envelope(await api.delete(f"{SPACES}/{default}"), 409, "DEFAULT_SPACE")
    space = await new_space(api)
    a = (await api.post(BASE, json={"name": "inside", "code": "x", "spaceId": space})).json()
    assert_envelope(await api.delete(f"{SPACES}/{space}"), 409, "SPACE_NOT_EMPTY")
    r = await api.post(f"{BASE}/{a['id']}/actions/change-space", json={"spaceId": default})
    assert r.status_code == 204, r.text
    assert (await api.delete(f"{SPACES}/{space}")).status_code == 204
    assert_envelope(await api.get(f"{SPACES}/{space}"), 404, "SPACE_NOT_FOUND")
    assert_envelope(await api.delete(f"{SPACES}/{space}"), 404, "SPACE_NOT_FOUND")


async def test_members(platform: Platform, api: httpx.AsyncClient) -> None:
    space = await new_space(api)
    _, dev_id = await new_user(api, "developer")
    _, other_id = await new_user(api, "operator")
    added = await join(api, space, dev_id, "viewer")
    assert added.status_code == 201 and added.json()["role"] == "viewer" and added.json()["userId"] == dev_id
    changed = await join(api, space, dev_id, "editor")
    assert changed.status_code == 200 and changed.json()["role"] == "editor"
    assert (await join(api, space, other_id, "operator")).status_code == 201
    members = (await api.get(f"{SPACES}/{space}/members")).json()["data"]
    assert sorted((m["userId"], m["role"]) for m in members) == sorted([(dev_id, "editor"), (other_id, "operator")])
    assert all(m["userName"] and m["createdAt"] for m in members)

    assert_envelope(await join(api, space, "no-such-user", "viewer"), 404, "USER_NOT_FOUND")
    assert_envelope(await join(api, space, dev_id, "owner"), 422)
    default = await default_space(api)
    assert_envelope(await join(api, default, dev_id, "viewer"), 409, "DEFAULT_SPACE")
    assert (await api.get(f"{SPACES}/{default}/members")).json()["data"] == []

    assert (await api.delete(f"{SPACES}/{space}/members/{other_id}")).status_code == 204
    assert_envelope(await api.delete(f"{SPACES}/{space}/members/{other_id}"), 404, "MEMBER_NOT_FOUND")
    # a user of another tenant is not a user of this one
    stranger = await new_token(platform, role="admin", tenant="elsewhere")
    async with client_for(platform, stranger) as other:
        their_user = (await other.post("/api/v1/tokens", json={"user": "y", "role": "viewer"})).json()["userId"]
        assert_envelope(await other.get(f"{SPACES}/{space}"), 404, "SPACE_NOT_FOUND")
        assert_envelope(await join(other, space, dev_id, "viewer"), 404, "SPACE_NOT_FOUND")
    assert_envelope(await join(api, space, their_user, "viewer"), 404, "USER_NOT_FOUND")


async def test_members_see_automations_and_runs_of_their_spaces(platform: Platform, api: httpx.AsyncClient) -> None:
    space = await new_space(api)
    aid = (await api.post(BASE, json={"name": "private", "code": "x", "spaceId": space})).json()["id"]
    run_id = (await api.post(f"{BASE}/{aid}/runs", json={"context": "api_sync"})).json()["id"]
    token, user_id = await new_user(api, "developer")
    missing = str(uuid.uuid4())
    paths = [f"{BASE}/{{a}}", f"{BASE}/{{a}}/runs", f"{BASE}/{{a}}/runs/{run_id}", f"{BASE}/{{a}}/runs/{run_id}/logs"]
    async with client_for(platform, token) as dev:
        # not a member: invisible, byte-for-byte like a missing automation
        assert aid not in [x["id"] for x in (await dev.get(BASE)).json()["data"]]
        for path in paths:
            same_404(await dev.get(path.format(a=aid)), await dev.get(path.format(a=missing)))
        same_404(
            await dev.post(f"{BASE}/{aid}/runs", json={"context": "api"}),
            await dev.post(f"{BASE}/{missing}/runs", json={"context": "api"}),
        )
        same_404(
            await dev.put(f"{BASE}/{aid}", json={"name": "x"}), await dev.put(f"{BASE}/{missing}", json={"name": "x"})
        )
        same_404(await dev.delete(f"{BASE}/{aid}"), await dev.delete(f"{BASE}/{missing}"))
        same_404(await dev.post(f"{BASE}/{aid}/actions/disable"), await dev.post(f"{BASE}/{missing}/actions/disable"))

        # viewer: reads the automation and its runs, without the execution token; may not run or change it
        await join(api, space, user_id, "viewer")
        got = await dev.get(f"{BASE}/{aid}")
        assert got.status_code == 200 and "executionToken" not in got.json()
        assert aid in [x["id"] for x in (await dev.get(BASE)).json()["data"]]
        for path in paths:
            assert (await dev.get(path.format(a=aid))).status_code == 200, path
        assert_envelope(await dev.post(f"{BASE}/{aid}/runs", json={"context": "api_sync"}), 403, "FORBIDDEN")
        assert_envelope(await dev.post(f"{BASE}/{aid}/runs/{run_id}/actions/retry"), 403, "FORBIDDEN")
        assert_envelope(await dev.put(f"{BASE}/{aid}", json={"name": "x"}), 403, "FORBIDDEN")
        assert_envelope(await dev.post(f"{BASE}/{aid}/actions/disable"), 403, "FORBIDDEN")
        assert (await dev.get(f"{SPACES}/{space}")).json()["role"] == "viewer"
        assert len((await dev.get(f"{SPACES}/{space}/members")).json()["data"]) == 1

        # operator: runs it and sees the token; still no changes
        await join(api, space, user_id, "operator")
        assert "executionToken" in (await dev.get(f"{BASE}/{aid}")).json()
        assert (await dev.post(f"{BASE}/{aid}/runs", json={"context": "api_sync"})).status_code == 200
        assert_envelope(await dev.put(f"{BASE}/{aid}", json={"name": "x"}), 403, "FORBIDDEN")

        # editor: changes it, creates automations in the space
        await join(api, space, user_id, "editor")
        assert (await dev.put(f"{BASE}/{aid}", json={"name": "renamed"})).status_code == 200
        mine = await dev.post(BASE, json={"name": "dev-made", "code": "x", "spaceId": space})
        assert mine.status_code == 201 and mine.json()["spaceId"] == space

        # removed again: gone from view; their own automation stays theirs to see
        assert (await api.delete(f"{SPACES}/{space}/members/{user_id}")).status_code == 204
        assert_envelope(await dev.get(f"{BASE}/{aid}"), 404, "NOT_FOUND")
        assert (await dev.get(f"{BASE}/{mine.json()['id']}")).status_code == 200
        listed = [x["id"] for x in (await dev.get(BASE)).json()["data"]]
        assert mine.json()["id"] in listed and aid not in listed


async def test_a_token_role_caps_the_space_role(platform: Platform, api: httpx.AsyncClient) -> None:
    space = await new_space(api)
    aid = (await api.post(BASE, json={"name": "capped", "code": "x", "spaceId": space})).json()["id"]
    token, user_id = await new_user(api, "viewer")
    await join(api, space, user_id, "editor")
    async with client_for(platform, token) as viewer:
        assert (await viewer.get(f"{BASE}/{aid}")).status_code == 200
        assert_envelope(await viewer.put(f"{BASE}/{aid}", json={"name": "x"}), 403, "FORBIDDEN")
        assert_envelope(await viewer.post(f"{BASE}/{aid}/runs", json={"context": "api"}), 403, "FORBIDDEN")


async def test_list_all_is_for_admins(platform: Platform, api: httpx.AsyncClient) -> None:
    space = await new_space(api)
    token, user_id = await new_user(api, "developer")
    await join(api, space, user_id, "editor")
    async with client_for(platform, token) as dev:
        theirs = (await dev.post(BASE, json={"name": "theirs", "code": "x", "spaceId": space})).json()["id"]
        assert_envelope(await dev.get(BASE, params={"listAll": "true"}), 403, "FORBIDDEN")
    # the admin is neither member nor owner: a plain list leaves it out, listAll shows it
    mine = (await api.post(BASE, json={"name": "mine", "code": "x"})).json()["id"]
    plain = [x["id"] for x in (await api.get(BASE)).json()["data"]]
    everything = [x["id"] for x in (await api.get(BASE, params={"listAll": "true"})).json()["data"]]
    assert mine in plain and theirs not in plain
    assert sorted(everything) == sorted([mine, theirs])
    # ... but by id an admin reaches everything in the tenant
    assert (await api.get(f"{BASE}/{theirs}")).status_code == 200
    spaces_all = [x["id"] for x in (await api.get(SPACES, params={"listAll": "true"})).json()["data"]]
    assert space in spaces_all and space not in [x["id"] for x in (await api.get(SPACES)).json()["data"]]
    filtered = await api.get(BASE, params={"listAll": "true", "filter": f'spaceId eq "{space}"'})
    assert [x["id"] for x in filtered.json()["data"]] == [theirs]


async def test_space_of_an_automation_must_exist_and_be_writable(platform: Platform, api: httpx.AsyncClient) -> None:
    hidden = await new_space(api)
    read_only = await new_space(api)
    token, user_id = await new_user(api, "developer")
    await join(api, read_only, user_id, "viewer")
    async with client_for(platform, token) as dev:
        for space in ("no-such-space", hidden):
            assert_envelope(
                await dev.post(BASE, json={"name": "x", "code": "x", "spaceId": space}), 404, "SPACE_NOT_FOUND"
            )
        assert_envelope(await dev.post(BASE, json={"name": "x", "code": "x", "spaceId": read_only}), 403, "FORBIDDEN")
        aid = (await dev.post(BASE, json={"name": "x", "code": "x"})).json()["id"]
        assert_envelope(await dev.put(f"{BASE}/{aid}", json={"name": "x", "spaceId": hidden}), 404, "SPACE_NOT_FOUND")
    async with client_for(platform, await new_token(platform, role="admin", tenant="other")) as other:
        stranger_space = (await other.post(SPACES, json={"name": "theirs"})).json()["id"]
    assert_envelope(
        await api.post(BASE, json={"name": "y", "code": "x", "spaceId": stranger_space}), 404, "SPACE_NOT_FOUND"
    )


async def test_space_list_pages_and_filters(api: httpx.AsyncClient) -> None:
    for name in ("a-space", "b-space", "c-space"):
        await new_space(api, name)
    first = (await api.get(SPACES, params={"listAll": "true", "limit": 2})).json()
    assert [s["name"] for s in first["data"]] == ["Default", "a-space"]
    second = (await api.get(first["links"]["next"]["href"])).json()
    assert [s["name"] for s in second["data"]] == ["b-space", "c-space"]
    desc = (await api.get(SPACES, params={"listAll": "true", "sort": "-name", "limit": 1})).json()["data"]
    assert desc[0]["name"] == "c-space"
    one = (await api.get(SPACES, params={"listAll": "true", "filter": 'name eq "b-space"'})).json()["data"]
    assert [s["name"] for s in one] == ["b-space"]
    assert_envelope(await api.get(SPACES, params={"filter": 'owner eq "x"'}), 400)
    assert_envelope(await api.get(SPACES, params={"sort": "size"}), 400)


def test_migration_puts_existing_automations_into_spaces(database_url: str) -> None:
    """0003 on a database with automations: no space becomes the tenant's default space; a free-text
    spaceId becomes a real space with that id (a second tenant's use of the same id gets its own)."""
    command.downgrade(migrate.alembic_config(database_url), "0002")

    async def seed() -> None:
        engine = create_async_engine(database_url)
        async with engine.begin() as conn:
            for tenant in ("t1", "t2"):
                await conn.execute(
                    text(
                        "INSERT INTO tenants (id, name, settings, created_at, admission_seq) "
                        "VALUES (:id, :id, '{}', '2026-01-01 00:00:00', 0)"
                    ),
                    {"id": tenant},
                )
            rows = [("a1", "t1", None), ("a2", "t1", "team-x"), ("a3", "t2", "team-x"), ("a4", "t2", "Default")]
            for aid, tenant, space in rows:
                await conn.execute(
                    text(
                        "INSERT INTO automations (id, tenant_id, name, description, state, run_mode, owner_id, "
                        "space_id, runtime, entrypoint, files, args, env, resources, network, max_concurrent_runs, "
                        "workspace, execution_token, version, source, created_at, updated_at) VALUES (:id, :t, :id, "
                        "'', 'available', 'manual', 'u', :s, 'python', 'main.py', '{}', '[]', '{}', '{}', 'none', 1, "
                        "'{}', 'tok', 1, 'api', '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
                    ),
                    {"id": aid, "t": tenant, "s": space},
                )
        await engine.dispose()

    async def read() -> tuple[dict[str, str], dict[str, tuple[str, str, bool]]]:
        engine = create_async_engine(database_url)
        async with engine.connect() as conn:
            rows = await conn.execute(text("SELECT id, space_id FROM automations"))
            autos: dict[str, str] = {r[0]: r[1] for r in rows}
            spaces: dict[str, tuple[str, str, bool]] = {
                r[0]: (r[1], r[2], bool(r[3]))
                for r in (await conn.execute(text("SELECT id, tenant_id, name, is_default FROM spaces"))).all()
            }
        await engine.dispose()
        return autos, spaces

    asyncio.run(seed())
    migrate.upgrade(database_url, "0003")
    autos, spaces = asyncio.run(read())
    assert autos["a1"] == default_space_id("t1") and spaces[autos["a1"]] == ("t1", "Default", True)
    assert spaces[default_space_id("t2")] == ("t2", "Default", True)
    assert autos["a2"] == "team-x" and spaces["team-x"] == ("t1", "team-x", False)
    assert autos["a3"] != "team-x" and spaces[autos["a3"]] == ("t2", "team-x", False)
    assert spaces[autos["a4"]][0] == "t2" and spaces[autos["a4"]][1].startswith("Default (")
    migrate.upgrade(database_url, "head")
    command.downgrade(migrate.alembic_config(database_url), "0002")  # and back down cleanly
    migrate.upgrade(database_url, "head")
