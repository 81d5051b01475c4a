"""Scripting-dialect automations on the fake backend (seed 002)."""

from __future__ import annotations

import json
from typing import Any

import httpx

BASE = "/api/v1/automations"


async def make(api: httpx.AsyncClient, name: str = "script", *, timeout: int | None = None, **behaviour: Any) -> str:
    body: dict[str, Any] = {
        "name": name,
        "entrypoint": "main.py",
        "files": {"main.py": "print('the fake backend ignores this')", "fake.json": json.dumps(behaviour)},
    }
    if timeout is not None:
        body["timeoutSeconds"] = timeout
    r = await api.post(BASE, json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])
