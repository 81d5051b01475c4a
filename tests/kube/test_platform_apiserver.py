"""Runs started over HTTP on a platform whose engine is the real API server (CP_BACKEND=kubernetes).

The same paths as test_backend_apiserver.py, one layer up: what the node reports (played by the test) must
come out of the native API as the run's status, exit code and error code, and a stop through the API must
delete the Job — exactly as with Docker.
"""

from __future__ import annotations

from typing import Any

import pytest

from controlplane.backends.kubernetes.manifests import job_name
from controlplane.services.platform import Platform
from tests.kube.cluster import BACKEND_TOKEN, BACKEND_USER, ControlPlane
from tests.kube.node import Node, eventually
from tests.support.kube import finished, start_run
from tests.support.platform import client_for


@pytest.fixture
async def platform(make_platform: Any, sqlite_url: str, kube: ControlPlane, node: Node) -> Platform:
    kubeconfig = kube.user_kubeconfig(BACKEND_USER, BACKEND_TOKEN)
    made: Platform = await make_platform(
        sqlite_url, backend="kubernetes", k8s_kubeconfig=kubeconfig, k8s_namespace=node.namespace, tenant_volumes=False
    )
    return made


def _job(platform: Platform, run: dict[str, Any]) -> str:
    return job_name(platform.settings, run["id"])


@pytest.mark.parametrize(
    ("exit_code", "reason", "status", "error_code"),
    [
        (0, None, "finished", None),
        (3, None, "failed", "NON_ZERO_EXIT"),
        (137, "OOMKilled", "exceeded limit", "OUT_OF_MEMORY"),
        (None, "DeadlineExceeded", "exceeded limit", "RUN_TIMEOUT"),
    ],
    ids=["success", "exit-code", "oom", "job-deadline"],
)
async def test_run_outcomes_over_http(
    platform: Platform, node: Node, exit_code: int | None, reason: str | None, status: str, error_code: str | None
) -> None:
    async with client_for(platform) as api:
        run = await start_run(api, "print('the node played by the test decides')")
        job = _job(platform, run)
        await node.run(job)
        if exit_code is None:
            await node.expire(job)
        else:
            await node.exit(job, exit_code, reason=reason)
        body = await finished(api, run)
    assert body["status"] == status, body
    assert body["exitCode"] == exit_code, body
    codes = [e["code"] for e in body["error"]]
    assert (error_code in codes) if error_code else codes == [], body["error"]
    await node.gone("jobs", job, group="batch/v1")


async def test_stop_over_http_deletes_the_job(platform: Platform, node: Node) -> None:
    async with client_for(platform) as api:
        run = await start_run(api, "import time; time.sleep(3600)")
        job = _job(platform, run)
        await node.run(job)

        # the engine marks a run "running" on the runner's first frame, read from the pod's log; without a
        # kubelet there is none, so the run is "starting" while its pod runs
        r = await api.get(f"/api/v1/automations/{run['automationId']}/runs/{run['id']}")
        assert r.json()["status"] in ("starting", "running"), r.text
        r = await api.post(f"/api/v1/automations/{run['automationId']}/runs/{run['id']}/actions/stop")
        assert r.status_code == 204, r.text
        body = await finished(api, run)
    assert body["status"] == "stopped", body
    await node.gone("jobs", job, group="batch/v1")  # foreground deletion: its pod went first
    assert await node.pods(job) == []


async def test_the_sweep_removes_a_job_whose_run_row_is_gone(platform: Platform, node: Node, make_spec: Any) -> None:
    """A Job the platform made but no longer knows (its run's row deleted, or an older database restored):
    the sweep by labels deletes it; a Job of an unfinished run stays. On clusters that drop
    ttlSecondsAfterFinished (1.20 without the feature gate) this sweep is what removes ended Jobs."""
    ghost = make_spec(code="import time; time.sleep(3600)", run_id="ghost" + "0" * 7)
    execution = await platform.backend.launch(ghost)
    ghost_job = execution.handle.ref
    assert await node.get("jobs", ghost_job, group="batch/v1") is not None
    async with client_for(platform) as api:
        run = await start_run(api, "import time; time.sleep(3600)")
        job = _job(platform, run)
        await eventually(lambda: node.get("jobs", job, group="batch/v1"), what="the live run's Job")

        await platform.engine.sweep_orphans()  # the platform's own periodic sweep may have been first
        await node.gone("jobs", ghost_job, group="batch/v1")
        assert await node.get("jobs", job, group="batch/v1") is not None  # its run is unfinished: kept
        r = await api.post(f"/api/v1/automations/{run['automationId']}/runs/{run['id']}/actions/stop")
        assert r.status_code == 204, r.text
        await finished(api, run)
    await node.gone("jobs", job, group="batch/v1")
