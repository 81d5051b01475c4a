"""What one run looks like on a cluster: its batch/v1 Job and the Secret (or ConfigMap) carrying its bundle.

Pure functions over ``RunSpec`` and ``Settings`` (no API calls), so the whole pod policy is on one screen
and the tests can validate every manifest with kubernetes-validate --strict.

Policy (Pod Security "restricted" plus design.md's sandbox rules): one pod, never restarted
(``backoffLimit: 0``, ``restartPolicy: Never``), ``activeDeadlineSeconds`` = the run's deadline plus a
grace (the control plane's own deadline fires first; this is the backstop when no control plane is
left), ``ttlSecondsAfterFinished``, no service-account token, no service links, non-root with the
configured uid:gid, seccomp RuntimeDefault, no privilege escalation, every capability dropped, read-only
root file system with emptyDir ``/work`` and ``/tmp`` (in memory by default, sized), requests == limits
(Guaranteed QoS) for cpu and memory plus ephemeral-storage.

The bundle (files, args, env incl. the run's token, input) reaches the runner as a file: the object is
created right after the Job, owned by it (``ownerReferences`` with the Job's uid, so the garbage collector
deletes it with the Job), and mounted read-only; the runner reads it with ``--bundle``. The pod cannot
start before that volume exists (the kubelet keeps it in ContainerCreating), so no ``suspend`` dance is
needed and API servers without ``spec.suspend`` work the same.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
from typing import Any

from controlplane.backends.base import (
    LABEL_RUN,
    SANDBOX_WORK,
    RunSpec,
)
from controlplane.core.errors import LaunchFailed
from controlplane.core.settings import Settings

LABEL_NETWORK = "io.controlplane.network"  # none | api | egress: the chart's NetworkPolicies select on it
ANNOTATION_RUN = "io.controlplane.run-id"  # raw ids: label values are sanitised, annotations are not
ANNOTATION_TENANT = "io.controlplane.tenant-id"
CONTAINER = "runner"
BUNDLE_KEY = "bundle.json"
BUNDLE_DIR = "/mnt/bundle"
BUNDLE_PATH = f"{BUNDLE_DIR}/{BUNDLE_KEY}"
RUNNER_ARGS = ["/usr/bin/python3", "-I", "/opt/controlplane/runner.py", "--bundle", BUNDLE_PATH]
# Secrets and ConfigMaps hold at most 1 MiB of data; keep a little room for the key and metadata.
MAX_BUNDLE_BYTES = 1024 * 1024 - 4096
LOG_ALLOWANCE_MB = 64  # ephemeral storage for the container's log files (the runner's frames)
TERMINATION_GRACE_SECONDS = 5

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def _digest(text: str, n: int = 8) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def dns_label(text: str, *, limit: int = 63) -> str:
    """``text`` as an RFC 1123 label (object names, namespaces); unchanged when it already is one,
    otherwise lower-cased, invalid runs replaced by '-', cut and suffixed with a hash so two inputs never
    collide after cleaning."""
    if len(text) <= limit and _DNS_LABEL.match(text):
        return text
    clean = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    suffix = _digest(text)
    return f"{clean[: limit - len(suffix) - 1].rstrip('-')}-{suffix}".lstrip("-") or suffix


def label_value(text: str) -> str:
    """``text`` as a valid label value (at most 63 of [-_.A-Za-z0-9], alphanumeric at both ends)."""
    if len(text) <= 63 and _LABEL_VALUE.match(text):
        return text
    clean = re.sub(r"[^-A-Za-z0-9_.]+", "-", text).strip("-_.")
    suffix = _digest(text)
    return f"{clean[:54].rstrip('-_.')}-{suffix}".lstrip("-_.")


def job_name(settings: Settings, run_id: str) -> str:
    return dns_label(settings.container_prefix + run_id)


def bundle_name(job: str) -> str:
    return dns_label(job + "-bundle", limit=253)


def namespace_for(settings: Settings, tenant_id: str) -> str:
    if settings.k8s_namespace_per_tenant:
        return dns_label(f"{settings.k8s_namespace}-{tenant_id}")
    return settings.k8s_namespace


def run_selector(run_id: str) -> str:
    return f"{LABEL_RUN}={label_value(run_id)}"


def run_labels(spec: RunSpec) -> dict[str, str]:
    """The run's labels, made valid label values, plus its network mode (the NetworkPolicies select on it)."""
    raw = {**spec.sandbox_labels(), LABEL_NETWORK: spec.network.value}
    return {key: label_value(value) for key, value in raw.items()}


def _ids(spec: RunSpec) -> dict[str, str]:
    return {ANNOTATION_RUN: spec.run_id, ANNOTATION_TENANT: spec.tenant_id}


def check_bundle_size(bundle: bytes) -> None:
    if len(bundle) > MAX_BUNDLE_BYTES:
        raise LaunchFailed(
            f"the run's files, arguments, environment and input take {len(bundle)} bytes once encoded; "
            f"on Kubernetes they travel in one object of at most {MAX_BUNDLE_BYTES} bytes"
        )


def _user(settings: Settings) -> tuple[int, int]:
    uid, _, gid = settings.sandbox_user.partition(":")
    return int(uid), int(gid or uid)


def active_deadline(spec: RunSpec, settings: Settings) -> int:
    return max(1, math.ceil(spec.deadline_seconds)) + settings.k8s_deadline_grace_seconds


def _resources(spec: RunSpec, settings: Settings) -> dict[str, Any]:
    res = spec.resources
    on_disk = settings.k8s_scratch_medium == "Disk"
    storage_mb = LOG_ALLOWANCE_MB + (res.work_mb + res.tmp_mb if on_disk else 0)
    quantities = {
        "cpu": f"{max(1, round(res.cpus * 1000))}m",
        # memoryMb bounds the script and what it keeps in in-memory /work and /tmp together, as on Docker
        # (tmpfs pages are charged to the writer's memory cgroup on both): the same script, the same OOM
        "memory": f"{res.memory_mb}Mi",
        "ephemeral-storage": f"{storage_mb}Mi",
    }
    return {"requests": dict(quantities), "limits": dict(quantities)}


def _scratch(name: str, size_mb: int, settings: Settings) -> dict[str, Any]:
    empty: dict[str, Any] = {"sizeLimit": f"{size_mb}Mi"}
    if settings.k8s_scratch_medium == "Memory":
        empty["medium"] = "Memory"
    return {"name": name, "emptyDir": empty}


def _bundle_volume(name: str, settings: Settings) -> dict[str, Any]:
    items = [{"key": BUNDLE_KEY, "path": BUNDLE_KEY}]
    if settings.k8s_bundle_kind == "ConfigMap":
        return {"name": "bundle", "configMap": {"name": name, "items": items, "defaultMode": 0o444}}
    return {"name": "bundle", "secret": {"secretName": name, "items": items, "defaultMode": 0o444}}


def job_manifest(spec: RunSpec, settings: Settings) -> dict[str, Any]:
    """The batch/v1 Job of one run."""
    uid, gid = _user(settings)
    name = job_name(settings, spec.run_id)
    labels = run_labels(spec)
    seccomp = {"type": "RuntimeDefault"}
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": spec.image or settings.sandbox_image,
        "imagePullPolicy": settings.k8s_image_pull_policy,
        "args": list(RUNNER_ARGS),  # the image's entrypoint (tini) stays; only the runner's argv changes
        "workingDir": SANDBOX_WORK,
        "resources": _resources(spec, settings),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "runAsUser": uid,
            "runAsGroup": gid,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": dict(seccomp),
        },
        "volumeMounts": [
            {"name": "work", "mountPath": SANDBOX_WORK},
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - inside the sandbox
            {"name": "bundle", "mountPath": BUNDLE_DIR, "readOnly": True},
        ],
        "terminationMessagePolicy": "File",
    }
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "hostNetwork": False,
        "hostPID": False,
        "hostIPC": False,
        "shareProcessNamespace": False,
        "hostname": "sandbox",
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": uid,
            "runAsGroup": gid,
            "seccompProfile": dict(seccomp),
        },
        "containers": [container],
        "volumes": [
            _scratch("work", spec.resources.work_mb, settings),
            _scratch("tmp", spec.resources.tmp_mb, settings),
            _bundle_volume(bundle_name(name), settings),
        ],
    }
    if settings.k8s_runtime_class:
        pod["runtimeClassName"] = settings.k8s_runtime_class
    if settings.k8s_node_selector:
        pod["nodeSelector"] = dict(settings.k8s_node_selector)
    if settings.k8s_tolerations:
        pod["tolerations"] = [dict(t) for t in settings.k8s_tolerations]
    if settings.k8s_image_pull_secret:
        pod["imagePullSecrets"] = [{"name": settings.k8s_image_pull_secret}]
    job_spec: dict[str, Any] = {
        "backoffLimit": 0,
        "completions": 1,
        "parallelism": 1,
        "activeDeadlineSeconds": active_deadline(spec, settings),
        "template": {"metadata": {"labels": dict(labels), "annotations": _ids(spec)}, "spec": pod},
    }
    if settings.k8s_ttl_seconds_after_finished > 0:
        job_spec["ttlSecondsAfterFinished"] = settings.k8s_ttl_seconds_after_finished
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": namespace_for(settings, spec.tenant_id),
            "labels": labels,
            "annotations": _ids(spec),
        },
        "spec": job_spec,
    }


def bundle_manifest(spec: RunSpec, settings: Settings, bundle: bytes, *, job: dict[str, Any]) -> dict[str, Any]:
    """The Secret (default) or ConfigMap carrying ``bundle``, owned by the created ``job`` (its uid)."""
    check_bundle_size(bundle)
    meta = job.get("metadata") or {}
    owner = {"apiVersion": "batch/v1", "kind": "Job", "name": str(meta["name"]), "uid": str(meta["uid"])}
    metadata = {
        "name": bundle_name(str(meta["name"])),
        "namespace": namespace_for(settings, spec.tenant_id),
        "labels": run_labels(spec),
        "annotations": _ids(spec),
        "ownerReferences": [owner],
    }
    encoded = base64.b64encode(bundle).decode()
    if settings.k8s_bundle_kind == "ConfigMap":
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": metadata,
            "immutable": True,
            "binaryData": {BUNDLE_KEY: encoded},
        }
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": "Opaque",
        "immutable": True,
        "data": {BUNDLE_KEY: encoded},
    }
