"""Following one run's pod with a watch instead of polling, and reading what its status says.

``RunWatch`` lists the run's pods and its Job by label selector (taking each list's resourceVersion),
then watches from that version; when the server ends a watch, or its connection breaks, it resumes from
the last version seen, and when the version is too old (HTTP 410, or an ERROR event with code 410
"Gone") it lists again. Consumers wait on ``wait_for(predicate, timeout=...)``, which checks the latest
``RunState`` (pods + Job) after every change: no polling.

``PodView``/``job_failure`` translate Kubernetes' status vocabulary (waiting reasons, terminated state,
Job conditions) into the few facts the backend needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from controlplane.backends.kubernetes.client import KubeClient, KubeError, KubeGone, KubeUnavailable
from controlplane.backends.kubernetes.manifests import CONTAINER

log = logging.getLogger(__name__)

T = TypeVar("T")
WATCH_SECONDS = 240  # the server ends each watch after this; we resume from the last resourceVersion
MAX_BROKEN = 5  # broken watch connections in a row before the run's watch gives up
PULL_ERRORS = frozenset({"ErrImagePull", "ImagePullBackOff", "RegistryUnavailable"})
FATAL_WAITING = frozenset({"InvalidImageName", "ErrImageNeverPull", "CreateContainerConfigError"})


@dataclass(frozen=True)
class PodView:
    name: str
    phase: str
    state: str  # waiting | running | terminated | unknown
    reason: str | None = None  # waiting or terminated reason
    message: str | None = None
    exit_code: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def started(self) -> bool:
        return self.state in ("running", "terminated")

    @property
    def oom_killed(self) -> bool:
        return self.state == "terminated" and self.reason == "OOMKilled"


def parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def pod_view(pod: dict[str, Any]) -> PodView:
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    name = str(meta.get("name", ""))
    phase = str(status.get("phase") or "Pending")
    for cs in status.get("containerStatuses") or []:
        if cs.get("name") != CONTAINER:
            continue
        state = cs.get("state") or {}
        if "terminated" in state and state["terminated"] is not None:
            t = state["terminated"]
            code = t.get("exitCode")
            return PodView(
                name,
                phase,
                "terminated",
                reason=t.get("reason"),
                message=t.get("message"),
                exit_code=int(code) if code is not None else None,
                started_at=parse_time(t.get("startedAt")),
                finished_at=parse_time(t.get("finishedAt")),
            )
        if "running" in state and state["running"] is not None:
            return PodView(name, phase, "running", started_at=parse_time(state["running"].get("startedAt")))
        if "waiting" in state and state["waiting"] is not None:
            w = state["waiting"]
            return PodView(name, phase, "waiting", reason=w.get("reason"), message=w.get("message"))
    if phase in ("Failed", "Succeeded"):  # evicted or failed before its container had a status
        return PodView(name, phase, "terminated", reason=status.get("reason"), message=status.get("message"))
    return PodView(name, phase, "unknown", reason=status.get("reason"), message=status.get("message"))


def job_failure(job: dict[str, Any] | None) -> tuple[str, str] | None:
    """(reason, message) of a Job's Failed condition, e.g. ("DeadlineExceeded", ...)."""
    for cond in ((job or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Failed" and str(cond.get("status")) == "True":
            return str(cond.get("reason") or "Failed"), str(cond.get("message") or "")
    return None


@dataclass(frozen=True)
class RunState:
    """What the watches know about one run: its pods and its Job."""

    pods: list[PodView]
    job: dict[str, Any] | None  # None: not listed yet, or deleted
    job_gone: bool  # listed once, and now deleted
    listed: bool = True  # both the pods and the Job have been listed: only then is the state whole

    @property
    def job_failure(self) -> tuple[str, str] | None:
        return job_failure(self.job)


class _Follower:
    """List, then watch from the list's resourceVersion, for one resource path and label selector."""

    def __init__(self, owner: RunWatch, path: str) -> None:
        self.owner = owner
        self.path = path
        self.objects: dict[str, dict[str, Any]] = {}
        self.listed = False
        self.relists = 0
        self.version = ""

    async def _list(self) -> None:
        doc = await self.owner.client.request("GET", self.path, query={"labelSelector": self.owner.selector})
        self.objects = {str((o.get("metadata") or {}).get("name")): o for o in doc.get("items") or []}
        self.version = str((doc.get("metadata") or {}).get("resourceVersion") or "")
        self.listed = True
        self.owner.poke()

    async def run(self) -> None:
        broken = 0
        await self._list()
        while True:
            try:
                await self._watch()
                broken = 0
            except KubeGone:
                self.relists += 1
                log.debug("watch on %s expired (410); listing again", self.path)
                await self._list()
            except KubeUnavailable:  # the connection broke: resume from the last version seen
                broken += 1
                if broken > MAX_BROKEN:
                    raise
                await asyncio.sleep(0.5 * broken)

    async def _watch(self) -> None:
        query = {
            "labelSelector": self.owner.selector,
            "watch": "true",
            "resourceVersion": self.version or None,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(WATCH_SECONDS),
        }
        async for event in self.owner.client.lines(self.path, query=query, read_timeout=WATCH_SECONDS + 60):
            kind = event.get("type")
            obj = event.get("object") or {}
            if kind == "ERROR":
                code = int(obj.get("code") or 0)
                if code == 410:
                    raise KubeGone(str(obj.get("message") or "resourceVersion too old"), status=410)
                raise KubeError(f"watch error: {obj.get('message')}", status=code)
            meta = obj.get("metadata") or {}
            self.version = str(meta.get("resourceVersion") or self.version)
            if kind == "BOOKMARK":
                continue
            name = str(meta.get("name", ""))
            if kind == "DELETED":
                self.objects.pop(name, None)
            else:
                self.objects[name] = obj
            self.owner.poke()


class RunWatch:
    """Keeps one run's pods and Job current (two watches on one label selector in one namespace);
    ``wait_for`` checks a predicate on the latest ``RunState`` after every change."""

    def __init__(self, client: KubeClient, namespace: str, selector: str) -> None:
        self.client = client
        self.selector = selector
        self.pod_follower = _Follower(self, f"/api/v1/namespaces/{namespace}/pods")
        self.job_follower = _Follower(self, f"/apis/batch/v1/namespaces/{namespace}/jobs")
        self._changed = asyncio.Event()
        self._error: BaseException | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    @property
    def relists(self) -> int:
        return self.pod_follower.relists + self.job_follower.relists

    @property
    def closed(self) -> bool:
        return self._closed

    def start(self) -> None:
        if not self._tasks and not self._closed:
            self._tasks = [
                asyncio.create_task(self._guard(f.run()), name=f"cp-watch-{self.selector}")
                for f in (self.pod_follower, self.job_follower)
            ]

    async def _guard(self, follow: Awaitable[None]) -> None:
        try:
            await follow
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # handed to whoever waits
            self._error = exc
            self.poke()

    async def close(self) -> None:
        """Stop watching; waiters get their predicate's answer on the last state, or None."""
        self._closed = True
        self.poke()
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def poke(self) -> None:
        """Make waiters look again (their predicate may depend on more than the watched objects)."""
        self._changed.set()

    def views(self) -> list[PodView]:
        return [pod_view(p) for p in self.pod_follower.objects.values()]

    def state(self) -> RunState:
        jobs = self.job_follower
        job = next(iter(jobs.objects.values()), None)
        return RunState(self.views(), job, job_gone=jobs.listed and job is None, listed=self.listed)

    @property
    def listed(self) -> bool:
        return self.pod_follower.listed and self.job_follower.listed

    async def wait_for(self, predicate: Callable[[RunState], T | None], *, timeout: float | None = None) -> T | None:
        """The first non-None ``predicate(state)``, checked after every change once both watches have listed
        (a Job seen failed before its pods were listed would look like a run whose pod never reported);
        None on timeout. After ``close`` the predicate gets the last state, whole or not."""
        self.start()
        loop = asyncio.get_running_loop()
        until = None if timeout is None else loop.time() + timeout
        while True:
            if self._error is not None:
                raise self._error
            found = predicate(self.state()) if self.listed or self._closed else None
            if found is not None or self._closed:
                return found
            self._changed.clear()
            left = None if until is None else until - loop.time()
            if left is not None and left <= 0:
                return None
            try:
                await asyncio.wait_for(self._changed.wait(), timeout=left)
            except TimeoutError:
                return None
