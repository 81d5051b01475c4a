"""An in-memory backend with the same contract, for unit tests of the services layer (no engine needed).

A launched spec's behaviour is scripted by a ``fake.json`` among its files::

    {"stdout": "...", "stderr": "...", "exitCode": 0, "sleep": 0.0, "oom": false, "stopSeconds": 0.0,
     "artifacts": {"path": "text"}, "launchError": "unavailable" | "failed" | "image",
     "response": {"status": "201", "contentType": "text/csv", "body": "text", "error": null}}

The execution yields Started at once, then after ``sleep`` seconds the rest of those frames (through the
real wire encoding and ``FrameParser``, so the services layer sees exactly what a runner would send) and
ends with an Exited frame; ``oom`` makes it exit 137 with oomKilled. Without ``fake.json``: exit 0 and
stdout "ok\\n". ``stop()`` ends the frames (after ``stopSeconds``: a container slow to die) without an
Exited frame and ``finish()`` reports 137, as a kill would.
Everything launched stays inspectable in ``launched`` for assertions.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from controlplane.backends.base import (
    Backend,
    Execution,
    Outcome,
    RunHandle,
    RunSpec,
    SandboxInfo,
    SandboxState,
    Usage,
)
from controlplane.backends.protocol import Exited, Frame, FrameParser, encode_frame
from controlplane.core.errors import BackendUnavailable, LaunchFailed, NotFound, SandboxImageMissing

LAUNCH_ERRORS: dict[str, type[Exception]] = {
    "unavailable": BackendUnavailable,
    "failed": LaunchFailed,
    "image": SandboxImageMissing,
}


@dataclass
class _Sandbox:
    spec: RunSpec
    handle: RunHandle
    script: dict[str, Any]
    stopped: asyncio.Event = field(default_factory=asyncio.Event)
    state: SandboxState = SandboxState.RUNNING
    exit_code: int | None = None
    oom_killed: bool = False
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    finished_at: datetime | None = None


def _wire(script: dict[str, Any]) -> bytes:
    out = bytearray(encode_frame("s", b'{"pid": 2}'))
    for tag, key in (("o", "stdout"), ("e", "stderr")):
        data = str(script.get(key, "ok\n" if key == "stdout" else "")).encode()
        for i in range(0, len(data), 8192):
            out += encode_frame(tag, data[i : i + 8192])
    answer = script.get("response")
    if isinstance(answer, dict):  # the script's own HTTP answer: runner.py's r frame, then its body
        body = str(answer.get("body", "")).encode()
        head = {k: answer.get(k) for k in ("status", "contentType", "error")}
        out += encode_frame("r", json.dumps({**head, "size": len(body)}).encode())
        for i in range(0, len(body), 8192):
            out += encode_frame("d", body[i : i + 8192])
    for path, text in (script.get("artifacts") or {}).items():
        data = str(text).encode()
        out += encode_frame("f", json.dumps({"path": path, "size": len(data)}).encode())
        out += encode_frame("d", data)
    oom = bool(script.get("oom", False))
    exit_code = int(script.get("exitCode", 137 if oom else 0))
    doc = {"exitCode": exit_code, "signal": 9 if oom else None, "oomKilled": oom, "cpuSeconds": 0.01}
    out += encode_frame("x", json.dumps(doc).encode())
    return bytes(out)


class FakeExecution(Execution):
    def __init__(self, backend: FakeBackend, box: _Sandbox) -> None:
        self.handle = box.handle
        self._backend = backend
        self._box = box

    async def frames(self) -> AsyncIterator[Frame]:
        box = self._box
        frames = list(FrameParser().feed(_wire(box.script)))
        yield frames[0]  # Started: the runner is up, then the script takes its time (like a real runner)
        try:
            await asyncio.wait_for(box.stopped.wait(), timeout=float(box.script.get("sleep", 0)))
            return  # stopped while "running": killed, no Exited frame
        except TimeoutError:
            pass
        for frame in frames[1:]:
            if box.stopped.is_set():
                return
            if isinstance(frame, Exited):
                box.exit_code, box.oom_killed = frame.exit_code, frame.oom_killed
                box.state, box.finished_at = SandboxState.EXITED, datetime.now(UTC)
            yield frame
            await asyncio.sleep(0)

    async def finish(self) -> Outcome:
        box = self._box
        self._backend.sandboxes.pop(box.handle.run_id, None)
        if box.stopped.is_set() or box.exit_code is None:
            return Outcome(137, False, Usage(), datetime.now(UTC), detail="stopped by the control plane")
        usage = Usage(cpu_seconds=0.01, memory_peak_bytes=1 << 20)
        return Outcome(box.exit_code, box.oom_killed, usage, box.finished_at)


class FakeBackend(Backend):
    name = "fake"

    def __init__(self, settings: object = None, **_: Any) -> None:
        self.available = True  # set False to make ping/launch raise BackendUnavailable
        self.sandboxes: dict[str, _Sandbox] = {}
        self.launched: list[RunSpec] = []
        self.stopped: list[str] = []
        self.archive_sweeps: list[tuple[str, int]] = []

    async def ping(self) -> None:
        if not self.available:
            raise BackendUnavailable("the fake engine is switched off")

    async def launch(self, spec: RunSpec) -> Execution:
        await self.ping()
        box = self.sandboxes.get(spec.run_id)
        if box is None:  # idempotent per run id, like a 409 on a real engine
            script = json.loads(spec.files["fake.json"]) if "fake.json" in spec.files else {}
            if script.get("launchError"):
                raise LAUNCH_ERRORS[str(script["launchError"])](f"scripted failure of {spec.run_id}")
            handle = RunHandle(spec.run_id, spec.tenant_id, f"fake-{spec.run_id}")
            box = self.sandboxes[spec.run_id] = _Sandbox(spec, handle, script)
            self.launched.append(spec)
        return FakeExecution(self, box)

    async def attach(self, handle: RunHandle) -> Execution:
        box = self.sandboxes.get(handle.run_id)
        if box is None:
            raise NotFound(f"sandbox {handle.ref} does not exist")
        return FakeExecution(self, box)

    async def stop(self, handle: RunHandle) -> None:
        self.stopped.append(handle.run_id)
        box = self.sandboxes.get(handle.run_id)
        if box is not None and box.script.get("stopSeconds"):
            await asyncio.sleep(float(box.script["stopSeconds"]))
        box = self.sandboxes.pop(handle.run_id, None)
        if box is not None:
            box.stopped.set()

    async def clean_archive(self, tenant_id: str, *, older_than_days: int) -> int:
        await self.ping()
        self.archive_sweeps.append((tenant_id, older_than_days))
        return 0

    async def list_sandboxes(self) -> list[SandboxInfo]:
        return [
            SandboxInfo(b.handle, b.state, b.exit_code, b.oom_killed, b.started_at, b.finished_at)
            for b in self.sandboxes.values()
        ]
