"""Factories shared by the backend tests: run specs, a Docker backend with its own name prefix, and a
helper that drives one run to its end and sorts the frames."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from controlplane.backends.base import Backend, Execution, Outcome, Resources, RunSpec
from controlplane.backends.protocol import ArtifactData, ArtifactHead, Exited, Frame, Output, Skipped, Started
from controlplane.core.settings import Settings
from controlplane.core.states import NetworkMode

IMAGE = os.environ.get("CP_SANDBOX_IMAGE", "controlplane-sandbox-python:1")

SpecFactory = Callable[..., RunSpec]


@pytest.fixture
def make_spec() -> SpecFactory:
    def make(
        code: str | bytes = "print('ok')",
        *,
        runtime: str = "python",
        entrypoint: str | None = None,
        files: Mapping[str, bytes] | None = None,
        args: tuple[str, ...] | list[str] = (),
        env: Mapping[str, str] | None = None,
        input: bytes = b"",
        resources: Resources | None = None,
        network: NetworkMode = NetworkMode.NONE,
        run_id: str | None = None,
        **kw: Any,
    ) -> RunSpec:
        entry = entrypoint or ("main.py" if runtime == "python" else "main.sh")
        body = code.encode() if isinstance(code, str) else code
        return RunSpec(
            run_id=run_id or uuid.uuid4().hex[:12],
            tenant_id="tenant-1",
            automation_id="automation-1",
            image=IMAGE,
            runtime=runtime,
            entrypoint=entry,
            files=dict(files) if files is not None else {entry: body},
            args=tuple(args),
            env=dict(env or {}),
            input=input,
            resources=resources or Resources(cpus=1.0, memory_mb=256, pids=64, tmp_mb=16, work_mb=32),
            network=network,
            deadline_seconds=60,
            **kw,
        )

    return make


@dataclass
class RunResult:
    stdout: bytes = b""
    stderr: bytes = b""
    started: Started | None = None
    exited: Exited | None = None
    artifacts: dict[str, bytes] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    frames: int = 0
    outcome: Outcome | None = None


class Collector:
    """Sorts frames into a RunResult as they arrive."""

    def __init__(self) -> None:
        self.result = RunResult()
        self._current: str | None = None

    def add(self, frame: Frame) -> None:
        r = self.result
        r.frames += 1
        if isinstance(frame, Output):
            if frame.stream == "stdout":
                r.stdout += frame.data
            else:
                r.stderr += frame.data
        elif isinstance(frame, Started):
            r.started = frame
        elif isinstance(frame, ArtifactHead):
            self._current = frame.path
            r.artifacts[frame.path] = b""
        elif isinstance(frame, ArtifactData) and self._current is not None:
            r.artifacts[self._current] += frame.data
        elif isinstance(frame, Skipped):
            r.skipped.extend(frame.entries)
        elif isinstance(frame, Exited):
            r.exited = frame


async def drive(backend: Backend, spec: RunSpec, *, timeout: float = 60) -> RunResult:
    """launch -> frames -> finish, the way the services layer does it."""
    execution = await backend.launch(spec)
    return await follow(execution, timeout=timeout)


async def follow(execution: Execution, *, timeout: float = 60) -> RunResult:
    collector = Collector()

    async def consume() -> None:
        async for frame in execution.frames():
            collector.add(frame)

    try:
        await asyncio.wait_for(consume(), timeout)
    finally:
        collector.result.outcome = await execution.finish()
    return collector.result


@pytest.fixture
def run_prefix() -> str:
    return f"cp-test-{uuid.uuid4().hex[:6]}-"


@pytest.fixture
def backend_settings(run_prefix: str) -> Settings:
    return Settings(container_prefix=run_prefix, sandbox_image=IMAGE)


@pytest.fixture
def docker_api(run_prefix: str) -> Iterator[Any]:
    """A plain docker-py client for assertions. Every path out of a run must remove its container, so a
    container left behind with the test's prefix fails the test (after it is removed)."""
    import docker

    client = docker.DockerClient(version="auto")
    yield client.api
    leftovers = client.api.containers(all=True, filters={"name": run_prefix})
    for c in leftovers:
        client.api.remove_container(c["Id"], force=True)
    client.close()
    assert not leftovers, f"containers left behind: {[c['Names'] for c in leftovers]}"


@pytest.fixture
async def docker_backend(backend_settings: Settings, docker_api: Any) -> AsyncIterator[Any]:
    from controlplane.backends.docker.backend import DockerBackend

    # the engine contract alone: networks and tenant volumes have their own suites, and the e2e suite
    # runs the default wiring (DockerBackend(settings) plugs both in)
    backend = DockerBackend(backend_settings, networks=None, mounts=None)
    yield backend
    await backend.close()
