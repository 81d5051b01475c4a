"""Automations on the fake backend and their runs, through the native API: make one, run it, wait for a
status, see what the backend was given."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from controlplane.services.platform import Platform

BASE = "/api/v1/automations"


async def make(api: httpx.AsyncClient, name: str = "fake", **behaviour: Any) -> str:
    files = {"main.py": "print('real code is ignored by the fake backend')", "fake.json": json.dumps(behaviour)}
    r = await api.post(BASE, json={"name": name, "files": files, "entrypoint": "main.py"})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def run_sync(api: httpx.AsyncClient, automation_id: str, **body: object) -> dict[str, Any]:
    r = await api.post(f"{BASE}/{automation_id}/runs", json={"context": "api_sync", **body})
    assert r.status_code == 200, r.text
    run: dict[str, Any] = r.json()
    return run


async def status_of(api: httpx.AsyncClient, aid: str, run_id: str) -> dict[str, object]:
    return (await api.get(f"{BASE}/{aid}/runs/{run_id}")).json()  # type: ignore[no-any-return]


async def until(api: httpx.AsyncClient, aid: str, run_id: str, *wanted: str) -> dict[str, object]:
    for _ in range(400):
        run = await status_of(api, aid, run_id)
        if run["status"] in wanted:
            return run
        await asyncio.sleep(0.025)
    raise AssertionError(f"run stayed {run['status']}")


async def finished(api: httpx.AsyncClient, aid: str, run_id: str) -> dict[str, object]:
    for _ in range(400):
        run = (await api.get(f"{BASE}/{aid}/runs/{run_id}")).json()
        if run["status"] in ("finished", "finished with warnings", "failed", "stopped", "exceeded limit"):
            return run  # type: ignore[no-any-return]
        await asyncio.sleep(0.025)
    raise AssertionError(f"run {run_id} did not finish")


def launched_input(platform: Platform, run_id: str) -> bytes:
    spec = next(s for s in platform.backend.launched if s.run_id == run_id)  # type: ignore[attr-defined]
    return bytes(spec.input)
