"""A minimal kubelet for the loopback cluster: it really runs a namespace's pods, with Docker.

``node.py`` plays the node by writing pod status; this module runs the pod's container instead, so the
real runner in the real sandbox image answers the Kubernetes backend through the API server, exactly as it
answers the Docker backend. What it does, like a kubelet would:

* registers a Node (InternalIP 127.0.0.1, Ready, ``daemonEndpoints.kubeletEndpoint.Port`` = its HTTPS port:
  the API server's pods/log proxy connects there; without ``--kubelet-certificate-authority`` the 1.20 API
  server does not verify the kubelet's certificate, so a self-signed one serves);
* polls the namespace's pods; binds each new one to the node (``pods/{name}/binding``), writes the Secret or
  ConfigMap volumes it mounts to a host directory (items, ``defaultMode``) and ``docker run``s its first
  container: image, command/args, env values, workingDir, runAsUser/runAsGroup, read-only root, dropped
  capabilities, no-new-privileges, a tmpfs per emptyDir (``sizeLimit``), the cpu and memory limits (so an
  OOM kill is real), no network;
* reports Running once the container started, then terminated with Docker's exit code and reason
  (``OOMKilled`` when Docker says so, else Completed/Error) and the pod phase;
* keeps the container's stdout and stderr merged in one log (as Kubernetes does) and serves it at
  ``GET /containerLogs/{ns}/{pod}/{container}`` (``follow=true``: chunked, while the container runs;
  see kubelet_logs.py);
* on a pod's graceful deletion (``deletionTimestamp``) stops the container within the pod's grace period,
  reports it terminated and confirms the deletion (``gracePeriodSeconds: 0``), as the API server waits
  for the kubelet of a bound pod.

Containers carry the label ``io.controlplane.test-kubelet=<node>``; each is removed once its exit status
and log are taken, and ``stop()`` removes whatever is left (also when a test failed).
"""

from __future__ import annotations

import base64
import datetime as dt
import http.server
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import docker

from tests.kube.cluster import ControlPlane
from tests.kube.kubelet_logs import PodLog, serve_logs

LABEL = "io.controlplane.test-kubelet"
MERGE = {"Content-Type": "application/merge-patch+json"}
POLL_SECONDS = 0.2
_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 10**3, "M": 10**6, "G": 10**9}


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def quantity_bytes(text: str) -> int:
    for suffix in sorted(_UNITS, key=len, reverse=True):
        if text.endswith(suffix):
            return int(float(text[: -len(suffix)]) * _UNITS[suffix])
    return int(float(text))


def quantity_cpus(text: str) -> float:
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


class Kubelet:
    def __init__(self, kube: ControlPlane, namespace: str, workdir: Path) -> None:
        self.kube = kube
        self.namespace = namespace
        self.node = f"cp-test-node-{uuid.uuid4().hex[:6]}"
        self.workdir = workdir
        self.api = kube.client()
        self.docker = docker.DockerClient(version="auto")
        self.logs: dict[str, PodLog] = {}  # by pod name
        self.containers: dict[str, str] = {}  # pod name -> container id, while it runs
        self.errors: list[str] = []
        self._seen: set[str] = set()  # pod uids taken over
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server: http.server.ThreadingHTTPServer | None = None

    # -- lifecycle -------------------------------------------------------------------------------------

    def start(self) -> Kubelet:
        self._server = serve_logs(self.namespace, self.logs, self._stopping, self.workdir / "kubelet-pki")
        port = self._server.server_address[1]
        conditions = [
            {"type": "Ready", "status": "True", "reason": "KubeletReady", "lastHeartbeatTime": _now()},
        ]
        body = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": self.node, "labels": {LABEL: self.node}}}
        self.api.post("/api/v1/nodes", json=body).raise_for_status()
        status = {
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
            "conditions": conditions,
            "capacity": {"cpu": "2", "memory": "8Gi", "pods": "110", "ephemeral-storage": "20Gi"},
            "allocatable": {"cpu": "2", "memory": "8Gi", "pods": "110", "ephemeral-storage": "20Gi"},
        }
        path = f"/api/v1/nodes/{self.node}/status"
        self.api.patch(path, json={"status": status}, headers=MERGE).raise_for_status()
        self._spawn(self._loop)
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._remove_all()  # ends the pod threads' log streams and waits
        for t in self._threads:
            t.join(30)
        self._remove_all()  # one that was being created meanwhile
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        self.api.delete(f"/api/v1/nodes/{self.node}")
        self.api.close()
        self.docker.close()

    def _remove_all(self) -> None:
        for cid in self.leftovers():
            try:
                self.docker.api.remove_container(cid, force=True)
            except docker.errors.NotFound:
                pass

    def leftovers(self) -> list[str]:
        return [c["Id"] for c in self.docker.api.containers(all=True, filters={"label": f"{LABEL}={self.node}"})]

    def _spawn(self, target: Any, *args: Any) -> None:
        t = threading.Thread(target=self._guard, args=(target, *args), daemon=True)
        self._threads.append(t)
        t.start()

    def _guard(self, target: Any, *args: Any) -> None:
        try:
            target(*args)
        except Exception as exc:  # shown by the tests (Kubelet.errors) instead of dying silently
            if not self._stopping.is_set():
                self.errors.append(f"{target.__name__}{args[:1]}: {exc!r}")

    # -- the pod loop ------------------------------------------------------------------------------------

    def _pod_path(self, name: str, sub: str = "") -> str:
        return f"/api/v1/namespaces/{self.namespace}/pods/{name}{sub}"

    def _loop(self) -> None:
        while not self._stopping.is_set():
            resp = self.api.get(f"/api/v1/namespaces/{self.namespace}/pods")
            if resp.status_code == 200:
                for pod in resp.json().get("items") or []:
                    self._observe(pod)
            self._stopping.wait(POLL_SECONDS)

    def _observe(self, pod: dict[str, Any]) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        if meta["uid"] not in self._seen and not spec.get("nodeName") and not meta.get("deletionTimestamp"):
            self._seen.add(meta["uid"])
            self._spawn(self._run_pod, pod)
        elif meta.get("deletionTimestamp") and spec.get("nodeName") == self.node and meta["uid"] in self._seen:
            if meta["uid"] + "/deleted" not in self._seen:
                self._seen.add(meta["uid"] + "/deleted")
                self._spawn(self._delete_pod, pod)

    def _delete_pod(self, pod: dict[str, Any]) -> None:
        name = pod["metadata"]["name"]
        grace = int(pod["metadata"].get("deletionGracePeriodSeconds") or 0)
        cid = self.containers.get(name)
        if cid is not None:
            try:
                self.docker.api.stop(cid, timeout=grace)
            except docker.errors.NotFound:
                pass
        deadline = time.monotonic() + grace + 30
        while self.containers.get(name) and time.monotonic() < deadline:  # _run_pod reports the end
            time.sleep(0.1)
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0}
        body["preconditions"] = {"uid": pod["metadata"]["uid"]}
        resp = self.api.request("DELETE", self._pod_path(name), json=body)
        if resp.status_code not in (200, 404, 409):
            resp.raise_for_status()

    def _bind(self, name: str) -> None:
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": name},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.node},
        }
        self.api.post(self._pod_path(name, "/binding"), json=binding).raise_for_status()

    def _volumes(self, pod: dict[str, Any]) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
        """Host directories for the Secret/ConfigMap volumes, and tmpfs options for the emptyDirs."""
        binds: dict[str, str] = {}
        scratch: dict[str, dict[str, Any]] = {}
        for vol in pod["spec"].get("volumes") or []:
            if "emptyDir" in vol:
                scratch[vol["name"]] = vol["emptyDir"]
                continue
            if "secret" in vol:
                src, plural, ref, key = vol["secret"], "secrets", vol["secret"]["secretName"], "data"
            elif "configMap" in vol:
                src, plural, ref, key = vol["configMap"], "configmaps", vol["configMap"]["name"], "binaryData"
            else:
                raise RuntimeError(f"volume {vol['name']}: this kubelet knows emptyDir, secret and configMap")
            obj = self._wait_object(plural, ref)  # like the kubelet: ContainerCreating until it exists
            data = {k: base64.b64decode(v) for k, v in (obj.get(key) or {}).items()}
            data.update({k: v.encode() for k, v in (obj.get("data") or {}).items() if plural == "configmaps"})
            items = src.get("items") or [{"key": k, "path": k} for k in data]
            host = self.workdir / pod["metadata"]["uid"] / vol["name"]
            host.mkdir(parents=True)
            for item in items:
                target = host / item["path"]
                target.write_bytes(data[item["key"]])
                target.chmod(int(item.get("mode", src.get("defaultMode", 0o644))))
            host.chmod(0o755)
            binds[vol["name"]] = str(host)
        return binds, scratch

    def _wait_object(self, plural: str, name: str) -> dict[str, Any]:
        until = time.monotonic() + 60
        while True:
            resp = self.api.get(f"/api/v1/namespaces/{self.namespace}/{plural}/{name}")
            if resp.status_code == 200:
                return dict(resp.json())
            if time.monotonic() > until or self._stopping.is_set():
                raise RuntimeError(f"{plural}/{name} never appeared ({resp.status_code})")
            time.sleep(POLL_SECONDS)

    def _host_config(self, pod: dict[str, Any], container: dict[str, Any], user: str | None) -> dict[str, Any]:
        binds, scratch = self._volumes(pod)
        # Docker copies the image's directory (mode 0755, root) over a tmpfs mounted on it, so an emptyDir's
        # 0777 is had by making the pod's user own it: the same for the script (it may write there)
        owner = ",uid={},gid={}".format(*user.split(":")) if user else ""
        tmpfs: dict[str, str] = {}
        volume_binds: dict[str, dict[str, str]] = {}
        for mount in container.get("volumeMounts") or []:
            if mount["name"] in scratch:
                size = scratch[mount["name"]].get("sizeLimit")
                opts = "rw,exec,nosuid,nodev,mode=0777" + owner + (f",size={quantity_bytes(size)}" if size else "")
                tmpfs[mount["mountPath"]] = opts
            else:
                mode = "ro" if mount.get("readOnly") else "rw"
                volume_binds[binds[mount["name"]]] = {"bind": mount["mountPath"], "mode": mode}
        sec = container.get("securityContext") or {}
        limits = (container.get("resources") or {}).get("limits") or {}
        host: dict[str, Any] = {
            "binds": volume_binds,
            "tmpfs": tmpfs,
            "read_only": bool(sec.get("readOnlyRootFilesystem")),
            "privileged": bool(sec.get("privileged")),
            "cap_drop": list((sec.get("capabilities") or {}).get("drop") or []),
            "security_opt": [] if sec.get("allowPrivilegeEscalation", True) else ["no-new-privileges:true"],
            "network_mode": "none",
        }
        if "memory" in limits:
            host["mem_limit"] = host["memswap_limit"] = quantity_bytes(limits["memory"])
        if "cpu" in limits:
            host["nano_cpus"] = int(quantity_cpus(limits["cpu"]) * 1e9)
        return host

    def _gone(self, name: str) -> bool:
        return self.api.get(self._pod_path(name)).status_code == 404

    def _run_pod(self, pod: dict[str, Any]) -> None:
        name = pod["metadata"]["name"]
        spec = pod["spec"]
        container = spec["containers"][0]
        sec = {**(spec.get("securityContext") or {}), **(container.get("securityContext") or {})}
        user = f"{sec['runAsUser']}:{sec.get('runAsGroup', sec['runAsUser'])}" if "runAsUser" in sec else None
        try:
            self._bind(name)
            host_config = self._host_config(pod, container, user)
        except Exception:
            if self._gone(name):  # deleted before it started (its Job went): nothing to run, nothing to report
                return
            raise
        log = self.logs[name] = PodLog(container["name"])
        api = self.docker.api
        created = api.create_container(
            container["image"],
            command=container.get("args"),
            entrypoint=container.get("command"),
            environment={e["name"]: e.get("value", "") for e in container.get("env") or []},
            working_dir=container.get("workingDir"),
            user=user,
            hostname=spec.get("hostname"),
            labels={LABEL: self.node, "io.kubernetes.pod.name": name},
            host_config=api.create_host_config(**host_config),
        )
        cid = created["Id"]
        self.containers[name] = cid
        if pod["metadata"]["uid"] + "/deleted" in self._seen:  # deleted while its container was created
            api.remove_container(cid, force=True)
            self.containers.pop(name, None)
            log.close()
            return
        try:
            api.start(cid)
            started = api.inspect_container(cid)["State"]["StartedAt"][:19] + "Z"
            self._status(pod, "Running", {"running": {"startedAt": started}}, ready=True)
            for chunk in api.logs(cid, stdout=True, stderr=True, stream=True, follow=True):
                log.append(chunk)  # both streams, in the order Docker got them: what a kubelet serves
            code = int(api.wait(cid)["StatusCode"])
            state = api.inspect_container(cid)["State"]
        finally:
            log.close()
            api.remove_container(cid, force=True)
            self.containers.pop(name, None)
        reason = "OOMKilled" if state.get("OOMKilled") else ("Completed" if code == 0 else "Error")
        terminated = {
            "exitCode": code,
            "reason": reason,
            "startedAt": started,
            "finishedAt": _now(),
            "containerID": f"docker://{cid}",
        }
        self._status(pod, "Succeeded" if code == 0 else "Failed", {"terminated": terminated}, ready=False)

    def _status(self, pod: dict[str, Any], phase: str, state: dict[str, Any], *, ready: bool) -> None:
        container = pod["spec"]["containers"][0]
        flag = "True" if ready else "False"
        status = {
            "phase": phase,
            "hostIP": "127.0.0.1",
            "startTime": pod["metadata"]["creationTimestamp"],
            "conditions": [
                {"type": t, "status": flag, "lastTransitionTime": _now()} for t in ("Ready", "ContainersReady")
            ]
            + [{"type": t, "status": "True", "lastTransitionTime": _now()} for t in ("Initialized", "PodScheduled")],
            "containerStatuses": [
                {
                    "name": container["name"],
                    "image": container["image"],
                    "imageID": f"docker://{container['image']}",
                    "ready": ready,
                    "started": ready,
                    "restartCount": 0,
                    "state": state,
                }
            ],
        }
        resp = self.api.patch(
            self._pod_path(pod["metadata"]["name"], "/status"), json={"status": status}, headers=MERGE
        )
        if resp.status_code != 404:  # a pod deleted meanwhile has no status to report
            resp.raise_for_status()
