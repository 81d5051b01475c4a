"""Docker and Kubernetes side by side one layer up: the same automations started over HTTP on a platform
whose engine is Docker and on one whose engine is the real API server (with ``kubelet.py`` running the
pods for real) must leave the same run records: status, exit code, error codes, both logs, artifacts.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from controlplane.backends.docker.backend import DockerBackend
from controlplane.services.platform import Platform
from tests.kube.cluster import BACKEND_TOKEN, BACKEND_USER, ControlPlane
from tests.kube.kubelet import Kubelet
from tests.kube.node import Node
from tests.support.backends import IMAGE
from tests.support.kube import finished
from tests.support.platform import client_for, make_settings

MIXED = """
import sys
for i in range(5):
    print("out", i, flush=True)
    print("err", i, file=sys.stderr, flush=True)
open("../outputs/result.txt", "w").write("42\\n")
sys.exit(3)
"""
BOMB = """
hog = []
while True:
    hog.append(b"\\x01" * (8 << 20))
"""
AUTOMATIONS: dict[str, dict[str, Any]] = {
    "mixed": {"code": MIXED},
    "oom": {"code": BOMB, "resources": {"memoryMb": 64}},
    "deadline": {"code": "import time; time.sleep(600)", "timeoutSeconds": 3},
}


@pytest.fixture
async def platforms(
    tmp_path: Path,
    sqlite_template: Path,
    kube: ControlPlane,
    node: Node,
    kubelet: Kubelet,
    run_prefix: str,
    docker_api: Any,  # fails the test if a container with the prefix is left
) -> AsyncIterator[dict[str, Platform]]:
    common = {"tenant_volumes": False, "sandbox_image": IMAGE, "container_prefix": run_prefix}
    docker_settings = make_settings(
        tmp_path / "docker", _database(tmp_path, sqlite_template, "docker"), backend="docker"
    )
    docker_settings = docker_settings.model_copy(update=common)
    kube_settings = make_settings(
        tmp_path / "kube",
        _database(tmp_path, sqlite_template, "kube"),
        backend="kubernetes",
        k8s_kubeconfig=kube.user_kubeconfig(BACKEND_USER, BACKEND_TOKEN),
        k8s_namespace=node.namespace,
        **common,
    )
    on_docker = await Platform.start(
        docker_settings, backend=DockerBackend(docker_settings, networks=None, mounts=None), reconcile=False
    )
    try:
        on_kube = await Platform.start(kube_settings, reconcile=False)
        try:
            yield {"docker": on_docker, "kubernetes": on_kube}
        finally:
            await on_kube.close()
    finally:
        await on_docker.close()


def _database(tmp_path: Path, template: Path, name: str) -> str:
    """A migrated SQLite database of its own for each platform."""
    target = tmp_path / f"{name}.db"
    shutil.copy(template, target)
    return f"sqlite+aiosqlite:///{target}"


async def record(platform: Platform, name: str, automation: dict[str, Any]) -> dict[str, Any]:
    """Run ``automation`` once over HTTP; what its record says once it ended."""
    async with client_for(platform) as api:
        r = await api.post("/api/v1/automations", json={"name": name, **automation})
        assert r.status_code == 201, r.text
        r = await api.post(f"/api/v1/automations/{r.json()['id']}/runs", json={"context": "api_async"})
        assert r.status_code == 201, r.text
        body = await finished(api, r.json())
        path = f"/api/v1/automations/{body['automationId']}/runs/{body['id']}"
        logs = {s: await _get(api, f"{path}/logs", stream=s) for s in ("stdout", "stderr")}
        artifacts = {a["path"]: await _get(api, f"{path}/artifacts/{a['path']}") for a in await _list(api, path)}
    return {
        "status": body["status"],
        "exitCode": body["exitCode"],
        "errors": sorted(e["code"] for e in body["error"]),
        "logs": logs,
        "artifacts": artifacts,
    }


async def _get(api: httpx.AsyncClient, path: str, **params: str) -> bytes:
    r = await api.get(path, params=params)
    assert r.status_code == 200, r.text
    return r.content


async def _list(api: httpx.AsyncClient, path: str) -> list[dict[str, Any]]:
    r = await api.get(f"{path}/artifacts")
    assert r.status_code == 200, r.text
    return list(r.json())


async def test_the_same_run_records(platforms: dict[str, Platform]) -> None:
    seen: dict[str, dict[str, dict[str, Any]]] = {}
    for engine, platform in platforms.items():
        runs = await asyncio.gather(*(record(platform, n, a) for n, a in AUTOMATIONS.items()))
        seen[engine] = dict(zip(AUTOMATIONS, runs, strict=True))
    docker, kube = seen["docker"], seen["kubernetes"]

    assert docker["mixed"]["status"] == "failed" and docker["mixed"]["exitCode"] == 3
    assert docker["mixed"]["errors"] == ["NON_ZERO_EXIT"]
    assert docker["mixed"]["logs"] == {
        "stdout": b"".join(b"out %d\n" % i for i in range(5)),
        "stderr": b"".join(b"err %d\n" % i for i in range(5)),
    }
    assert docker["mixed"]["artifacts"] == {"result.txt": b"42\n"}
    assert docker["oom"]["status"] == "exceeded limit" and "OUT_OF_MEMORY" in docker["oom"]["errors"]
    assert docker["deadline"]["status"] == "exceeded limit" and "RUN_TIMEOUT" in docker["deadline"]["errors"]
    for name in AUTOMATIONS:
        assert kube[name] == docker[name], name
