"""Playing the node (and a cluster admin) against the loopback API server, where no kubelet exists.

The Job controller creates a run's pod; nothing schedules or runs it. ``Node`` finds that pod and writes
what a kubelet would report through the pod's ``status`` subresource: Running, then terminated with an
exit code and a reason (``Completed``, ``Error``, ``OOMKilled``) and the matching pod phase, which the Job
controller turns into the Job's Complete/Failed condition.

The deadline path: Kubernetes 1.20's Job controller sets ``status.startTime`` when it first syncs a Job
and fails it with reason ``DeadlineExceeded`` (deleting its active pods) once ``activeDeadlineSeconds``
have passed since then; every Job update re-syncs it. ``expire()`` moves ``startTime`` back past the
deadline, so the controller's own check fires at once instead of the test sleeping through it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx

T = TypeVar("T")
MERGE = {"Content-Type": "application/merge-patch+json"}
WAIT_SECONDS = 60.0


def _now(delta: float = 0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=delta)).strftime("%Y-%m-%dT%H:%M:%SZ")


async def eventually(
    probe: Callable[[], Awaitable[T | None]], *, what: str, timeout: float = WAIT_SECONDS, every: float = 0.2
) -> T:
    """Poll ``probe`` until it returns something other than None (controllers act asynchronously)."""
    loop = asyncio.get_running_loop()
    until = loop.time() + timeout
    while True:
        found = await probe()
        if found is not None:
            return found
        if loop.time() > until:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(every)


class Node:
    """An admin's view of one namespace, with the kubelet's share of pod status writes."""

    def __init__(self, api: httpx.AsyncClient, namespace: str) -> None:
        self.api = api
        self.namespace = namespace

    def path(self, plural: str, name: str = "", *, group: str = "") -> str:
        base = f"/apis/{group}" if group else "/api/v1"
        tail = f"/{name}" if name else ""
        return f"{base}/namespaces/{self.namespace}/{plural}{tail}"

    async def get(self, plural: str, name: str, *, group: str = "") -> dict[str, Any] | None:
        resp = await self.api.get(self.path(plural, name, group=group))
        if resp.status_code == 404:
            return None
        resp.raise_for_status()
        return dict(resp.json())

    async def job(self, name: str) -> dict[str, Any] | None:
        return await self.get("jobs", name, group="batch/v1")

    async def pods(self, job: str) -> list[dict[str, Any]]:
        resp = await self.api.get(self.path("pods"), params={"labelSelector": f"job-name={job}"})
        resp.raise_for_status()
        return list(resp.json().get("items") or [])

    async def pod_of(self, job: str) -> dict[str, Any]:
        """The pod the Job controller created for ``job`` (waits for it)."""

        async def probe() -> dict[str, Any] | None:
            pods = await self.pods(job)
            return pods[0] if pods else None

        return await eventually(probe, what=f"the Job controller to create a pod for {job}")

    async def _status(self, pod: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
        name = pod["metadata"]["name"]
        resp = await self.api.patch(self.path("pods", f"{name}/status"), json={"status": status}, headers=MERGE)
        resp.raise_for_status()
        return dict(resp.json())

    def _container(self, pod: dict[str, Any], state: dict[str, Any], *, ready: bool) -> dict[str, Any]:
        spec = pod["spec"]["containers"][0]
        return {
            "name": spec["name"],
            "image": spec["image"],
            "imageID": f"docker-pullable://{spec['image']}",
            "containerID": f"containerd://{pod['metadata']['uid'].replace('-', '')}",
            "ready": ready,
            "started": ready,
            "restartCount": 0,
            "state": state,
        }

    async def run(self, job: str) -> dict[str, Any]:
        """The pod of ``job`` is Running (as a kubelet reports it once the container started)."""
        pod = await self.pod_of(job)
        state = {"running": {"startedAt": _now()}}
        status = {
            "phase": "Running",
            "startTime": _now(),
            "hostIP": "127.0.0.1",
            "podIP": "127.0.0.2",
            "conditions": [
                {"type": t, "status": "True", "lastTransitionTime": _now()}
                for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")
            ],
            "containerStatuses": [self._container(pod, state, ready=True)],
        }
        return await self._status(pod, status)

    async def exit(self, job: str, code: int, *, reason: str | None = None) -> dict[str, Any]:
        """The container of ``job``'s pod ended with ``code`` (reason Completed/Error unless given)."""
        pod = await self.pod_of(job)
        started = _now(-1)
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            started = ((cs.get("state") or {}).get("running") or {}).get("startedAt") or started
        terminated = {
            "exitCode": code,
            "reason": reason or ("Completed" if code == 0 else "Error"),
            "startedAt": started,
            "finishedAt": _now(),
            "containerID": f"containerd://{pod['metadata']['uid'].replace('-', '')}",
        }
        status = {
            "phase": "Succeeded" if code == 0 else "Failed",
            "conditions": [
                {"type": t, "status": "False", "lastTransitionTime": _now(), "reason": "PodCompleted"}
                for t in ("Ready", "ContainersReady")
            ],
            "containerStatuses": [self._container(pod, {"terminated": terminated}, ready=False)],
        }
        return await self._status(pod, status)

    async def expire(self, job: str) -> None:
        """Move the Job's startTime back past its activeDeadlineSeconds (see the module docstring)."""
        found = await eventually(
            lambda: self._started(job), what=f"the Job controller to set status.startTime of {job}"
        )
        deadline = int(found["spec"]["activeDeadlineSeconds"])
        body = {"status": {"startTime": _now(-deadline - 5)}}
        resp = await self.api.patch(self.path("jobs", f"{job}/status", group="batch/v1"), json=body, headers=MERGE)
        resp.raise_for_status()

    async def _started(self, job: str) -> dict[str, Any] | None:
        found = await self.job(job)
        return found if found and (found.get("status") or {}).get("startTime") else None

    async def gone(self, plural: str, name: str, *, group: str = "", timeout: float = WAIT_SECONDS) -> None:
        """Wait until the object is deleted (garbage collector, TTL controller, foreground deletion)."""

        async def probe() -> bool | None:
            return True if await self.get(plural, name, group=group) is None else None

        await eventually(probe, what=f"{plural}/{name} to be deleted", timeout=timeout)
