"""Helpers of the tests against a real Kubernetes API server (tests/kube): the backend factory's type and
waiting for a run started over HTTP to end."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from controlplane.backends.kubernetes.backend import KubernetesBackend
from tests.kube.node import eventually

BackendFactory = Callable[..., Awaitable[KubernetesBackend]]

TERMINAL = {"finished", "finished with warnings", "failed", "stopped", "exceeded limit", "not started"}


async def finished(api: httpx.AsyncClient, run: dict[str, Any]) -> dict[str, Any]:
    path = f"/api/v1/automations/{run['automationId']}/runs/{run['id']}"

    async def probe() -> dict[str, Any] | None:
        r = await api.get(path)
        assert r.status_code == 200, r.text
        body = dict(r.json())
        return body if body["status"] in TERMINAL else None

    return await eventually(probe, what=f"run {run['id']} to end", timeout=90)


async def start_run(api: httpx.AsyncClient, code: str) -> dict[str, Any]:
    r = await api.post("/api/v1/automations", json={"name": "on-kube", "code": code})
    assert r.status_code == 201, r.text
    automation = r.json()["id"]
    r = await api.post(f"/api/v1/automations/{automation}/runs", json={"context": "api_async"})
    assert r.status_code == 201, r.text
    return dict(r.json())
