"""Re-attaching to a Job that ended while nobody watched: its pods and its Job are listed by two watches,
and either list may arrive first. The outcome must not depend on which: the run's frames and exit code
come from its pod every time (issue 16: a Job seen failed before the pod list arrived lost them).

The API client here is a stand-in that answers the two lists in a forced order (pure ordering logic; the
real API server paths are covered in tests/kube)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from controlplane.backends.base import RunHandle
from controlplane.backends.kubernetes.execution import KubeExecution
from controlplane.backends.kubernetes.manifests import CONTAINER
from controlplane.backends.protocol import Exited, Frame, Output, encode_frame

NS = "runs"
PODS = f"/api/v1/namespaces/{NS}/pods"
JOBS = f"/apis/batch/v1/namespaces/{NS}/jobs"
LOG = encode_frame("s", b'{"pid": 7}') + encode_frame("o", b"one\n") + encode_frame("o", b"two\n")
LOG += encode_frame("x", b'{"exitCode": 5, "signal": null, "oomKilled": false, "cpuSeconds": 0, "maxRssBytes": 0}')

FAILED_JOB = {
    "metadata": {"name": "cp-run-r1", "resourceVersion": "11"},
    "status": {
        "failed": 1,
        "conditions": [
            {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "reached the limit"}
        ],
    },
}
POD_NAME = "cp-run-r1-abcde"
ENDED_POD = {
    "metadata": {"name": POD_NAME, "resourceVersion": "10"},
    "status": {
        "phase": "Failed",
        "containerStatuses": [
            {"name": CONTAINER, "state": {"terminated": {"exitCode": 5, "reason": "Error"}}},
        ],
    },
}


class _Content:
    def __init__(self, data: bytes) -> None:
        self.data = data

    async def iter_any(self) -> AsyncIterator[bytes]:
        yield self.data


class _Response:
    def __init__(self, data: bytes) -> None:
        self.content = _Content(data)

    def release(self) -> None:
        pass


class OrderedLists:
    """Answers the pods and the Job list in ``first``-then-other order; watches stay open and quiet."""

    def __init__(self, first: str) -> None:
        self.first = first
        self.answered: list[str] = []
        self._first_done = asyncio.Event()
        self.deleted: list[str] = []

    async def request(self, method: str, path: str, *, query: Any = None, body: Any = None) -> dict[str, Any]:
        if method == "DELETE":
            self.deleted.append(path)
            return {}
        which = "pods" if path == PODS else "jobs"
        if which != self.first:
            await self._first_done.wait()
            await asyncio.sleep(0.05)  # and let the first list's waiters look at the state it gave
        items = [ENDED_POD] if which == "pods" else [FAILED_JOB]
        self.answered.append(which)
        if which == self.first:
            self._first_done.set()
        return {"metadata": {"resourceVersion": "12"}, "items": items}

    async def lines(self, path: str, *, query: Any = None, read_timeout: float | None = None) -> AsyncIterator[Any]:
        await asyncio.Event().wait()  # nothing more happens to an ended run
        yield {}

    async def stream(self, path: str, *, query: Any = None, read_timeout: float | None = None) -> _Response:
        assert path == f"{PODS}/{POD_NAME}/log"
        return _Response(LOG)


@pytest.mark.parametrize("first", ["jobs", "pods"])
async def test_an_ended_job_keeps_its_output_whichever_list_comes_first(first: str) -> None:
    client = OrderedLists(first)
    execution = KubeExecution(
        client,  # type: ignore[arg-type]
        RunHandle("r1", "t1", "cp-run-r1"),
        namespace=NS,
        bundle="cp-run-r1",
        selector="controlplane.run=r1",
        image="sandbox:1",
        bundle_kind="Secret",
        pull_timeout=30,
    )
    frames: list[Frame] = []
    async with asyncio.timeout(10):
        async for frame in execution.frames():
            frames.append(frame)
        outcome = await execution.finish()
    assert client.answered[0] == first  # the order was forced as meant
    assert [type(f).__name__ for f in frames] == ["Started", "Output", "Output", "Exited"]
    assert b"".join(f.data for f in frames if isinstance(f, Output)) == b"one\ntwo\n"
    assert isinstance(frames[-1], Exited) and frames[-1].exit_code == 5
    assert outcome.exit_code == 5
    assert client.deleted, "the ended Job is removed"
