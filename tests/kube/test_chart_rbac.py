"""The chart's Role on a real API server with RBAC on: the chart's ServiceAccount, bound by the chart's own
RoleBinding and configured by the chart's ConfigMap, launches a real run that a real kubelet runs.

The chart is rendered offline (tests/chart/helm.py) with the test namespace as its runs namespace; its
ServiceAccount, Role and RoleBinding are applied unchanged; the backend authenticates with the token the
API server issued that ServiceAccount. So a Role that lacks what the backend needs for the bundle kind the
chart configures fails here, as it would in a real deployment."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from controlplane.backends.kubernetes.backend import KubernetesBackend
from controlplane.core.settings import Settings
from tests.chart.helm import manifests, one
from tests.kube.cluster import ControlPlane
from tests.kube.kubelet import Kubelet
from tests.kube.node import Node, eventually
from tests.support.backends import IMAGE, SpecFactory, drive

RBAC = "rbac.authorization.k8s.io/v1"


@pytest.fixture
async def release_namespace(kube_api: httpx.AsyncClient) -> AsyncIterator[str]:
    ns = f"cp-rel-{uuid.uuid4().hex[:8]}"
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
    (await kube_api.post("/api/v1/namespaces", json=body)).raise_for_status()
    yield ns
    await kube_api.delete(f"/api/v1/namespaces/{ns}")


async def _apply(api: httpx.AsyncClient, doc: dict[str, Any], path: str) -> None:
    resp = await api.post(path, json=doc)
    assert resp.status_code == 201, resp.text


async def _token(api: httpx.AsyncClient, namespace: str, account: str) -> str:
    """The token the API server's token controller issued the ServiceAccount (Kubernetes 1.20)."""

    async def issued() -> str | None:
        sa = (await api.get(f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}")).json()
        for ref in sa.get("secrets") or []:
            secret = (await api.get(f"/api/v1/namespaces/{namespace}/secrets/{ref['name']}")).json()
            token = (secret.get("data") or {}).get("token")
            if token:
                return base64.b64decode(token).decode()
        return None

    return await eventually(issued, what=f"a token for ServiceAccount {namespace}/{account}")


@pytest.mark.parametrize("bundle_kind", ["Secret", "ConfigMap"])
async def test_the_charts_service_account_runs_a_run(
    kube: ControlPlane,
    kube_api: httpx.AsyncClient,
    node: Node,
    kubelet: Kubelet,
    release_namespace: str,
    make_spec: SpecFactory,
    bundle_kind: str,
) -> None:
    values: dict[str, Any] = {
        "runs": {"namespace": node.namespace, "createNamespace": False},
        "config": {"CP_K8S_BUNDLE_KIND": bundle_kind},
    }
    docs = manifests(values, namespace=release_namespace)
    account, role, binding = one(docs, "ServiceAccount"), one(docs, "Role"), one(docs, "RoleBinding")
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == node.namespace
    await _apply(kube_api, account, f"/api/v1/namespaces/{release_namespace}/serviceaccounts")
    await _apply(kube_api, role, f"/apis/{RBAC}/namespaces/{node.namespace}/roles")
    await _apply(kube_api, binding, f"/apis/{RBAC}/namespaces/{node.namespace}/rolebindings")
    token = await _token(kube_api, release_namespace, account["metadata"]["name"])

    config = one(docs, "ConfigMap", f"{account['metadata']['name']}-config")["data"]
    chosen = {key[3:].lower(): value for key, value in config.items() if key.startswith("CP_K8S_")}
    assert chosen["k8s_namespace"] == node.namespace
    assert chosen["k8s_bundle_kind"] == bundle_kind
    settings = Settings(backend="kubernetes", tenant_volumes=False, sandbox_image=IMAGE, k8s_retries=2, **chosen)
    user = f"system:serviceaccount:{release_namespace}:{account['metadata']['name']}"
    backend = KubernetesBackend(settings, kubeconfig=kube.user_kubeconfig(user.replace(":", "-"), token))
    await backend.prepare()
    try:
        seen = await drive(backend, make_spec(code="print('hello from the chart')\n"), timeout=120)
    finally:
        await backend.close()
    assert seen.outcome is not None and seen.outcome.exit_code == 0, seen
    assert b"hello from the chart" in seen.stdout
