"""Every manifest the Kubernetes backend sends, validated offline against the real API schemas.

kubernetes-validate --strict (unknown fields are errors) against every schema version it ships from 1.28
up to the newest, for default and non-default settings; then Pod Security "restricted" and the run
policy asserted field by field, so nothing we send depends on an old API server's leniency.
"""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from typing import Any

import kubernetes_validate
import pytest
from kubernetes_validate.utils import all_versions
from packaging.version import Version

from controlplane.backends.base import LABEL_AUTOMATION, LABEL_MANAGED, LABEL_RUN, LABEL_TENANT, Resources
from controlplane.backends.kubernetes.manifests import (
    ANNOTATION_RUN,
    BUNDLE_PATH,
    LABEL_NETWORK,
    MAX_BUNDLE_BYTES,
    bundle_manifest,
    check_bundle_size,
    dns_label,
    job_manifest,
    label_value,
    namespace_for,
)
from controlplane.core.errors import LaunchFailed
from controlplane.core.settings import Settings
from controlplane.core.states import NetworkMode
from tests.support.backends import SpecFactory

VERSIONS = [v for v in all_versions() if Version(v) >= Version("1.28")]
RUN_ID = "3f2b8c1e-7d4a-4b7e-9c1a-2e5f6a7b8c9d"
TENANT = "0b9c8d7e-6f5a-4b3c-2d1e-0f9a8b7c6d5e"

DEFAULT = Settings()
CUSTOM = Settings(
    k8s_namespace="runs",
    k8s_namespace_per_tenant=True,
    k8s_runtime_class="gvisor",
    k8s_node_selector={"pool": "sandboxes", "kubernetes.io/arch": "amd64"},
    k8s_tolerations=[{"key": "sandbox", "operator": "Equal", "value": "true", "effect": "NoSchedule"}],
    k8s_image_pull_policy="Always",
    k8s_image_pull_secret="registry-creds",
    k8s_ttl_seconds_after_finished=0,
    k8s_scratch_medium="Disk",
    k8s_bundle_kind="ConfigMap",
    sandbox_user="20002:30003",
    container_prefix="Run_",
)


def _created(job: dict[str, Any]) -> dict[str, Any]:
    """The Job as the API server answers a create: with its uid."""
    out: dict[str, Any] = json.loads(json.dumps(job))
    out["metadata"]["uid"] = "6c9e1f2a-0000-4000-8000-000000000001"
    return out


def _manifests(make_spec: SpecFactory, settings: Settings, **kw: Any) -> list[dict[str, Any]]:
    spec = replace(make_spec(run_id=kw.pop("run_id", RUN_ID), **kw), tenant_id=TENANT)
    job = job_manifest(spec, settings)
    return [job, bundle_manifest(spec, settings, b'{"v":1}', job=_created(job))]


CASES: dict[str, tuple[Settings, dict[str, Any]]] = {
    "default": (DEFAULT, {}),
    "custom": (CUSTOM, {"network": NetworkMode.EGRESS, "run_id": "Odd Run/ID_" + "x" * 80}),
    "api-network": (DEFAULT, {"network": NetworkMode.API}),
}


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_manifests_validate_strictly(make_spec: SpecFactory, case: str, version: str) -> None:
    settings, kw = CASES[case]
    for manifest in _manifests(make_spec, settings, **dict(kw)):
        kubernetes_validate.validate(manifest, version, strict=True)


def test_versions_cover_newest_schema() -> None:
    assert VERSIONS[0].startswith("1.28")
    assert VERSIONS[-1] == all_versions()[-1]


def test_job_policy_default(make_spec: SpecFactory) -> None:
    resources = Resources(cpus=0.5, memory_mb=256, pids=64, tmp_mb=16, work_mb=32)
    spec = replace(make_spec(run_id=RUN_ID, resources=resources), tenant_id=TENANT)
    job = job_manifest(spec, DEFAULT)
    assert job["apiVersion"] == "batch/v1" and job["kind"] == "Job"
    meta = job["metadata"]
    assert meta["name"] == "cp-run-" + RUN_ID
    assert meta["namespace"] == "controlplane-runs"
    assert meta["labels"][LABEL_MANAGED] == "true"
    assert meta["labels"][LABEL_RUN] == RUN_ID
    assert meta["labels"][LABEL_TENANT] == TENANT
    assert meta["labels"][LABEL_AUTOMATION] == spec.automation_id
    assert meta["labels"][LABEL_NETWORK] == "none"
    js = job["spec"]
    assert js["backoffLimit"] == 0
    assert js["activeDeadlineSeconds"] == 60 + DEFAULT.k8s_deadline_grace_seconds
    assert js["ttlSecondsAfterFinished"] == 300
    template = js["template"]
    assert template["metadata"]["labels"] == meta["labels"]  # the pod carries them too (NetworkPolicies)
    pod = template["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False
    assert pod["hostNetwork"] is False and pod["hostPID"] is False and pod["hostIPC"] is False
    assert "runtimeClassName" not in pod and "nodeSelector" not in pod and "tolerations" not in pod
    # Pod Security "restricted", pod level
    psc = pod["securityContext"]
    assert psc["runAsNonRoot"] is True
    assert psc["runAsUser"] == 10001 and psc["runAsGroup"] == 10001
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    [container] = pod["containers"]
    csc = container["securityContext"]
    assert csc["allowPrivilegeEscalation"] is False
    assert csc["privileged"] is False
    assert csc["capabilities"] == {"drop": ["ALL"]}
    assert "add" not in csc["capabilities"]
    assert csc["readOnlyRootFilesystem"] is True
    assert csc["runAsNonRoot"] is True and csc["runAsUser"] == 10001
    assert csc["seccompProfile"] == {"type": "RuntimeDefault"}
    # restricted allows only these volume types
    allowed = {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
    for volume in pod["volumes"]:
        assert set(volume) - {"name"} <= allowed
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["work"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "32Mi"}
    assert volumes["tmp"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "16Mi"}
    assert volumes["bundle"]["secret"]["secretName"] == "cp-run-" + RUN_ID + "-bundle"
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["work"]["mountPath"] == "/work" and mounts["tmp"]["mountPath"] == "/tmp"
    assert mounts["bundle"]["readOnly"] is True
    assert container["args"][-2:] == ["--bundle", BUNDLE_PATH]
    assert "command" not in container  # the image's tini entrypoint stays pid 1
    # Guaranteed QoS: requests == limits; in-memory scratch lives within memoryMb, as on Docker
    res = container["resources"]
    assert res["requests"] == res["limits"]
    assert res["limits"] == {"cpu": "500m", "memory": "256Mi", "ephemeral-storage": "64Mi"}
    assert "env" not in container  # nothing of ours leaks in; the runner builds the script's env


def test_job_policy_custom(make_spec: SpecFactory) -> None:
    run_id = "Odd Run/ID_" + "x" * 80
    spec = replace(make_spec(run_id=run_id, network=NetworkMode.EGRESS), tenant_id=TENANT, deadline_seconds=12.2)
    job = job_manifest(spec, CUSTOM)
    meta = job["metadata"]
    assert len(meta["name"]) <= 63 and meta["name"] == dns_label("Run_" + run_id)
    assert meta["namespace"] == namespace_for(CUSTOM, TENANT) == f"runs-{TENANT}"
    assert meta["labels"][LABEL_RUN] == label_value(run_id) != run_id
    assert meta["annotations"][ANNOTATION_RUN] == run_id  # the raw id survives for reconcile
    assert meta["labels"][LABEL_NETWORK] == "egress"
    js = job["spec"]
    assert "ttlSecondsAfterFinished" not in js
    assert js["activeDeadlineSeconds"] == 13 + CUSTOM.k8s_deadline_grace_seconds
    pod = js["template"]["spec"]
    assert pod["runtimeClassName"] == "gvisor"
    assert pod["nodeSelector"] == {"pool": "sandboxes", "kubernetes.io/arch": "amd64"}
    assert pod["tolerations"][0]["key"] == "sandbox"
    assert pod["imagePullSecrets"] == [{"name": "registry-creds"}]
    assert pod["securityContext"]["runAsUser"] == 20002 and pod["securityContext"]["runAsGroup"] == 30003
    [container] = pod["containers"]
    assert container["imagePullPolicy"] == "Always"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["work"]["emptyDir"] == {"sizeLimit": f"{spec.resources.work_mb}Mi"}  # on disk
    assert "configMap" in volumes["bundle"]
    res = container["resources"]["limits"]
    assert res["memory"] == f"{spec.resources.memory_mb}Mi"
    assert res["ephemeral-storage"] == f"{64 + spec.resources.work_mb + spec.resources.tmp_mb}Mi"


@pytest.mark.parametrize("settings", [DEFAULT, CUSTOM], ids=["secret", "configmap"])
def test_bundle_is_owned_by_the_job(make_spec: SpecFactory, settings: Settings) -> None:
    spec = replace(make_spec(run_id=RUN_ID), tenant_id=TENANT)
    job = _created(job_manifest(spec, settings))
    bundle = b'{"v":1,"files":{}}'
    obj = bundle_manifest(spec, settings, bundle, job=job)
    [owner] = obj["metadata"]["ownerReferences"]
    assert owner == {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": job["metadata"]["name"],
        "uid": "6c9e1f2a-0000-4000-8000-000000000001",
    }
    assert obj["metadata"]["namespace"] == job["metadata"]["namespace"]
    assert obj["immutable"] is True
    data = obj["data"] if obj["kind"] == "Secret" else obj["binaryData"]
    assert base64.b64decode(data["bundle.json"]) == bundle
    assert obj["kind"] == settings.k8s_bundle_kind


def test_bundle_size_is_checked_before_submission(make_spec: SpecFactory) -> None:
    check_bundle_size(b"x" * MAX_BUNDLE_BYTES)
    with pytest.raises(LaunchFailed, match="at most"):
        check_bundle_size(b"x" * (MAX_BUNDLE_BYTES + 1))
    spec = make_spec(run_id=RUN_ID)
    with pytest.raises(LaunchFailed):
        bundle_manifest(spec, DEFAULT, b"x" * (1 << 20), job=_created(job_manifest(spec, DEFAULT)))


@pytest.mark.parametrize("text", ["abc", "A_B.c", "-x-", "a" * 100, "über/run", "..", ""])
def test_names_and_label_values_are_valid(text: str) -> None:
    import re

    name = dns_label(text or "x")
    assert len(name) <= 63 and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name)
    value = label_value(text)
    assert len(value) <= 63 and re.fullmatch(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?", value)
    if text and text != dns_label(text):
        assert dns_label(text) != dns_label(text + "!")  # cleaning never merges two ids
