"""Users, spaces and memberships through the native API."""

from __future__ import annotations

import uuid

import httpx

SPACES = "/api/v1/spaces"


async def new_user(api: httpx.AsyncClient, role: str) -> tuple[str, str]:
    """(token, user id) of a new user of the admin's tenant."""
    r = await api.post("/api/v1/tokens", json={"user": f"{role}-{uuid.uuid4().hex[:6]}", "role": role})
    assert r.status_code == 201, r.text
    return r.json()["token"], r.json()["userId"]


async def new_space(api: httpx.AsyncClient, name: str | None = None) -> str:
    r = await api.post(SPACES, json={"name": name or f"space-{uuid.uuid4().hex[:6]}", "description": "team"})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def join(api: httpx.AsyncClient, space: str, user_id: str, role: str) -> httpx.Response:
    return await api.put(f"{SPACES}/{space}/members/{user_id}", json={"role": role})


async def default_space(api: httpx.AsyncClient) -> str:
    spaces = (await api.get(SPACES, params={"filter": "isDefault eq true"})).json()["data"]
    assert len(spaces) == 1
    return str(spaces[0]["id"])
