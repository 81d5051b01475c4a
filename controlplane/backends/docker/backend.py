"""The Docker engine behind ``base.Backend``: one fresh, hardened container per run on this machine.

Launch: create (idempotent by name: a 409 finds the container an earlier attempt made), open the attach
socket BEFORE start, write the runner's bundle on it and half-close our side (the runner sees EOF on its
stdin, StdinOnce), start. The same socket then carries the runner's frames (stdout) and its own
diagnostics (stderr), read with backpressure. A container that is already running or exited (a launch
retried late, or ``attach`` after a restart) is followed through its json-file logs instead.

The pieces: container policy in ``docker_config``, engine calls (thread pool, retries, error mapping) in
``docker_client``, bounded reading in ``docker_stream``, frames and outcome in ``docker_execution``.
Networks (api/egress) and tenant volumes plug in through the ``networks``/``mounts`` factories.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import weakref
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Literal

import docker
from docker.errors import APIError, ImageNotFound
from docker.errors import NotFound as DockerNotFound

from controlplane.backends.base import (
    LABEL_MANAGED,
    LABEL_RUN,
    LABEL_TENANT,
    Backend,
    Execution,
    RunHandle,
    RunSpec,
    SandboxInfo,
    SandboxState,
)
from controlplane.backends.docker.client import DockerEngine, engine_error
from controlplane.backends.docker.config import MountProvider, NetworkProvider, container_config
from controlplane.backends.docker.execution import DockerExecution, parse_time
from controlplane.backends.docker.stream import ChunkPump, in_thread
from controlplane.core.errors import BackendError, BackendUnavailable, LaunchFailed, NotFound, SandboxImageMissing
from controlplane.core.settings import Settings
from controlplane.core.states import NetworkMode

log = logging.getLogger(__name__)

NetworkFactory = Callable[[docker.DockerClient], NetworkProvider]
MountFactory = Callable[[docker.DockerClient], MountProvider]

LINGER_SECONDS = 5.0  # the runner waits this long after its Exited frame so finish() can read stats
READ_CHUNK = 64 * 1024
ATTACH_PARAMS = {"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
STATES = {
    "created": SandboxState.PENDING,
    "running": SandboxState.RUNNING,
    "paused": SandboxState.RUNNING,
    "restarting": SandboxState.RUNNING,
    "exited": SandboxState.EXITED,
    "dead": SandboxState.EXITED,
    "removing": SandboxState.EXITED,
}


def _image_missing(image: str) -> SandboxImageMissing:
    return SandboxImageMissing(f"the sandbox image {image} is not on the Docker engine; build it with `make image`")


def _default_networks(settings: Settings) -> NetworkFactory:
    from controlplane.backends.docker.network import NetworkManager

    return lambda client: NetworkManager(client, settings)


def _default_mounts(settings: Settings) -> MountFactory:
    from controlplane.backends.docker.volumes import TenantVolumes

    return lambda client: TenantVolumes(client, settings)


class DockerBackend(Backend):
    """``networks``/``mounts`` are factories given the docker client, called once in the engine's pool:
    ``DockerBackend(settings, networks=lambda c: NetworkManager(c, settings),
    mounts=lambda c: TenantVolumes(c, settings))``. Without a network provider only network=none runs;
    without a mount provider runs get no mounts at all."""

    name = "docker"

    def __init__(
        self,
        settings: Settings,
        *,
        networks: NetworkFactory | Literal["default"] | None = "default",
        mounts: MountFactory | Literal["default"] | None = "default",
        max_workers: int = 16,
    ) -> None:
        self.settings = settings
        self.engine = DockerEngine(settings, max_workers=max_workers)
        if networks == "default":
            networks = _default_networks(settings)
        if mounts == "default":
            mounts = _default_mounts(settings) if settings.tenant_volumes else None
        self._network_factory = networks
        self._mount_factory = mounts
        self.networks: NetworkProvider | None = None
        self.mounts: MountProvider | None = None
        self._live: weakref.WeakValueDictionary[str, DockerExecution] = weakref.WeakValueDictionary()

    async def _plug_in(self) -> None:
        """Build the network/mount providers once (their constructors want the client: blocking)."""
        try:
            if self._network_factory is not None and self.networks is None:
                factory = self._network_factory
                self.networks = await self.engine.run(lambda: factory(self.engine.client()))
            if self._mount_factory is not None and self.mounts is None:
                make = self._mount_factory
                self.mounts = await self.engine.run(lambda: make(self.engine.client()))
        except BackendError:
            raise
        except Exception as exc:
            raise engine_error(exc, "setting up networks and volumes") from exc

    # --- set-up ------------------------------------------------------------------------------------

    async def ping(self) -> None:
        try:
            await self.engine.call(lambda api: api.ping())
        except Exception as exc:
            raise BackendUnavailable(f"the Docker engine does not answer: {exc}") from exc

    async def prepare(self) -> None:
        await self.ping()
        image = self.settings.sandbox_image
        try:
            await self.engine.call(lambda api: api.inspect_image(image))  # type: ignore[no-untyped-call]
        except DockerNotFound as exc:
            raise _image_missing(image) from exc
        except Exception as exc:
            raise engine_error(exc, f"looking for the image {image}") from exc
        await self._plug_in()
        networks = self.networks
        if networks is not None:
            await self.engine.run(networks.ensure)  # records problems per mode, never raises

    def extra_listen_addresses(self) -> list[tuple[str, int]]:
        return self.networks.listen_addresses() if self.networks is not None else []

    def api_host_for_runs(self, network: NetworkMode) -> str | None:
        return self.networks.api_host(network) if self.networks is not None else None

    # --- launch ------------------------------------------------------------------------------------

    async def launch(self, spec: RunSpec) -> Execution:
        spec = replace(spec, installation=self.installation)
        await self._plug_in()
        if spec.network == NetworkMode.NONE:
            network = "none"
        elif self.networks is None:
            raise LaunchFailed(f"network mode {spec.network.value} is not available")
        else:
            network = self.networks.network_for(spec.network)
        mounts = []
        if self.mounts is not None:
            provider = self.mounts
            try:
                mounts = await self.engine.run(lambda: provider.mounts_for(spec.tenant_id))
            except Exception as exc:
                raise engine_error(exc, f"preparing the volumes of tenant {spec.tenant_id}", LaunchFailed) from exc
        cfg = container_config(spec, self.settings, network_mode=network, mounts=mounts)
        handle = RunHandle(run_id=spec.run_id, tenant_id=spec.tenant_id, ref=cfg.name)
        try:
            created = await self.engine.call(
                lambda api: api.create_container(
                    name=cfg.name, host_config=api.create_host_config(**cfg.host), **cfg.create
                )
            )
            container_id, status = str(created["Id"]), "created"
        except ImageNotFound as exc:
            raise _image_missing(cfg.create["image"]) from exc
        except APIError as exc:
            if exc.status_code != 409:
                raise engine_error(exc, f"creating {cfg.name}", LaunchFailed) from exc
            container_id, status = await self._existing(cfg.name, spec.run_id, exc)
        except Exception as exc:
            raise engine_error(exc, f"creating {cfg.name}", LaunchFailed) from exc
        if status != "created":  # an earlier attempt already started it: follow it, never start twice
            return await self._follow(handle, container_id)
        bundle = spec.bundle(linger_seconds=LINGER_SECONDS)
        return await self._attach_and_start(handle, container_id, bundle)

    async def _existing(self, name: str, run_id: str, conflict: APIError) -> tuple[str, str]:
        """A create answered 409: the name is taken, normally by our own earlier attempt."""
        info = await self.engine.inspect(name)
        if info is None:
            raise LaunchFailed(f"{name} was reported to exist but is gone") from conflict
        labels = (info.get("Config") or {}).get("Labels") or {}
        if labels.get(LABEL_RUN) != run_id:
            raise LaunchFailed(f"the name {name} is taken by a container of another run") from conflict
        log.info("launch of %s found the container an earlier attempt created", name)
        return str(info["Id"]), str((info.get("State") or {}).get("Status", ""))

    async def _attach_and_start(self, handle: RunHandle, container_id: str, bundle: bytes) -> Execution:
        try:
            attached = await self.engine.call(lambda api: api.attach_socket(container_id, params=dict(ATTACH_PARAMS)))
        except Exception as exc:
            await self.engine.remove_quietly(handle.ref)
            raise engine_error(exc, f"attaching to {handle.ref}", LaunchFailed) from exc
        raw = getattr(attached, "_sock", None) if isinstance(attached, socket.SocketIO) else attached
        if not isinstance(raw, socket.socket):  # ssh and named-pipe transports: not supported here
            await self.engine.remove_quietly(handle.ref)
            raise LaunchFailed(f"cannot stream runs over this Docker transport ({type(attached).__name__})")
        raw.settimeout(None)  # a quiet script is not a dead engine; deadlines are the caller's

        def release() -> None:
            response = getattr(attached, "_response", None)
            if response is not None:
                response.close()
            attached.close()
            raw.close()

        pump = ChunkPump(
            lambda: raw.recv(READ_CHUNK),
            interrupt=lambda: raw.shutdown(socket.SHUT_RDWR),
            release=release,
            name=f"cp-read-{handle.run_id}",
        )

        def write_bundle() -> None:
            # Blocks until the runner reads (the engine's stdin pipe has no buffer), so it runs while
            # start() is in flight. Our SHUT_WR becomes the runner's EOF.
            raw.sendall(bundle)
            raw.shutdown(socket.SHUT_WR)

        written = in_thread(write_bundle, name=f"cp-write-{handle.run_id}")
        try:
            await self.engine.call(lambda api: api.start(container_id))
            await asyncio.wait_for(written, timeout=self.settings.docker_timeout_seconds)
        except BaseException as exc:
            written.cancel()
            pump.close()  # also ends the writer: its socket is shut down
            await self.engine.remove_quietly(handle.ref)
            if not isinstance(exc, Exception):
                raise  # cancelled: the container is gone, nothing to translate
            raise engine_error(exc, f"starting {handle.ref}", LaunchFailed) from exc
        return self._track(DockerExecution(self.engine, handle, pump, multiplexed=True, on_finish=self._forget))

    async def _follow(self, handle: RunHandle, container_id: str) -> Execution:
        try:
            stream = await self.engine.call(
                lambda api: api.logs(container_id, stream=True, follow=True, stdout=True, stderr=False)
            )
        except DockerNotFound as exc:
            raise NotFound(f"sandbox {handle.ref} does not exist") from exc
        except Exception as exc:
            raise engine_error(exc, f"following {handle.ref}") from exc
        pump = ChunkPump(lambda: next(stream, b""), interrupt=stream.close, name=f"cp-follow-{handle.run_id}")
        return self._track(DockerExecution(self.engine, handle, pump, multiplexed=False, on_finish=self._forget))

    def _track(self, execution: DockerExecution) -> DockerExecution:
        self._live[execution.handle.run_id] = execution
        return execution

    def _forget(self, execution: DockerExecution) -> None:
        if self._live.get(execution.handle.run_id) is execution:
            del self._live[execution.handle.run_id]

    # --- after launch ------------------------------------------------------------------------------

    async def attach(self, handle: RunHandle) -> Execution:
        info = await self.engine.inspect(handle.ref)
        if info is None:
            raise NotFound(f"sandbox {handle.ref} does not exist")
        return await self._follow(handle, str(info["Id"]))

    async def stop(self, handle: RunHandle) -> None:
        execution = self._live.get(handle.run_id)
        if execution is not None:
            execution.stopped = True
        await self.engine.remove(handle.ref)

    async def clean_archive(self, tenant_id: str, *, older_than_days: int) -> int:
        await self._plug_in()
        mounts = self.mounts
        sweep = getattr(mounts, "clean_archive", None)
        if sweep is None:
            return 0
        try:
            return int(await self.engine.run(lambda: sweep(tenant_id, older_than_days=older_than_days)))
        except BackendError:
            raise
        except Exception as exc:
            raise engine_error(exc, f"cleaning the archive of tenant {tenant_id}") from exc

    async def list_sandboxes(self) -> list[SandboxInfo]:
        label = f"{LABEL_MANAGED}=true"
        try:
            found = await self.engine.call(lambda api: api.containers(all=True, filters={"label": label}))
        except Exception as exc:
            raise engine_error(exc, "listing sandboxes") from exc
        # only this control plane's (by name prefix): another one on the same engine is not ours to reconcile
        mine = "/" + self.settings.container_prefix
        found = [c for c in found if any(str(n).startswith(mine) for n in c.get("Names") or [])]
        found = [c for c in found if self.is_mine(c.get("Labels") or {})]  # not another installation's
        infos = await asyncio.gather(*(self.engine.inspect(str(c["Id"])) for c in found))
        return [_sandbox_info(info) for info in infos if info is not None]

    async def close(self) -> None:
        for execution in list(self._live.values()):
            execution.close_stream()
        await self.engine.close()


def _sandbox_info(info: dict[str, Any]) -> SandboxInfo:
    labels = (info.get("Config") or {}).get("Labels") or {}
    state = info.get("State") or {}
    status = STATES.get(str(state.get("Status", "")), SandboxState.EXITED)
    handle = RunHandle(
        run_id=str(labels.get(LABEL_RUN, "")),
        tenant_id=str(labels.get(LABEL_TENANT, "")),
        ref=str(info.get("Name", "")).lstrip("/"),
    )
    exited = status == SandboxState.EXITED
    return SandboxInfo(
        handle=handle,
        state=status,
        exit_code=int(state["ExitCode"]) if exited and state.get("ExitCode") is not None else None,
        oom_killed=bool(state.get("OOMKilled")),
        started_at=parse_time(state.get("StartedAt")),
        finished_at=parse_time(state.get("FinishedAt")),
    )
