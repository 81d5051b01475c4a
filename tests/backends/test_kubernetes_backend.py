"""The Kubernetes backend against a small fake API server on loopback.

``FakeKube`` (aiohttp) speaks just the endpoints the backend calls: Jobs, Secrets/ConfigMaps, pods (list,
watch streams with resourceVersion, 410 Gone), pod logs (follow), /version; injected faults (429 with
Retry-After, 500) check the retries. A per-run "kubelet" plays the node: it creates the pod once the
bundle exists, moves it to Running, writes the runner's frames into its log and terminates it the way
the scenario says (exit code, OOMKilled, the Job's deadline, an image that cannot be pulled, or never).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import itertools
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from controlplane.backends.base import RunHandle, SandboxState
from controlplane.backends.kubernetes.backend import KubernetesBackend
from controlplane.backends.kubernetes.execution import JobDeadlineExceeded
from controlplane.backends.kubernetes.manifests import MAX_BUNDLE_BYTES
from controlplane.backends.protocol import encode_frame
from controlplane.core.errors import LaunchFailed, SandboxImageMissing
from controlplane.core.settings import Settings
from tests.support.backends import SpecFactory, follow

TOKEN = "fake-token"


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def frames_for(stdout: bytes = b"", stderr: bytes = b"", *, exit_code: int | None = 0, oom: bool = False) -> bytes:
    out = encode_frame("s", b'{"pid": 7}')
    if stdout:
        out += encode_frame("o", stdout)
    if stderr:
        out += encode_frame("e", stderr)
    out += encode_frame("f", b'{"path": "report.txt", "size": 5}') + encode_frame("d", b"hello")
    if exit_code is not None:
        doc = {"exitCode": exit_code, "signal": None, "oomKilled": oom, "cpuSeconds": 0.25, "maxRssBytes": 4096}
        out += encode_frame("x", json.dumps(doc).encode())
    return out


@dataclass
class Scenario:
    """What the fake node does with a run's pod."""

    log: bytes = b""
    end: str = "exit"  # exit | oom | deadline | pull | hang
    exit_code: int = 0
    running_after: float = 0.05
    end_after: float = 0.05
    release: asyncio.Event = field(default_factory=asyncio.Event)  # for "hang": set to finish normally


@dataclass
class PodLog:
    data: bytearray = field(default_factory=bytearray)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    done: bool = False

    def write(self, chunk: bytes, *, done: bool = False) -> None:
        self.data += chunk
        self.done = self.done or done
        self.changed.set()


class FakeKube:
    def __init__(self) -> None:
        self.rv = itertools.count(100)
        self.jobs: dict[tuple[str, str], dict[str, Any]] = {}
        self.bundles: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.logs: dict[tuple[str, str], PodLog] = {}
        self.history: list[tuple[int, str, dict[str, Any]]] = []  # pod and Job events
        self.changed = asyncio.Event()
        self.scenarios: dict[str, Scenario] = {}
        self.default = Scenario(log=frames_for(b"out\n", b"err\n"))
        self.faults: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str]] = []
        self.deletes: list[tuple[str, dict[str, Any] | None]] = []
        self.gone_once = False  # the next watch with a resourceVersion answers an ERROR 410 event
        self.break_once = False  # the next watch with a resourceVersion drops its connection mid-event
        self.watches = 0
        self.tasks: list[asyncio.Task[None]] = []

    # --- plumbing ----------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.middleware])
        r = app.router
        r.add_get("/version", self.version)
        r.add_post("/apis/batch/v1/namespaces/{ns}/jobs", self.create_job)
        r.add_get("/apis/batch/v1/namespaces/{ns}/jobs", self.list_jobs)
        r.add_get("/apis/batch/v1/jobs", self.list_jobs)
        r.add_get("/apis/batch/v1/namespaces/{ns}/jobs/{name}", self.get_job)
        r.add_delete("/apis/batch/v1/namespaces/{ns}/jobs/{name}", self.delete_job)
        r.add_post("/api/v1/namespaces/{ns}/{plural:secrets|configmaps}", self.create_bundle)
        r.add_delete("/api/v1/namespaces/{ns}/{plural:secrets|configmaps}/{name}", self.delete_bundle)
        r.add_get("/api/v1/namespaces/{ns}/pods", self.pods_endpoint)
        r.add_get("/api/v1/pods", self.pods_endpoint)
        r.add_get("/api/v1/namespaces/{ns}/pods/{name}/log", self.pod_log)
        return app

    async def version(self, request: web.Request) -> web.Response:
        return web.json_response({"major": "1", "minor": "30", "gitVersion": "v1.30.0"})

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append((request.method, request.path))
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"kind": "Status", "code": 401, "message": "Unauthorized"}, status=401)
        for fault in self.faults:
            if fault["times"] > 0 and fault["method"] == request.method and fault["path"] in request.path:
                fault["times"] -= 1
                headers = {"Retry-After": fault["retry_after"]} if fault.get("retry_after") else {}
                body = {"kind": "Status", "code": fault["status"], "message": "injected"}
                return web.json_response(body, status=fault["status"], headers=headers)
        result: web.StreamResponse = await handler(request)
        return result

    def fault(self, method: str, path: str, status: int, *, times: int = 1, retry_after: str | None = None) -> None:
        self.faults.append(
            {"method": method, "path": path, "status": status, "times": times, "retry_after": retry_after}
        )

    def _status(self, code: int, message: str) -> web.Response:
        reason = {404: "NotFound", 409: "AlreadyExists", 410: "Expired"}.get(code, "")
        body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason}
        return web.json_response({**body, "message": message}, status=code)

    def _event(self, kind: str, obj: dict[str, Any]) -> None:
        rv = next(self.rv)
        obj["metadata"]["resourceVersion"] = str(rv)
        self.history.append((rv, kind, copy.deepcopy(obj)))
        self.changed.set()
        self.changed = asyncio.Event()

    # --- jobs and bundles --------------------------------------------------------------------------

    async def create_job(self, request: web.Request) -> web.Response:
        ns = request.match_info["ns"]
        job = await request.json()
        name = job["metadata"]["name"]
        if (ns, name) in self.jobs:
            return self._status(409, f'jobs.batch "{name}" already exists')
        job["metadata"].update(uid=str(uuid.uuid4()), resourceVersion=str(next(self.rv)), creationTimestamp=now())
        job["status"] = {}
        self.jobs[(ns, name)] = job
        self._event("ADDED", job)
        self.tasks.append(asyncio.create_task(self.kubelet(ns, name)))
        return web.json_response(job, status=201)

    async def list_jobs(self, request: web.Request) -> web.StreamResponse:
        ns = request.match_info.get("ns")
        if request.query.get("watch") in ("true", "1"):
            return await self.watch(request, "Job")
        items = [j for (n, _), j in self.jobs.items() if ns in (None, n) and _selects(request, j)]
        return web.json_response(
            {"kind": "JobList", "metadata": {"resourceVersion": str(next(self.rv))}, "items": items}
        )

    async def get_job(self, request: web.Request) -> web.Response:
        job = self.jobs.get((request.match_info["ns"], request.match_info["name"]))
        return web.json_response(job) if job else self._status(404, "job not found")

    async def delete_job(self, request: web.Request) -> web.Response:
        ns, name = request.match_info["ns"], request.match_info["name"]
        body = await request.json() if request.can_read_body else None
        self.deletes.append((request.path, body))
        job = self.jobs.pop((ns, name), None)
        if job is None:
            return self._status(404, "job not found")
        for key, pod in list(self.pods.items()):  # the garbage collector: pods, then owned bundles
            if pod["metadata"]["labels"].get("job-name") == name and key[0] == ns:
                self._kill(key, 137, "Error")
                del self.pods[key]
                self._event("DELETED", pod)
        self._event("DELETED", job)
        uid = job["metadata"]["uid"]
        for bundle_key, obj in list(self.bundles.items()):
            if any(o["uid"] == uid for o in obj["metadata"].get("ownerReferences", [])):
                del self.bundles[bundle_key]
        return web.json_response({"kind": "Status", "status": "Success"})

    async def create_bundle(self, request: web.Request) -> web.Response:
        ns, plural = request.match_info["ns"], request.match_info["plural"]
        obj = await request.json()
        key = (ns, plural, obj["metadata"]["name"])
        if key in self.bundles:
            return self._status(409, "already exists")
        obj["metadata"]["uid"] = str(uuid.uuid4())
        self.bundles[key] = obj
        return web.json_response(obj, status=201)

    async def delete_bundle(self, request: web.Request) -> web.Response:
        key = (request.match_info["ns"], request.match_info["plural"], request.match_info["name"])
        self.deletes.append((request.path, None))
        if self.bundles.pop(key, None) is None:
            return self._status(404, "not found")
        return web.json_response({"kind": "Status", "status": "Success"})

    # --- pods --------------------------------------------------------------------------------------

    async def pods_endpoint(self, request: web.Request) -> web.StreamResponse:
        ns = request.match_info.get("ns")
        if request.query.get("watch") not in ("true", "1"):
            items = [p for (n, _), p in self.pods.items() if ns in (None, n) and _selects(request, p)]
            version = str(next(self.rv))
            return web.json_response({"kind": "PodList", "metadata": {"resourceVersion": version}, "items": items})
        return await self.watch(request, "Pod")

    async def watch(self, request: web.Request, resource: str) -> web.StreamResponse:
        ns = request.match_info.get("ns")
        self.watches += 1
        since = int(request.query.get("resourceVersion") or 0)
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        if self.gone_once and since:
            self.gone_once = False
            await resp.write(json.dumps({"type": "ERROR", "object": {"kind": "Status", "code": 410}}).encode() + b"\n")
            return resp
        if self.break_once and since:
            self.break_once = False
            await resp.write(b'{"type": "MODIFIED", "obj')  # half an event, then the connection drops
            assert request.transport is not None
            request.transport.close()
            return resp
        sent = since
        while True:
            for rv, kind, obj in list(self.history):
                if (
                    rv > sent
                    and obj["kind"] == resource
                    and obj["metadata"]["namespace"] == ns
                    and _selects(request, obj)
                ):
                    await resp.write(json.dumps({"type": kind, "object": obj}).encode() + b"\n")
                sent = max(sent, rv)
            waiter = self.changed
            try:
                await asyncio.wait_for(waiter.wait(), timeout=float(request.query.get("timeoutSeconds", 30)))
            except TimeoutError:
                return resp

    async def pod_log(self, request: web.Request) -> web.StreamResponse:
        key = (request.match_info["ns"], request.match_info["name"])
        log = self.logs.get(key)
        if log is None:
            return self._status(404, "pod not found")
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await resp.prepare(request)
        sent = 0
        while True:
            log.changed.clear()
            if len(log.data) > sent:
                await resp.write(bytes(log.data[sent:]))
                sent = len(log.data)
            if log.done or request.query.get("follow") != "true":
                return resp
            await log.changed.wait()

    # --- the node ----------------------------------------------------------------------------------

    def _container(self, pod: dict[str, Any], state: dict[str, Any]) -> None:
        pod["status"]["containerStatuses"] = [{"name": "runner", "ready": "running" in state, "state": state}]

    def _kill(self, key: tuple[str, str], code: int, reason: str) -> None:
        pod = self.pods.get(key)
        if pod is None:
            return
        state = pod["status"].get("containerStatuses", [{}])[0].get("state", {})
        if "terminated" not in state:
            self._container(pod, {"terminated": {"exitCode": code, "reason": reason, "finishedAt": now()}})
            pod["status"]["phase"] = "Failed" if code else "Succeeded"
            self._event("MODIFIED", pod)
        log = self.logs.get(key)
        if log is not None:
            log.write(b"", done=True)

    @staticmethod
    def _from_bundle(obj: dict[str, Any]) -> Scenario | None:
        """A run started through the platform describes its pod in a ``kube.json`` among its files."""
        encoded = (obj.get("data") or obj.get("binaryData") or {})["bundle.json"]
        files = json.loads(base64.b64decode(encoded))["files"]
        if "kube.json" not in files:
            return None
        doc = json.loads(base64.b64decode(files["kube.json"]))
        code = doc.get("exitCode", 0)
        log = frames_for(doc.get("stdout", "").encode(), doc.get("stderr", "").encode(), exit_code=code)
        if doc.get("end") in ("oom", "deadline"):
            log = frames_for(doc.get("stdout", "").encode(), exit_code=None)
        return Scenario(log=log, end=doc.get("end", "exit"), exit_code=code or 0, end_after=doc.get("after", 0.05))

    async def kubelet(self, ns: str, name: str) -> None:
        job = self.jobs[(ns, name)]
        run_id = job["metadata"]["annotations"]["io.controlplane.run-id"]
        sc = self.scenarios.get(run_id, self.default)
        kind = "configmaps" if "configMap" in str(job["spec"]["template"]["spec"]["volumes"]) else "secrets"
        while (ns, kind, f"{name}-bundle") not in self.bundles:  # the bundle volume must exist first
            if (ns, name) not in self.jobs:
                return
            await asyncio.sleep(0.01)
        sc = self._from_bundle(self.bundles[(ns, kind, f"{name}-bundle")]) or sc
        template = job["spec"]["template"]
        labels = {**template["metadata"]["labels"], "job-name": name, "controller-uid": job["metadata"]["uid"]}
        pod_name = f"{name}-x7k2p"
        key = (ns, pod_name)
        pod = {
            "kind": "Pod",
            "metadata": {"name": pod_name, "namespace": ns, "labels": labels, "uid": str(uuid.uuid4())},
            "spec": copy.deepcopy(template["spec"]),
            "status": {"phase": "Pending"},
        }
        self.pods[key] = pod
        self._container(pod, {"waiting": {"reason": "ContainerCreating"}})
        self._event("ADDED", pod)
        await asyncio.sleep(sc.running_after)
        if key not in self.pods:
            return
        if sc.end == "pull":
            for reason in ("ErrImagePull", "ImagePullBackOff"):
                self._container(pod, {"waiting": {"reason": reason, "message": "pull access denied for nope:1"}})
                self._event("MODIFIED", pod)
                await asyncio.sleep(0.05)
            return
        pod["status"]["phase"] = "Running"
        self._container(pod, {"running": {"startedAt": now()}})
        self.logs[key] = log = PodLog()
        self._event("MODIFIED", pod)
        job["status"] = {"active": 1, "startTime": now()}
        self._event("MODIFIED", job)
        log.write(sc.log)
        if sc.end == "hang":
            await sc.release.wait()
            if key not in self.pods:
                return
            log.write(encode_frame("x", b'{"exitCode": 0}'))
        await asyncio.sleep(sc.end_after)
        if key not in self.pods:
            return
        deadline = {"type": "Failed", "status": "True", "reason": "DeadlineExceeded", "message": "active too long"}
        if sc.end == "deadline":
            job["status"]["conditions"] = [deadline]
            self._event("MODIFIED", job)
            self._kill(key, 143, "Error")
            return
        if sc.end in ("deadline-late", "deadline-deleted"):  # the pod ends first, the condition trails it
            if sc.end == "deadline-late":
                self._kill(key, 143, "Error")
            else:  # no kubelet: the pod just disappears
                self.logs[key].write(b"", done=True)
                self._event("DELETED", self.pods.pop(key))
            await asyncio.sleep(0.5)
            job["status"]["conditions"] = [deadline]
            self._event("MODIFIED", job)
            return
        code, reason = (
            (137, "OOMKilled") if sc.end == "oom" else (sc.exit_code, "Completed" if sc.exit_code == 0 else "Error")
        )
        self._kill(key, code, reason)
        job["status"] = {"succeeded": 1} if code == 0 else {"failed": 1}
        self._event("MODIFIED", job)


def _selects(request: web.Request, obj: dict[str, Any]) -> bool:
    selector = request.query.get("labelSelector")
    if not selector:
        return True
    labels = obj["metadata"].get("labels") or {}
    return all(labels.get(k) == v for k, _, v in (part.partition("=") for part in selector.split(",")))


@pytest.fixture
async def kube(tmp_path: Path) -> AsyncIterator[tuple[FakeKube, Path]]:
    fake = FakeKube()
    runner = web.AppRunner(fake.app(), shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "users": [{"name": "fake", "user": {"token": TOKEN}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
        "current-context": "fake",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(config))
    yield fake, path
    for task in fake.tasks:
        task.cancel()
    await runner.cleanup()


def _settings(**kw: Any) -> Settings:
    values: dict[str, Any] = {"backend": "kubernetes", "tenant_volumes": False, "k8s_qps": 200.0, "k8s_burst": 50}
    values.update(kw)
    return Settings(**values)


@pytest.fixture
async def backend(kube: tuple[FakeKube, Path]) -> AsyncIterator[KubernetesBackend]:
    b = KubernetesBackend(_settings(), kubeconfig=kube[1])
    yield b
    await b.close()


async def test_success_keeps_streams_apart_and_cleans_up(
    kube: tuple[FakeKube, Path], backend: KubernetesBackend, make_spec: SpecFactory
) -> None:
    fake, _ = kube
    fake.fault("POST", "/jobs", 429, retry_after="0.2")  # the first create is throttled
    fake.fault("GET", "/pods", 500)  # and the first pod list fails
    await backend.prepare()
    spec = make_spec("print('hi')", env={"A": "1"}, input=b"in")
    result = await follow(await backend.launch(spec), timeout=30)
    assert result.stdout == b"out\n" and result.stderr == b"err\n"
    assert result.artifacts == {"report.txt": b"hello"}
    assert result.outcome is not None
    assert result.outcome.exit_code == 0 and not result.outcome.oom_killed
    assert result.outcome.usage.cpu_seconds == 0.25
    assert [m for m, p in fake.requests if p.endswith("/jobs")].count("POST") == 2  # 429, then created
    # the bundle went out owned by the Job and carried the run's files
    assert not fake.jobs and not fake.bundles  # deleted on finish
    job_delete = next(body for path, body in fake.deletes if "/jobs/" in path)
    assert job_delete is not None and job_delete["propagationPolicy"] == "Foreground"


async def test_bundle_is_a_secret_owned_by_the_job(
    kube: tuple[FakeKube, Path], backend: KubernetesBackend, make_spec: SpecFactory
) -> None:
    fake, _ = kube
    sc = fake.scenarios.setdefault("bundle-run", Scenario(log=frames_for(b"x"), end="hang"))
    spec = make_spec(run_id="bundle-run", input=b"payload", env={"SECRET_ISH": "s3cr3t"}, args=["a", "b c"])
    execution = await backend.launch(spec)
    [(key, secret)] = fake.bundles.items()
    [job] = fake.jobs.values()
    assert key[1] == "secrets"
    assert secret["metadata"]["ownerReferences"][0]["uid"] == job["metadata"]["uid"]
    doc = json.loads(base64.b64decode(secret["data"]["bundle.json"]))
    assert base64.b64decode(doc["input"]) == b"payload" and doc["linger_seconds"] == 0
    assert doc["env"] == {"SECRET_ISH": "s3cr3t"} and doc["args"] == ["a", "b c"]
    assert base64.b64decode(doc["files"]["main.py"]) == b"print('ok')"
    assert "s3cr3t" not in json.dumps(job)  # the env travels only in the Secret, never in the Job
    sc.release.set()
    await follow(execution, timeout=30)


async def test_non_zero_exit(kube: tuple[FakeKube, Path], backend: KubernetesBackend, make_spec: SpecFactory) -> None:
    fake, _ = kube
    fake.scenarios["fail"] = Scenario(log=frames_for(b"", b"boom\n", exit_code=3), exit_code=3)
    result = await follow(await backend.launch(make_spec(run_id="fail")), timeout=30)
    assert result.stderr == b"boom\n" and result.stdout == b""
    assert result.outcome is not None and result.outcome.exit_code == 3


async def test_oom_killed_container(
    kube: tuple[FakeKube, Path], backend: KubernetesBackend, make_spec: SpecFactory
) -> None:
    fake, _ = kube
    fake.scenarios["oom"] = Scenario(log=frames_for(b"allocating\n", exit_code=None), end="oom")
    result = await follow(await backend.launch(make_spec(run_id="oom")), timeout=30)
    assert result.stdout == b"allocating\n" and result.exited is None
    assert result.outcome is not None
    assert result.outcome.oom_killed and result.outcome.exit_code == 137
    assert not fake.jobs


@pytest.mark.parametrize("end", ["deadline", "deadline-late", "deadline-deleted"])
async def test_job_deadline_is_a_timeout(
    kube: tuple[FakeKube, Path], backend: KubernetesBackend, make_spec: SpecFactory, end: str
) -> None:
    fake, _ = kube
    fake.scenarios["late"] = Scenario(log=frames_for(b"working\n", exit_code=None), end=end, end_after=0.2)
    execution = await backend.launch(make_spec(run_id="late"))
    seen = [frame async for frame in execution.frames()]
    assert seen  # Started and the output came through before the deadline
    with pytest.raises(JobDeadlineExceeded):
        await execution.finish()
    assert isinstance(JobDeadlineExceeded("x"), TimeoutError)  # the engine records RUN_TIMEOUT for it
    assert not fake.jobs  # removed on the way out


async def test_image_pull_error_ends_the_run(kube: tuple[FakeKube, Path], make_spec: SpecFactory) -> None:
    fake, path = kube
    fake.scenarios["pull"] = Scenario(end="pull")
    backend = KubernetesBackend(_settings(k8s_pull_timeout_seconds=1), kubeconfig=path)
    try:
        execution = await backend.launch(make_spec(run_id="pull"))
        with pytest.raises(SandboxImageMissing, match=r"ImagePullBackOff|ErrImagePull"):
            async with asyncio.timeout(20):
                async for _ in execution.frames():
                    pass
        await backend.stop(execution.handle)
        assert not fake.jobs
    finally:
        await backend.close()


async def test_stop_deletes_the_job_in_the_foreground(
    kube: tuple[FakeKube, Path], backend: KubernetesBackend, make_spec: SpecFactory
) -> None:
    fake, _ = kube
    fake.scenarios["hang"] = Scenario(log=frames_for(b"tick\n", exit_code=None), end="hang")
    execution = await backend.launch(make_spec(run_id="hang"))
    got: list[Any] = []

    async def consume() -> None:
        async for frame in execution.frames():
            got.append(frame)

    task = asyncio.create_task(consume())
    async with asyncio.timeout(20):
        while len(got) < 2:
            await asyncio.sleep(0.02)
    await backend.stop(execution.handle)
    await backend.stop(execution.handle)  # twice is fine
    await asyncio.wait_for(task, 20)
    outcome = await execution.finish()
    assert outcome.exit_code == 137 and "stopped" in (outcome.detail or "")
    assert (
        "/apis/batch/v1/namespaces/controlplane-runs/jobs/cp-run-hang",
        {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Foreground"},
    ) in fake.deletes
    assert not fake.jobs and not fake.pods


def _watch_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("cp-watch-") and not t.done()]


async def test_abandoned_at_the_deadline_then_stopped_leaves_nothing_running(
    kube: tuple[FakeKube, Path], backend: KubernetesBackend, make_spec: SpecFactory
) -> None:
    fake, _ = kube
    fake.scenarios["abandoned"] = Scenario(log=frames_for(b"forever\n", exit_code=None), end="hang")
    execution = await backend.launch(make_spec(run_id="abandoned"))
    with pytest.raises(TimeoutError):  # the engine's own deadline, as asyncio.timeout_at raises it
        async with asyncio.timeout(1.0):
            async for _ in execution.frames():
                pass
    assert _watch_tasks()
    await backend.stop(execution.handle)  # what the engine does next
    await asyncio.sleep(0)
    assert not _watch_tasks() and not fake.jobs and not fake.bundles


async def test_reconcile_after_restart(kube: tuple[FakeKube, Path], make_spec: SpecFactory) -> None:
    fake, path = kube
    sc = fake.scenarios["survivor"] = Scenario(log=frames_for(b"before\n", exit_code=None), end="hang")
    first = KubernetesBackend(_settings(), kubeconfig=path)
    await first.launch(replace(make_spec(run_id="survivor"), tenant_id="tenant-7"))
    async with asyncio.timeout(20):
        while not fake.logs:
            await asyncio.sleep(0.02)
    await first.close()  # the control plane dies; the Job lives on
    second = KubernetesBackend(_settings(), kubeconfig=path)
    try:
        [info] = await second.list_sandboxes()
        assert info.handle == RunHandle("survivor", "tenant-7", "cp-run-survivor")
        assert info.state == SandboxState.RUNNING
        execution = await second.attach(info.handle)
        sc.release.set()
        result = await follow(execution, timeout=30)
        assert result.stdout == b"before\n"
        assert result.outcome is not None and result.outcome.exit_code == 0
        assert await second.list_sandboxes() == []
    finally:
        await second.close()


async def test_watch_relists_after_410_gone(
    kube: tuple[FakeKube, Path], backend: KubernetesBackend, make_spec: SpecFactory
) -> None:
    fake, _ = kube
    fake.gone_once = True
    fake.scenarios["gone"] = Scenario(log=frames_for(b"still here\n"), running_after=0.3)
    execution = await backend.launch(make_spec(run_id="gone"))
    watch = execution.watch  # type: ignore[attr-defined]
    result = await follow(execution, timeout=30)
    assert result.stdout == b"still here\n"
    assert fake.watches >= 2 and watch.relists == 1


async def test_watch_resumes_after_a_broken_connection(
    kube: tuple[FakeKube, Path], backend: KubernetesBackend, make_spec: SpecFactory
) -> None:
    fake, _ = kube
    fake.break_once = True
    fake.scenarios["broken"] = Scenario(log=frames_for(b"survived\n"), running_after=0.3)
    execution = await backend.launch(make_spec(run_id="broken"))
    watch = execution.watch  # type: ignore[attr-defined]
    result = await follow(execution, timeout=30)
    assert result.stdout == b"survived\n"
    assert result.outcome is not None and result.outcome.exit_code == 0
    assert fake.watches >= 2 and watch.relists == 0  # resumed from its resourceVersion, no re-list


async def test_server_errors_exhaust_retries_then_fail(kube: tuple[FakeKube, Path], make_spec: SpecFactory) -> None:
    fake, path = kube
    fake.fault("POST", "/jobs", 500, times=10)
    backend = KubernetesBackend(_settings(k8s_retries=2), kubeconfig=path)
    try:
        with pytest.raises(LaunchFailed, match="500"):
            await backend.launch(make_spec(run_id="flaky"))
        assert [m for m, p in fake.requests if p.endswith("/jobs")].count("POST") == 2
    finally:
        await backend.close()


async def test_oversized_bundle_is_refused_before_submission(
    kube: tuple[FakeKube, Path], backend: KubernetesBackend, make_spec: SpecFactory
) -> None:
    fake, _ = kube
    with pytest.raises(LaunchFailed, match="at most"):
        await backend.launch(make_spec(run_id="big", input=b"x" * MAX_BUNDLE_BYTES))
    assert not [r for r in fake.requests if r[0] == "POST"]


async def test_launch_retried_finds_its_job(
    kube: tuple[FakeKube, Path], backend: KubernetesBackend, make_spec: SpecFactory
) -> None:
    fake, _ = kube
    spec = make_spec(run_id="twice")
    first = await backend.launch(spec)
    second = await backend.launch(spec)  # 409 -> the same Job, never a second one
    assert first.handle == second.handle and len(fake.jobs) == 1
    result = await follow(second, timeout=30)
    assert result.outcome is not None and result.outcome.exit_code == 0
    await first.release()


async def test_ping_fails_cleanly_without_an_api(tmp_path: Path) -> None:
    from controlplane.core.errors import BackendUnavailable

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "x", "cluster": {"server": "http://127.0.0.1:9"}}],
        "users": [{"name": "x", "user": {"token": TOKEN}}],
        "contexts": [{"name": "x", "context": {"cluster": "x", "user": "x"}}],
        "current-context": "x",
    }
    (tmp_path / "kc").write_text(json.dumps(config))
    backend = KubernetesBackend(_settings(k8s_retries=1), kubeconfig=tmp_path / "kc")
    try:
        with pytest.raises(BackendUnavailable):
            await backend.ping()
    finally:
        await backend.close()


# --- through the platform: the engine's statuses and error codes on this backend -----------------------


@pytest.mark.parametrize(
    ("behaviour", "status", "exit_code", "error_code"),
    [
        ({"stdout": "hello\n", "stderr": "careful\n"}, "finished with warnings", 0, None),
        ({"stderr": "boom\n", "exitCode": 3}, "failed", 3, "NON_ZERO_EXIT"),
        ({"stdout": "eating\n", "end": "oom"}, "exceeded limit", 137, "OUT_OF_MEMORY"),
        ({"stdout": "slow\n", "end": "deadline", "after": 0.3}, "exceeded limit", None, "RUN_TIMEOUT"),
        ({"end": "pull"}, "failed", None, "SANDBOX_IMAGE_MISSING"),
    ],
    ids=["warnings", "non-zero", "oom", "job-deadline", "image-pull"],
)
async def test_platform_runs_on_kubernetes(
    kube: tuple[FakeKube, Path],
    make_platform: Any,
    sqlite_url: str,
    behaviour: dict[str, Any],
    status: str,
    exit_code: int | None,
    error_code: str | None,
) -> None:
    from tests.support.platform import client_for

    fake, path = kube
    if behaviour.get("end") == "pull":
        fake.default = Scenario(end="pull")
    platform = await make_platform(
        sqlite_url, backend="kubernetes", k8s_kubeconfig=path, tenant_volumes=False, k8s_pull_timeout_seconds=1
    )
    assert platform.backend.name == "kubernetes"
    files = {"main.py": "print('the fake node ignores this')", "kube.json": json.dumps(behaviour)}
    async with client_for(platform) as api:
        r = await api.post("/api/v1/automations", json={"name": "k8s", "files": files, "entrypoint": "main.py"})
        assert r.status_code == 201, r.text
        r = await api.post(f"/api/v1/automations/{r.json()['id']}/runs", json={"context": "api_sync"})
        assert r.status_code == 200, r.text
        run = r.json()
    assert run["status"] == status and run["exitCode"] == exit_code, run
    assert run["stdout"] == behaviour.get("stdout", "")
    assert run["stderr"] == behaviour.get("stderr", "")
    codes = [e["code"] for e in run["error"]]
    assert (error_code in codes) if error_code else codes == [], run["error"]
    if error_code == "SANDBOX_IMAGE_MISSING":
        assert "cannot be pulled" in json.dumps(run["error"])
    async with asyncio.timeout(20):
        while fake.jobs:  # every path removes the Job
            await asyncio.sleep(0.05)


# --- the client: rate limit and Retry-After (lower bounds only: a slow machine only adds time) -------


async def test_token_bucket_limits_the_rate() -> None:
    from controlplane.backends.kubernetes.client import TokenBucket

    bucket = TokenBucket(rate=20.0, burst=2)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for _ in range(6):  # 2 from the burst, then 4 at 20/s
        await bucket.take()
    assert loop.time() - t0 >= 0.18


async def test_retry_after_is_honoured(kube: tuple[FakeKube, Path], backend: KubernetesBackend) -> None:
    fake, _ = kube
    fake.fault("GET", "/version", 429, retry_after="1")
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await backend.ping()
    assert loop.time() - t0 >= 0.9
    assert [p for _, p in fake.requests].count("/version") == 2


def test_registry_builds_it_from_settings(tmp_path: Path) -> None:
    from controlplane.backends import get_backend

    backend = get_backend("kubernetes", _settings(k8s_kubeconfig=tmp_path / "kubeconfig"))
    assert isinstance(backend, KubernetesBackend) and backend.name == "kubernetes"
    assert backend.client.kubeconfig is None and backend.settings.k8s_kubeconfig == tmp_path / "kubeconfig"
