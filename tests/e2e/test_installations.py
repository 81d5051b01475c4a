"""Two installations on one Docker engine, both with the same container prefix (as every default install
has): each one's sweep and recovery see only the sandboxes its installation made (issue 14 finding 2).

Each platform has a database of its own and so an installation id of its own (store/installation.py);
its sandboxes carry that id as a label, and list_sandboxes() returns only those."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from controlplane.backends.base import LABEL_INSTALLATION
from controlplane.backends.docker.backend import DockerBackend
from controlplane.services.platform import Platform
from tests.support.backends import IMAGE
from tests.support.platform import client_for, make_settings

LONG = "import time\nprint('alive', flush=True)\ntime.sleep(600)\n"


@pytest.fixture
async def installations(
    tmp_path: Path, sqlite_template: Path, run_prefix: str, docker_api: Any
) -> AsyncIterator[list[Platform]]:
    made: list[Platform] = []
    for name in ("one", "two"):
        target = tmp_path / f"{name}.db"
        shutil.copy(sqlite_template, target)
        settings = make_settings(tmp_path / name, f"sqlite+aiosqlite:///{target}", backend="docker")
        settings = settings.model_copy(
            update={"tenant_volumes": False, "sandbox_image": IMAGE, "container_prefix": run_prefix}
        )
        backend = DockerBackend(settings, networks=None, mounts=None)
        made.append(await Platform.start(settings, backend=backend, reconcile=False))
    try:
        yield made
    finally:
        for platform in made:
            await platform.close()


async def _running(platform: Platform) -> tuple[str, str]:
    async with client_for(platform) as api:
        r = await api.post("/api/v1/automations", json={"name": "long", "code": LONG})
        assert r.status_code == 201, r.text
        aid = r.json()["id"]
        run = (await api.post(f"/api/v1/automations/{aid}/runs", json={"context": "api_async"})).json()
        for _ in range(300):
            body = (await api.get(f"/api/v1/automations/{aid}/runs/{run['id']}")).json()
            if body["status"] == "running":
                return aid, run["id"]
            await asyncio.sleep(0.1)
    raise AssertionError(f"run {run['id']} never ran: {body}")


async def test_one_installations_sweep_leaves_anothers_runs_alone(
    installations: list[Platform], docker_api: Any
) -> None:
    one, two = installations
    assert one.backend.installation and two.backend.installation
    assert one.backend.installation != two.backend.installation
    aid, run_id = await _running(one)

    seen_by_two = await two.backend.list_sandboxes()
    assert run_id not in {s.handle.run_id for s in seen_by_two}  # the same prefix, but not two's
    assert await two.engine.sweep_orphans() == 0
    (mine,) = [s for s in await one.backend.list_sandboxes() if s.handle.run_id == run_id]
    inspect = await asyncio.to_thread(docker_api.inspect_container, mine.handle.ref)
    assert inspect["Config"]["Labels"][LABEL_INSTALLATION] == one.backend.installation

    async with client_for(one) as api:
        body = (await api.get(f"/api/v1/automations/{aid}/runs/{run_id}")).json()
        assert body["status"] == "running", body  # untouched by the other installation
        assert (await api.post(f"/api/v1/automations/{aid}/runs/{run_id}/actions/stop")).status_code == 204
        for _ in range(200):
            body = (await api.get(f"/api/v1/automations/{aid}/runs/{run_id}")).json()
            if body["status"] == "stopped":
                break
            await asyncio.sleep(0.1)
    assert body["status"] == "stopped", body
