"""Fixtures for the tests against a real Kubernetes API server (see cluster.py and node.py).

The binaries come from scripts/ensure-kube-apiserver.sh, run once when the first test of this directory is
collected (a cold build takes minutes, which no per-test timeout should count), or from CP_KUBE_BIN_DIR.
When they cannot be built the tests skip with the script's reason — except in CI (CI set), where that is a
failure. One control plane serves the session; every test gets a namespace of its own, with a Role and
RoleBinding granting the backend's user exactly the permissions the backend documents (helpers/f-api.md,
the chart's Role), so a call the backend makes without permission fails here as it would in a cluster.
Tests that want their pods really run ask for ``kubelet`` (kubelet.py) instead of playing the node.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from controlplane.backends.kubernetes.backend import KubernetesBackend
from controlplane.core.settings import Settings
from tests.kube.cluster import ADMIN_TOKEN, BACKEND_TOKEN, BACKEND_USER, ControlPlane, ControlPlaneError
from tests.kube.kubelet import Kubelet
from tests.kube.node import Node, eventually
from tests.support.backends import IMAGE
from tests.support.kube import BackendFactory

HERE = Path(__file__).parent
SCRIPT = HERE.parents[1] / "scripts" / "ensure-kube-apiserver.sh"
_BUILD: dict[str, str] = {}  # "bin" or "error", filled once per session

# What the backend may do in its runs namespace (mirrors the chart's Role).
BACKEND_RULES = [
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "get", "list", "watch", "delete"]},
    {"apiGroups": [""], "resources": ["secrets", "configmaps"], "verbs": ["create", "delete"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
]


def _ensure_binaries() -> None:
    if _BUILD:
        return
    given = os.environ.get("CP_KUBE_BIN_DIR")
    if given:
        _BUILD["bin"] = given
        return
    proc = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, check=False)
    if proc.returncode == 0 and proc.stdout.strip():
        _BUILD["bin"] = proc.stdout.strip().splitlines()[-1]
    else:
        _BUILD["error"] = f"{SCRIPT.name} could not provide kube-apiserver:\n{proc.stderr[-3000:]}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if any(HERE in Path(str(item.path)).parents for item in items):
        _ensure_binaries()


@pytest.fixture(scope="session")
def kube_bin() -> Path:
    _ensure_binaries()
    if "error" in _BUILD:
        if os.environ.get("CI"):
            pytest.fail(_BUILD["error"], pytrace=False)
        pytest.skip(_BUILD["error"])
    return Path(_BUILD["bin"])


@pytest.fixture(scope="session")
def kube(kube_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """etcd + kube-apiserver + kube-controller-manager on loopback, for the whole session."""
    plane = ControlPlane(kube_bin, tmp_path_factory.mktemp("kube"))
    try:
        plane.start()
    except ControlPlaneError as exc:
        plane.stop()
        pytest.fail(str(exc), pytrace=False)
    yield plane
    plane.stop()


@pytest.fixture
async def kube_api(kube: ControlPlane) -> AsyncIterator[httpx.AsyncClient]:
    """An admin (system:masters) client."""
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with httpx.AsyncClient(
        base_url=kube.server, verify=ssl.create_default_context(cafile=kube.ca_file), headers=headers, timeout=30
    ) as c:
        yield c


@pytest.fixture
async def node(kube_api: httpx.AsyncClient) -> AsyncIterator[Node]:
    """A fresh namespace (deleted afterwards) where the backend's user has its Role, and the node player."""
    ns = f"cp-kt-{uuid.uuid4().hex[:8]}"
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
    (await kube_api.post("/api/v1/namespaces", json=body)).raise_for_status()
    player = Node(kube_api, ns)
    rbac = "rbac.authorization.k8s.io/v1"
    role = {"apiVersion": rbac, "kind": "Role", "metadata": {"name": "controlplane-backend"}, "rules": BACKEND_RULES}
    binding = {
        "apiVersion": rbac,
        "kind": "RoleBinding",
        "metadata": {"name": "controlplane-backend"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "controlplane-backend"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": BACKEND_USER}],
    }
    group = "rbac.authorization.k8s.io/v1"
    (await kube_api.post(player.path("roles", group=group), json=role)).raise_for_status()
    (await kube_api.post(player.path("rolebindings", group=group), json=binding)).raise_for_status()
    # the ServiceAccount admission plugin refuses pods until the namespace's default ServiceAccount exists
    await eventually(lambda: player.get("serviceaccounts", "default"), what=f"the default ServiceAccount in {ns}")
    yield player
    await kube_api.delete(f"/api/v1/namespaces/{ns}")  # the namespace controller removes what is left


@pytest.fixture
async def make_backend(kube: ControlPlane, node: Node) -> AsyncIterator[BackendFactory]:
    """KubernetesBackend instances acting as the limited ``controlplane-backend`` user in the test's
    namespace; each is closed at the end (a test may close one early to play a restart)."""
    kubeconfig = kube.user_kubeconfig(BACKEND_USER, BACKEND_TOKEN)
    made: list[KubernetesBackend] = []

    async def factory(**overrides: Any) -> KubernetesBackend:
        values: dict[str, Any] = {
            "backend": "kubernetes",
            "k8s_namespace": node.namespace,
            "tenant_volumes": False,
            "sandbox_image": IMAGE,
            "k8s_retries": 2,
        }
        values.update(overrides)
        backend = KubernetesBackend(Settings(**values), kubeconfig=kubeconfig)
        await backend.prepare()
        made.append(backend)
        return backend

    yield factory
    for backend in made:
        await backend.close()


@pytest.fixture
async def kubelet(kube: ControlPlane, node: Node, tmp_path: Path) -> AsyncIterator[Kubelet]:
    """A kubelet (kubelet.py) that really runs the test namespace's pods with Docker; it must end with no
    error of its own and no container left behind."""
    running = Kubelet(kube, node.namespace, tmp_path / "kubelet")
    await asyncio.to_thread(running.start)
    try:
        yield running
    finally:
        left = await asyncio.to_thread(running.leftovers)
        for _ in range(150):  # a deleted pod's container may still be in its grace period: let it end
            if not left:
                break
            await asyncio.sleep(0.2)
            left = await asyncio.to_thread(running.leftovers)
        await asyncio.to_thread(running.stop)
    assert not running.errors, running.errors
    assert not left, f"the kubelet left containers behind: {left}"
