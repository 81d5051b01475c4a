"""One run's Job after launch: wait for its pod, stream the runner's frames from its log, decide the outcome.

Where the facts come from (mirrors ``docker_execution``):

* frames: the pod's log (``follow=true``) carries only the runner's frames, parsed by ``FrameParser`` —
  stdout and stderr stay apart because the runner framed them before Kubernetes merged anything;
* start: a watch on the run's pod; ``ErrImagePull``/``ImagePullBackOff`` for longer than
  ``k8s_pull_timeout_seconds`` (or ``InvalidImageName`` at once) ends the run with ``SandboxImageMissing``;
* exit code: the runner's Exited frame when present, else the container's terminated state;
* OOM: the Exited frame says so, or the terminated reason is ``OOMKilled``;
* deadline: a Job condition ``Failed/DeadlineExceeded`` raises ``JobDeadlineExceeded`` (a TimeoutError, so
  the engine records RUN_TIMEOUT exactly as for its own deadline);
* removal: the Job is deleted with foreground propagation (its pod and its bundle go with it), on every
  path out of ``finish()``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import aiohttp

from controlplane.backends.base import Outcome, RunHandle, SingleUseExecution, Usage
from controlplane.backends.kubernetes.client import KubeClient, KubeError, KubeNotFound
from controlplane.backends.kubernetes.manifests import CONTAINER
from controlplane.backends.kubernetes.watch import FATAL_WAITING, PULL_ERRORS, PodView, RunState, RunWatch
from controlplane.backends.protocol import Exited, Frame, FrameParser
from controlplane.core.errors import LaunchFailed, SandboxImageMissing

log = logging.getLogger(__name__)

KILLED_EXIT = 137
DEADLINE_LAG = 3.0  # how long a killed pod's Job may take to show DeadlineExceeded


class JobDeadlineExceeded(TimeoutError):
    """The Job's activeDeadlineSeconds passed (the cluster's backstop of the run's deadline)."""


def job_path(namespace: str, name: str) -> str:
    return f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}"


def bundle_path(namespace: str, name: str, kind: str) -> str:
    plural = "configmaps" if kind == "ConfigMap" else "secrets"
    return f"/api/v1/namespaces/{namespace}/{plural}/{name}"


async def delete_run_objects(client: KubeClient, namespace: str, job: str, bundle: str, *, kind: str) -> None:
    """Delete the Job (foreground: its pod first) and its bundle; a missing object is not an error."""
    options = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Foreground"}
    for path, body in ((job_path(namespace, job), options), (bundle_path(namespace, bundle, kind), None)):
        try:
            await client.request("DELETE", path, body=body)
        except KubeNotFound:
            pass


class KubeExecution(SingleUseExecution):
    def __init__(
        self,
        client: KubeClient,
        handle: RunHandle,
        *,
        namespace: str,
        bundle: str,
        selector: str,
        image: str,
        bundle_kind: str,
        pull_timeout: float,
        on_finish: Callable[[KubeExecution], None] = lambda _: None,
    ) -> None:
        self.handle = handle
        self.namespace = namespace
        self.stopped = False  # set by KubernetesBackend.stop()
        self._client = client
        self._bundle = bundle
        self._bundle_kind = bundle_kind
        self._image = image
        self._pull_timeout = pull_timeout
        self._on_finish = on_finish
        self.watch = RunWatch(client, namespace, selector)
        self._parser = FrameParser()
        self._exited: Exited | None = None
        self._stream_note: str | None = None

    @property
    def bad_lines(self) -> int:
        return self._parser.bad_lines

    def interrupt(self) -> None:
        """Wake whoever waits on the watch (after ``stopped`` was set)."""
        self.watch.poke()

    def _pull_error(self, view: PodView) -> SandboxImageMissing:
        detail = f"{view.reason}: {view.message or ''}".strip()
        return SandboxImageMissing(f"the sandbox image {self._image} cannot be pulled: {detail}")

    async def _wait_started(self) -> PodView | None:
        """The pod once its container runs (or ran); None when stopped or the Job went away."""
        loop = asyncio.get_running_loop()
        pulling_since: float | None = None

        def event(st: RunState) -> PodView | str | None:
            if self.stopped:
                return "stopped"
            for view in st.pods:
                if view.started or view.reason in FATAL_WAITING:
                    return view
                if view.reason in PULL_ERRORS and pulling_since is None:
                    return view
            if st.job_failure is not None or st.job_gone:
                return "ended"  # failed or deleted before its container ran: collect() says why
            return None

        while True:
            timeout = None if pulling_since is None else max(0.0, pulling_since + self._pull_timeout - loop.time())
            found: PodView | str | None = await self.watch.wait_for(event, timeout=timeout)
            if self.stopped or self.watch.closed:
                return None
            if found is None:  # the pull deadline passed: still failing to pull?
                pulling = [v for v in self.watch.views() if v.reason in PULL_ERRORS]
                if pulling:
                    raise self._pull_error(pulling[0])
                pulling_since = None  # it recovered (pulled, now creating)
                continue
            if isinstance(found, str):
                self._check_deadline(self.watch.state())
                return None
            if found.started:
                return found
            if found.reason == "CreateContainerConfigError":
                raise LaunchFailed(f"the run's pod cannot start: {found.reason}: {found.message or ''}")
            if found.reason in FATAL_WAITING:
                raise self._pull_error(found)
            pulling_since = loop.time()  # a pull error: give the registry k8s_pull_timeout_seconds

    @staticmethod
    def _check_deadline(st: RunState) -> None:
        failed = st.job_failure
        if failed is not None and failed[0] == "DeadlineExceeded":
            raise JobDeadlineExceeded(f"the Job passed its activeDeadlineSeconds: {failed[1]}")

    async def frames(self) -> AsyncIterator[Frame]:
        pod = await self._wait_started()
        if pod is None:
            return
        path = f"/api/v1/namespaces/{self.namespace}/pods/{pod.name}/log"
        try:
            resp = await self._client.stream(path, query={"container": CONTAINER, "follow": "true"})
        except KubeError as exc:  # no kubelet to ask, or the pod went away: the outcome comes from the status
            self._stream_note = f"the pod's log could not be read: {exc}"
            return
        try:
            async for chunk in resp.content.iter_any():
                for frame in self._parser.feed(chunk):
                    if isinstance(frame, Exited):
                        self._exited = frame
                    yield frame
                    if self._exited is not None:
                        return
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            self._stream_note = f"the pod's log stream broke: {exc!r}"
        finally:
            resp.release()

    async def _remove_sandbox(self) -> str | None:
        try:
            await delete_run_objects(
                self._client, self.namespace, self.handle.ref, self._bundle, kind=self._bundle_kind
            )
        except Exception as exc:  # ttlSecondsAfterFinished and the reconciler sweep what is left
            log.warning("could not delete Job %s/%s: %s", self.namespace, self.handle.ref, exc)
            return f"the Job could not be deleted: {exc}"
        finally:
            await self.watch.close()
            self._on_finish(self)
        return None

    async def _collect(self) -> Outcome:
        now = datetime.now(UTC)
        ex = self._exited
        if ex is not None:
            oom = ex.oom_killed or any(v.oom_killed for v in self.watch.views())
            usage = Usage(cpu_seconds=ex.cpu_seconds, memory_peak_bytes=ex.max_rss_bytes)
            return Outcome(ex.exit_code, oom, usage, finished_at=now)
        stopped = Outcome(KILLED_EXIT, False, Usage(), finished_at=now, detail="stopped by the control plane")
        if self.stopped:
            return stopped

        def ended(st: RunState) -> PodView | str | None:
            if self.stopped:
                return "stopped"
            for view in st.pods:
                if view.state == "terminated":
                    return view
            if st.job_failure is not None or st.job_gone:
                return "ended"
            return None

        found: PodView | str | None = await self.watch.wait_for(ended)
        if self.stopped:
            return stopped
        state = self.watch.state()
        self._check_deadline(state)
        if found is None:
            return Outcome(None, False, Usage(), detail="the control plane stopped following the sandbox")
        if isinstance(found, str):
            failed = state.job_failure
            why = f"the Job failed ({failed[0]}: {failed[1]})" if failed else "the Job vanished"
            return Outcome(None, False, Usage(), detail=f"{why} before its pod reported an exit status")
        view = found
        if view.exit_code in (KILLED_EXIT, 143) and not view.oom_killed:
            # killed: maybe by the Job's deadline, whose condition may trail the pod's end by a moment
            late = await self.watch.wait_for(lambda st: st.job_failure or st.job_gone or None, timeout=DEADLINE_LAG)
            if late is not None:
                self._check_deadline(self.watch.state())
        detail = "the runner ended without reporting its exit status"
        if view.reason:
            detail += f" (container {view.reason})"
        if self._stream_note:
            detail += f"; {self._stream_note}"
        return Outcome(view.exit_code, view.oom_killed, Usage(), finished_at=view.finished_at or now, detail=detail)
