"""The Kubernetes engine behind ``base.Backend``: one batch/v1 Job per run, in the runs namespace.

Launch: create the Job (a 409 finds the Job an earlier attempt created, checked by its run label), then
the Secret/ConfigMap carrying the runner's bundle, owned by that Job (its uid); the pod cannot start before
its bundle volume exists. If the bundle cannot be created the Job is deleted. The execution
(``kubernetes_execution``) then follows the pod with a watch and reads the runner's frames from its log.

``stop`` deletes the Job with foreground propagation; ``list_sandboxes`` finds our Jobs (and their pods)
by label after a restart and ``attach`` follows one of them again. Network modes are a pod label
(``io.controlplane.network``) for the chart's NetworkPolicies to select on; tenant volumes are not
mounted on Kubernetes (see README, "Kubernetes backend").

Build one from settings (``CP_BACKEND=kubernetes``) or for a given kubeconfig::

    backend = KubernetesBackend(settings, kubeconfig=Path("/path/to/kubeconfig"))
"""

from __future__ import annotations

import logging
import weakref
from dataclasses import replace
from pathlib import Path
from typing import Any

from controlplane.backends import base
from controlplane.backends.base import Backend, Execution, RunHandle, RunSpec, SandboxInfo, SandboxState
from controlplane.backends.kubernetes.client import KubeClient, KubeConflict, KubeError, KubeNotFound
from controlplane.backends.kubernetes.execution import KubeExecution, delete_run_objects, job_path
from controlplane.backends.kubernetes.manifests import (
    ANNOTATION_RUN,
    ANNOTATION_TENANT,
    bundle_manifest,
    bundle_name,
    check_bundle_size,
    job_manifest,
    job_name,
    label_value,
    namespace_for,
    run_selector,
)
from controlplane.backends.kubernetes.watch import parse_time, pod_view
from controlplane.core.errors import BackendError, BackendUnavailable, LaunchFailed, NotFound
from controlplane.core.settings import Settings
from controlplane.core.states import NetworkMode

log = logging.getLogger(__name__)


class KubernetesBackend(Backend):
    name = "kubernetes"

    def __init__(self, settings: Settings, *, kubeconfig: Path | None = None, client: KubeClient | None = None) -> None:
        self.settings = settings
        self.client = client or KubeClient(settings, kubeconfig=kubeconfig)
        self._live: weakref.WeakValueDictionary[str, KubeExecution] = weakref.WeakValueDictionary()

    # --- set-up ------------------------------------------------------------------------------------

    async def ping(self) -> None:
        try:
            await self.client.request("GET", "/version")
        except BackendUnavailable:
            raise
        except Exception as exc:
            raise BackendUnavailable(f"the Kubernetes API does not answer: {exc}") from exc

    async def prepare(self) -> None:
        await self.ping()
        if self.settings.tenant_volumes:
            log.warning("tenant volumes (FILES/ARCHIVE) are not mounted on Kubernetes; set CP_TENANT_VOLUMES=false")
        if self.settings.k8s_namespace_per_tenant:
            return
        ns = self.settings.k8s_namespace
        try:
            await self.client.request("GET", f"/apis/batch/v1/namespaces/{ns}/jobs", query={"limit": "1"})
        except KubeError as exc:
            raise BackendError(f"cannot list Jobs in the runs namespace {ns!r}: {exc}") from exc

    def api_host_for_runs(self, network: NetworkMode) -> str | None:
        return self.settings.k8s_api_host if network != NetworkMode.NONE else None

    # --- launch ------------------------------------------------------------------------------------

    def _plural(self) -> str:
        return "configmaps" if self.settings.k8s_bundle_kind == "ConfigMap" else "secrets"

    async def launch(self, spec: RunSpec) -> Execution:
        spec = replace(spec, installation=self.installation)
        bundle = spec.bundle(linger_seconds=0)  # no engine stats to read after the Exited frame
        check_bundle_size(bundle)
        manifest = job_manifest(spec, self.settings)
        ns = str(manifest["metadata"]["namespace"])
        name = str(manifest["metadata"]["name"])
        try:
            job = await self.client.request("POST", f"/apis/batch/v1/namespaces/{ns}/jobs", body=manifest)
        except KubeConflict as exc:
            job = await self._existing(ns, name, spec.run_id, exc)
        except KubeError as exc:
            raise LaunchFailed(f"creating the Job {ns}/{name} failed: {exc}") from exc
        owned = bundle_manifest(spec, self.settings, bundle, job=job)
        try:
            await self.client.request("POST", f"/api/v1/namespaces/{ns}/{self._plural()}", body=owned)
        except KubeConflict:
            log.info("launch of %s found the bundle an earlier attempt created", name)
        except BaseException as exc:
            await self._delete_quietly(ns, name)
            if not isinstance(exc, Exception):
                raise
            if isinstance(exc, BackendUnavailable):
                raise
            raise LaunchFailed(f"creating the bundle of {ns}/{name} failed: {exc}") from exc
        handle = RunHandle(run_id=spec.run_id, tenant_id=spec.tenant_id, ref=name)
        return self._execution(handle, ns, image=spec.image or self.settings.sandbox_image)

    async def _existing(self, ns: str, name: str, run_id: str, conflict: KubeError) -> dict[str, Any]:
        try:
            job = await self.client.request("GET", job_path(ns, name))
        except KubeNotFound as exc:
            raise LaunchFailed(f"the Job {ns}/{name} was reported to exist but is gone") from exc
        labels = (job.get("metadata") or {}).get("labels") or {}
        if labels.get(base.LABEL_RUN) != label_value(run_id):
            raise LaunchFailed(f"the name {name} is taken by a Job of another run") from conflict
        log.info("launch of %s found the Job an earlier attempt created", name)
        return job

    async def _delete_quietly(self, ns: str, name: str) -> None:
        try:
            await delete_run_objects(self.client, ns, name, bundle_name(name), kind=self.settings.k8s_bundle_kind)
        except Exception:
            log.warning("could not delete Job %s/%s", ns, name, exc_info=True)

    def _execution(self, handle: RunHandle, ns: str, *, image: str) -> KubeExecution:
        execution = KubeExecution(
            self.client,
            handle,
            namespace=ns,
            bundle=bundle_name(handle.ref),
            selector=run_selector(handle.run_id),
            image=image,
            bundle_kind=self.settings.k8s_bundle_kind,
            pull_timeout=float(self.settings.k8s_pull_timeout_seconds),
            on_finish=self._forget,
        )
        self._live[handle.run_id] = execution
        return execution

    def _forget(self, execution: KubeExecution) -> None:
        if self._live.get(execution.handle.run_id) is execution:
            del self._live[execution.handle.run_id]

    # --- after launch ------------------------------------------------------------------------------

    def _ref(self, handle: RunHandle) -> str:
        return job_name(self.settings, handle.run_id) if handle.run_id else handle.ref

    async def attach(self, handle: RunHandle) -> Execution:
        ns = namespace_for(self.settings, handle.tenant_id)
        ref = self._ref(handle)
        try:
            job = await self.client.request("GET", job_path(ns, ref))
        except KubeNotFound as exc:
            raise NotFound(f"sandbox {ns}/{ref} does not exist") from exc
        spec = ((job.get("spec") or {}).get("template") or {}).get("spec") or {}
        image = str(((spec.get("containers") or [{}])[0]).get("image") or self.settings.sandbox_image)
        return self._execution(RunHandle(handle.run_id, handle.tenant_id, ref), ns, image=image)

    async def stop(self, handle: RunHandle) -> None:
        execution = self._live.get(handle.run_id)
        if execution is not None:
            execution.stopped = True
            execution.interrupt()
        ns = namespace_for(self.settings, handle.tenant_id)
        ref = self._ref(handle)
        try:
            await delete_run_objects(self.client, ns, ref, bundle_name(ref), kind=self.settings.k8s_bundle_kind)
        finally:
            if execution is not None:
                await execution.watch.close()  # its frames()/collect() see ``stopped`` and end

    async def list_sandboxes(self) -> list[SandboxInfo]:
        per_tenant = self.settings.k8s_namespace_per_tenant
        ns = self.settings.k8s_namespace
        query = {"labelSelector": f"{base.LABEL_MANAGED}=true"}
        jobs_path = "/apis/batch/v1/jobs" if per_tenant else f"/apis/batch/v1/namespaces/{ns}/jobs"
        pods_path = "/api/v1/pods" if per_tenant else f"/api/v1/namespaces/{ns}/pods"
        jobs = (await self.client.request("GET", jobs_path, query=query)).get("items") or []
        pods = (await self.client.request("GET", pods_path, query=query)).get("items") or []
        by_run: dict[tuple[str, str], dict[str, Any]] = {}
        for pod in pods:
            meta = pod.get("metadata") or {}
            by_run[(str(meta.get("namespace")), str((meta.get("labels") or {}).get(base.LABEL_RUN)))] = pod
        prefix = self.settings.container_prefix.lower()
        found = []
        for job in jobs:
            meta = job.get("metadata") or {}
            space = str(meta.get("namespace") or "")
            if per_tenant and not space.startswith(ns + "-"):
                continue
            if not str(meta.get("name", "")).startswith(prefix):
                continue  # another control plane's, sharing the namespace
            if meta.get("deletionTimestamp"):
                continue  # already on its way out (foreground deletion in progress)
            labels = meta.get("labels") or {}
            if not self.is_mine(labels):
                continue  # another installation's
            pod = by_run.get((space, str(labels.get(base.LABEL_RUN))))
            found.append(_sandbox_info(job, pod))
        return found

    async def clean_archive(self, tenant_id: str, *, older_than_days: int) -> int:
        return 0  # no tenant volumes on Kubernetes

    async def close(self) -> None:
        for execution in list(self._live.values()):
            await execution.watch.close()
        await self.client.close()


def _sandbox_info(job: dict[str, Any], pod: dict[str, Any] | None) -> SandboxInfo:
    meta = job.get("metadata") or {}
    labels = meta.get("labels") or {}
    notes = meta.get("annotations") or {}
    status = job.get("status") or {}
    handle = RunHandle(
        run_id=str(notes.get(ANNOTATION_RUN) or labels.get(base.LABEL_RUN, "")),
        tenant_id=str(notes.get(ANNOTATION_TENANT) or labels.get(base.LABEL_TENANT, "")),
        ref=str(meta.get("name", "")),
    )
    started = parse_time(status.get("startTime"))
    finished = parse_time(status.get("completionTime"))
    if pod is not None:
        view = pod_view(pod)
        if view.state == "terminated":
            return SandboxInfo(
                handle,
                SandboxState.EXITED,
                exit_code=view.exit_code,
                oom_killed=view.oom_killed,
                started_at=view.started_at or started,
                finished_at=view.finished_at or finished,
            )
        state = SandboxState.RUNNING if view.state == "running" else SandboxState.PENDING
        return SandboxInfo(handle, state, started_at=view.started_at or started)
    done = bool(status.get("succeeded") or status.get("failed") or finished)
    return SandboxInfo(handle, SandboxState.EXITED if done else SandboxState.PENDING, started_at=started)
