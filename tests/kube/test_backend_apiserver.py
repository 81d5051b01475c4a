"""The Kubernetes backend against a real API server and controllers (Kubernetes 1.20 on loopback).

What a fake cannot show: the API server accepts (and keeps, field for field) the Job and the bundle we send,
with admission and RBAC on; the Job controller creates the run's pod; the garbage collector deletes the
bundle with its Job through ``ownerReferences`` and foreground deletion takes the pod first; the TTL
controller removes a finished Job; and the backend turns what the node reports (played by the test: there
is no kubelet) into the run's outcome: exit code, failure, OOM, the Job's deadline. Pod logs need a
kubelet, so every run here streams an empty log: the backend must not hang on that, and takes the outcome
from the pod's status (log content is covered by tests/backends with a fake API server).
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest

from controlplane.backends.base import Execution, RunHandle, SandboxState
from controlplane.backends.kubernetes.execution import JobDeadlineExceeded
from controlplane.backends.kubernetes.manifests import bundle_name, job_manifest
from controlplane.core.errors import LaunchFailed
from tests.kube.cluster import BACKEND_USER, ControlPlane
from tests.kube.node import Node, eventually
from tests.support.backends import RunResult, SpecFactory, follow
from tests.support.kube import BackendFactory

RUN_TIMEOUT = 90


def _quantity(text: str) -> Decimal:
    units = {"m": Decimal("0.001"), "Ki": Decimal(2**10), "Mi": Decimal(2**20), "Gi": Decimal(2**30)}
    units.update({"k": Decimal(10**3), "M": Decimal(10**6), "G": Decimal(10**9)})
    for suffix in sorted(units, key=len, reverse=True):
        if text.endswith(suffix):
            return Decimal(text[: -len(suffix)]) * units[suffix]
    return Decimal(text)


def differences(sent: Any, kept: Any, path: str = "") -> list[str]:
    """Where ``kept`` (what the server stored) lacks or changed something of ``sent``; quantities are
    compared by value (the server canonicalises "1000m" to "1"), and a Go zero value (false, 0, "") may be
    left out of the answer (``omitempty``): it is what the server keeps."""
    if isinstance(sent, dict):
        if not isinstance(kept, dict):
            return [f"{path}: {kept!r} is not an object"]
        out: list[str] = []
        for key, value in sent.items():
            if key not in kept:
                if value in (False, 0, ""):
                    continue
                out.append(f"{path}.{key}: dropped by the server")
            else:
                out += differences(value, kept[key], f"{path}.{key}")
        return out
    if isinstance(sent, list):
        if not isinstance(kept, list) or len(kept) != len(sent):
            return [f"{path}: {kept!r} != {sent!r}"]
        return [d for i, (a, b) in enumerate(zip(sent, kept, strict=True)) for d in differences(a, b, f"{path}[{i}]")]
    if isinstance(sent, str) and isinstance(kept, str) and (".resources." in path or path.endswith("sizeLimit")):
        return [] if _quantity(sent) == _quantity(kept) else [f"{path}: {kept!r} != {sent!r}"]
    return [] if sent == kept else [f"{path}: {kept!r} != {sent!r}"]


async def start(backend_execution: Execution) -> asyncio.Task[RunResult]:
    return asyncio.create_task(follow(backend_execution, timeout=RUN_TIMEOUT))


async def assert_removed(node: Node, job: str, *, bundle_plural: str = "secrets") -> None:
    """The Job, its pod and its bundle are all gone (foreground deletion / garbage collector)."""
    await node.gone("jobs", job, group="batch/v1")
    await node.gone(bundle_plural, bundle_name(job))
    await eventually(lambda: _no_pods(node, job), what=f"the pods of {job} to be deleted")


async def _no_pods(node: Node, job: str) -> bool | None:
    return True if not await node.pods(job) else None


@pytest.mark.parametrize("kind", ["Secret", "ConfigMap"])
async def test_the_api_server_accepts_and_keeps_what_we_send(
    make_backend: BackendFactory, make_spec: SpecFactory, node: Node, kind: str
) -> None:
    backend = await make_backend(k8s_bundle_kind=kind, k8s_ttl_seconds_after_finished=600)
    spec = make_spec("print('hi')", args=["a"], env={"GREETING": "hello"}, input=b"data")
    execution = await backend.launch(spec)
    job_name = execution.handle.ref
    try:
        job = await node.job(job_name)
        assert job is not None
        sent = job_manifest(spec, backend.settings)  # 1.20 drops fields it does not know without a word:
        assert differences(sent["spec"], job["spec"], "spec") == []  # a field it dropped would show up here
        assert differences(sent["metadata"]["labels"], job["metadata"]["labels"], "labels") == []

        plural = "configmaps" if kind == "ConfigMap" else "secrets"
        bundle = await node.get(plural, bundle_name(job_name))
        assert bundle is not None and bundle["immutable"] is True
        owner = bundle["metadata"]["ownerReferences"]
        assert [(o["kind"], o["name"], o["uid"]) for o in owner] == [("Job", job_name, job["metadata"]["uid"])]

        pod = await node.pod_of(job_name)  # the Job controller made it from our template, admission let it in
        assert pod["metadata"]["labels"]["io.controlplane.run-id"] == spec.run_id
        assert differences(sent["spec"]["template"]["spec"]["containers"], pod["spec"]["containers"], "pod") == []
        assert pod["spec"]["automountServiceAccountToken"] is False
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    finally:
        await backend.stop(execution.handle)
        await execution.release()
    await assert_removed(node, job_name, bundle_plural=plural)


async def test_success_exit_code_and_cleanup(make_backend: BackendFactory, make_spec: SpecFactory, node: Node) -> None:
    backend = await make_backend()
    execution = await backend.launch(make_spec())
    job = execution.handle.ref
    task = await start(execution)
    await node.run(job)
    await node.exit(job, 0)
    result = await task
    assert result.outcome is not None
    assert result.outcome.exit_code == 0 and not result.outcome.oom_killed
    assert result.stdout == b"" and result.exited is None  # no kubelet, no log: the status decides
    await assert_removed(node, job)


async def test_failure_exit_code(make_backend: BackendFactory, make_spec: SpecFactory, node: Node) -> None:
    backend = await make_backend()
    execution = await backend.launch(make_spec("import sys; sys.exit(3)"))
    job = execution.handle.ref
    task = await start(execution)
    await node.run(job)
    await node.exit(job, 3)
    result = await task
    assert result.outcome is not None
    assert result.outcome.exit_code == 3 and not result.outcome.oom_killed
    assert "Error" in (result.outcome.detail or "")
    await assert_removed(node, job)


async def test_oom_killed(make_backend: BackendFactory, make_spec: SpecFactory, node: Node) -> None:
    backend = await make_backend()
    execution = await backend.launch(make_spec("x = bytearray(10**10)"))
    job = execution.handle.ref
    task = await start(execution)
    await node.run(job)
    await node.exit(job, 137, reason="OOMKilled")
    result = await task
    assert result.outcome is not None
    assert result.outcome.oom_killed and result.outcome.exit_code == 137
    await assert_removed(node, job)


async def test_job_deadline_exceeded(make_backend: BackendFactory, make_spec: SpecFactory, node: Node) -> None:
    backend = await make_backend()
    execution = await backend.launch(make_spec("import time; time.sleep(3600)"))
    job = execution.handle.ref
    task = await start(execution)
    await node.run(job)
    await node.expire(job)  # the Job controller's own activeDeadlineSeconds check fires
    # the backend reads the controller's Failed/DeadlineExceeded condition (and its message), then deletes the Job
    with pytest.raises(JobDeadlineExceeded, match="active longer than specified deadline"):
        await task
    await assert_removed(node, job)


async def test_stop_deletes_the_job_in_the_foreground(
    make_backend: BackendFactory, make_spec: SpecFactory, node: Node, kube: ControlPlane
) -> None:
    backend = await make_backend()
    execution = await backend.launch(make_spec("import time; time.sleep(3600)"))
    job = execution.handle.ref
    task = await start(execution)
    await node.run(job)
    await backend.stop(execution.handle)
    left = await node.job(job)  # foreground: the Job stays (finalizer) until its pod is gone, or is gone
    assert left is None or "foregroundDeletion" in (left["metadata"].get("finalizers") or [])
    result = await task
    assert result.outcome is not None and result.outcome.exit_code == 137
    assert "stopped" in (result.outcome.detail or "")
    await assert_removed(node, job)
    await backend.stop(execution.handle)  # twice is fine, and on a gone Job too
    deletions = [
        e for e in kube.audit_events() if e["objectRef"].get("name") == job and e["user"]["username"] == BACKEND_USER
    ]
    assert deletions, "the API server's audit log has no deletion of the Job by the backend"
    assert all((e.get("requestObject") or {}).get("propagationPolicy") == "Foreground" for e in deletions), deletions


async def test_bundle_is_garbage_collected_with_its_job(
    make_backend: BackendFactory, make_spec: SpecFactory, node: Node, kube_api: Any
) -> None:
    backend = await make_backend(k8s_bundle_kind="ConfigMap")
    execution = await backend.launch(make_spec())
    job = execution.handle.ref
    await node.pod_of(job)
    options = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}
    resp = await kube_api.request("DELETE", node.path("jobs", job, group="batch/v1"), json=options)
    resp.raise_for_status()
    await assert_removed(node, job, bundle_plural="configmaps")  # the garbage collector, via ownerReferences
    await execution.release()


async def test_finished_job_is_removed_by_its_ttl(
    make_backend: BackendFactory, make_spec: SpecFactory, node: Node
) -> None:
    backend = await make_backend(k8s_ttl_seconds_after_finished=1)
    execution = await backend.launch(make_spec())
    job = execution.handle.ref
    await node.run(job)
    await node.exit(job, 0)  # the Job controller marks the Job Complete; a second later its TTL is up
    await assert_removed(node, job)  # nobody called finish(): the TTL controller and the garbage collector did
    await execution.release()


async def test_reconcile_by_labels_after_a_restart(
    make_backend: BackendFactory, make_spec: SpecFactory, node: Node
) -> None:
    first = await make_backend()
    running = await first.launch(make_spec("import time; time.sleep(3600)"))
    done = await first.launch(make_spec())
    await node.run(running.handle.ref)
    await node.run(done.handle.ref)
    await node.exit(done.handle.ref, 4)
    await first.close()  # the control plane goes away with both runs in flight

    second = await make_backend()

    async def both_seen() -> dict[str, Any] | None:
        found = {info.handle.run_id: info for info in await second.list_sandboxes()}
        wanted = {running.handle.run_id, done.handle.run_id}
        return found if wanted <= set(found) and found[done.handle.run_id].state == SandboxState.EXITED else None

    found = await eventually(both_seen, what="both runs in list_sandboxes()")
    assert found[running.handle.run_id].state == SandboxState.RUNNING
    assert found[running.handle.run_id].handle.tenant_id == running.handle.tenant_id
    assert found[done.handle.run_id].exit_code == 4

    again = await second.attach(RunHandle(running.handle.run_id, running.handle.tenant_id, ""))
    task = await start(again)
    await node.exit(running.handle.ref, 0)
    result = await task
    assert result.outcome is not None and result.outcome.exit_code == 0
    await second.stop(found[done.handle.run_id].handle)
    for job in (running.handle.ref, done.handle.ref):
        await assert_removed(node, job)
    assert await second.list_sandboxes() == []


async def test_a_job_the_api_server_refuses_is_a_launch_failure(
    make_backend: BackendFactory, make_spec: SpecFactory, node: Node, kube_api: Any
) -> None:
    quota = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "no-jobs"}}
    quota["spec"] = {"hard": {"count/jobs.batch": "0"}}
    (await kube_api.post(node.path("resourcequotas"), json=quota)).raise_for_status()

    async def enforced() -> bool | None:  # admission enforces a quota once its controller filled in the status
        found = await node.get("resourcequotas", "no-jobs") or {}
        return True if "count/jobs.batch" in ((found.get("status") or {}).get("used") or {}) else None

    await eventually(enforced, what="the ResourceQuota controller to compute the quota's usage")
    backend = await make_backend()
    spec = make_spec()
    with pytest.raises(LaunchFailed, match="403"):
        await backend.launch(spec)
    assert await backend.list_sandboxes() == []
