"""Helpers of the backend tests (tests/backends, tests/kube): the sandbox image, run specs, and driving one
run to its end with its frames sorted into a RunResult."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from controlplane.backends.base import Backend, Execution, Outcome, RunSpec
from controlplane.backends.protocol import ArtifactData, ArtifactHead, Exited, Frame, Output, Skipped, Started

IMAGE = os.environ.get("CP_SANDBOX_IMAGE", "controlplane-sandbox-python:1")

SpecFactory = Callable[..., RunSpec]


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
