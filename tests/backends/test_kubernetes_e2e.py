"""A real script on a real cluster, end to end: runs only where a KUBECONFIG with schedulable nodes is present.

The test makes its own namespace, labelled ``pod-security.kubernetes.io/enforce=restricted`` (so the API
server itself rejects a pod that is not "restricted"-compliant), runs a Python script that writes to
stdout and stderr, reads its input, leaves an artifact and exits 3, checks all of that came back apart
and exact, and removes the namespace. The sandbox image (CP_SANDBOX_IMAGE, default
controlplane-sandbox-python:1) must be pullable by the cluster's nodes.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from controlplane.backends.kubernetes.backend import KubernetesBackend
from controlplane.backends.kubernetes.client import KubeClient
from controlplane.core.settings import Settings
from tests.support.backends import IMAGE, SpecFactory, follow

SCRIPT = """
import os, sys
data = open(os.environ["INPUT_FILE"]).read()
print("out:" + data)
print("err:" + " ".join(sys.argv[1:]), file=sys.stderr)
open(os.path.join(os.environ["OUTPUTS"], "result.txt"), "w").write("done")
sys.exit(3)
"""


def _kubeconfig() -> Path | None:
    raw = os.environ.get("CP_K8S_KUBECONFIG") or os.environ.get("KUBECONFIG")
    if not raw:
        return None
    path = Path(raw.split(os.pathsep)[0]).expanduser()
    return path if path.is_file() else None


def _schedulable(node: dict[str, Any]) -> bool:
    if (node.get("spec") or {}).get("unschedulable"):
        return False
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


@pytest.fixture
async def cluster() -> AsyncIterator[tuple[Path, str]]:
    path = _kubeconfig()
    if path is None:
        pytest.skip("no KUBECONFIG (or CP_K8S_KUBECONFIG) pointing at a cluster: the end-to-end run needs one")
    settings = Settings(k8s_retries=2)
    client = KubeClient(settings, kubeconfig=path)
    try:
        try:
            nodes = (await client.request("GET", "/api/v1/nodes")).get("items") or []
        except Exception as exc:
            pytest.skip(f"the cluster in {path} does not answer: {exc}")
        if not any(_schedulable(n) for n in nodes):
            pytest.skip(f"the cluster in {path} has no Ready, schedulable node (no kubelet: pods never run)")
        namespace = f"cp-e2e-{uuid.uuid4().hex[:8]}"
        labels = {
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/enforce-version": "latest",
        }
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace, "labels": labels}}
        await client.request("POST", "/api/v1/namespaces", body=body)
        try:
            yield path, namespace
        finally:
            await client.request("DELETE", f"/api/v1/namespaces/{namespace}")
    finally:
        await client.close()


async def test_real_script_on_a_real_cluster(cluster: tuple[Path, str], make_spec: SpecFactory) -> None:
    path, namespace = cluster
    settings = Settings(backend="kubernetes", k8s_namespace=namespace, tenant_volumes=False, sandbox_image=IMAGE)
    backend = KubernetesBackend(settings, kubeconfig=path)
    try:
        await backend.prepare()
        env = {"INPUT_FILE": "/work/input", "OUTPUTS": "/work/outputs"}
        spec = replace(make_spec(SCRIPT, args=["a", "b c"], input=b"hello", env=env), deadline_seconds=300)
        result = await follow(await backend.launch(spec), timeout=300)
        assert result.stdout == b"out:hello\n"
        assert result.stderr == b"err:a b c\n"
        assert result.artifacts == {"result.txt": b"done"}
        assert result.outcome is not None and result.outcome.exit_code == 3
        assert not result.outcome.oom_killed
        assert await backend.list_sandboxes() == []  # the Job went with finish()
    finally:
        await backend.close()
