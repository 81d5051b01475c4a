"""One supervisor per run: launch (or re-attach to) its sandbox, stream its frames into logs and artifacts,
enforce the deadline (the control plane's own clock: kill, remove, record), then record the outcome.

Every path out of a supervisor - success, script failure, engine error, deadline, cancellation - goes
through ``ending.finalize`` and, when the sandbox may still exist, through ``backend.stop``: no run is left
"running" and no container is left behind.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from controlplane.backends import protocol as p
from controlplane.backends.base import Execution, RunHandle, RunSpec
from controlplane.core import metrics
from controlplane.core.errors import BackendError, ControlPlaneError
from controlplane.core.states import RunStatus
from controlplane.db.session import transaction
from controlplane.db.tables import utcnow
from controlplane.services.execution import ending
from controlplane.services.execution.capture import ArtifactCollector
from controlplane.services.execution.outcome import Supervision
from controlplane.services.execution.output import RunOutput
from controlplane.services.execution.spec import PreparedRun, prepare_run
from controlplane.store import runs as run_store

if TYPE_CHECKING:
    from controlplane.services.execution.engine import RunEngine

OVERDUE_DRAIN_SECONDS = 1.0  # the engine replays what a sandbox printed in far less

log = logging.getLogger("controlplane.engine")


async def supervise(engine: RunEngine, run_id: str, attach: RunHandle | None, claimed: bool) -> None:
    prepared: PreparedRun | None
    try:
        prepared = await prepare_run(
            engine.settings,
            engine.sessions,
            engine.backend,
            run_id,
            attach=attach is not None,
            claimed=claimed,
            replica_id=engine.replica_id,
        )
    except ControlPlaneError as exc:
        await ending.finalize(engine, run_id, Supervision(failure=exc), output=None, artifacts=None, timeout=0)
        return
    if prepared is None:
        return  # not ours to run (already claimed, stopped or final)
    kind = "sync" if prepared.synchronous else "background"
    metrics.RUNS_IN_FLIGHT.labels(kind).inc()
    try:
        await _execute(engine, prepared, attach)
    finally:
        metrics.RUNS_IN_FLIGHT.labels(kind).dec()


async def _execute(engine: RunEngine, prep: PreparedRun, attach: RunHandle | None) -> None:
    spec: RunSpec = prep.spec
    sup = Supervision()
    release: Execution | None = None  # a collected sandbox, removed once its outcome is recorded
    output = RunOutput(engine.sessions, spec.run_id, engine.settings.log_max_bytes, prep.secrets)
    artifacts = ArtifactCollector(
        spec.outputs_max_files,
        spec.outputs_max_bytes,
        response_max_bytes=engine.settings.script_response_max_bytes,
        mask=output.mask_text,
    )
    if attach is not None:
        try:
            await output.resume()
        except Exception:  # storing a line twice beats losing the run
            log.warning("run %s: reading its stored logs failed", spec.run_id, exc_info=True)
    output.start()
    # A run resumed past its deadline (it passed while no control plane watched) still has its frames read
    # for a moment, so what the sandbox holds (output, an exit) is kept; then it is over its limit.
    overdue = attach is not None and prep.deadline_at is not None and prep.deadline_at <= utcnow()
    try:
        async with asyncio.timeout_at(_deadline(prep, attach, overdue)):
            execution = await _follow(engine, spec, sup, _Sink(output, artifacts), attach)
            sup.outcome = await execution.collect()
            release = execution
        if overdue and prep.deadline_at is not None:
            sup.timed_out = _ended_after(sup, prep.deadline_at)
    except TimeoutError:
        sup.timed_out = True
    except BackendError as exc:
        metrics.BACKEND_ERRORS.labels("run").inc()
        sup.failure = exc
    except asyncio.CancelledError:
        if sup.outcome is None:  # an outcome already collected is what happened; record that
            sup.stop_reason = engine.stop_reasons.get(spec.run_id, "shutdown")
        await to_the_end(_wrap_up(engine, spec, sup, output, artifacts, prep))
        if release is not None:
            await to_the_end(_release(engine, release))
        raise
    except Exception as exc:  # never leave a run or a sandbox behind on a bug
        log.exception("run %s: supervisor failed", spec.run_id)
        sup.failure = ControlPlaneError(f"{type(exc).__name__}: {exc}")
    try:
        await to_the_end(_wrap_up(engine, spec, sup, output, artifacts, prep))
    finally:
        if release is not None:
            await to_the_end(_release(engine, release))


def _deadline(prep: PreparedRun, attach: RunHandle | None, overdue: bool) -> float:
    """When the run must be over, on the loop's clock: it counts from the sandbox's launch (queue time
    excluded); a resumed run keeps its own, and one already past it gets OVERDUE_DRAIN_SECONDS to drain."""
    loop = asyncio.get_running_loop()
    if overdue:
        return loop.time() + OVERDUE_DRAIN_SECONDS
    if attach is not None and prep.deadline_at is not None:
        return loop.time() + max(0.0, (prep.deadline_at - utcnow()).total_seconds())
    return loop.time() + prep.spec.deadline_seconds


def _ended_after(sup: Supervision, deadline_at: datetime) -> bool:
    """Whether a resumed sandbox ended after its deadline (or cannot say when it ended)."""
    finished = sup.outcome.finished_at if sup.outcome is not None else None
    return finished is None or finished > deadline_at


@dataclass
class _Sink:
    """Where a sandbox's frames go: output to the run's logs, files to its artifacts."""

    output: RunOutput
    artifacts: ArtifactCollector

    def take(self, frame: p.Frame) -> None:
        if isinstance(frame, p.Output):
            self.output.add(frame.stream, frame.data)
        elif isinstance(frame, p.ArtifactHead):
            self.artifacts.begin(frame.path, frame.size)
        elif isinstance(frame, p.ArtifactData):
            self.artifacts.data(frame.data)
        elif isinstance(frame, p.Skipped):
            self.artifacts.skipped.extend(frame.entries)
        elif isinstance(frame, p.ResponseHead):  # the script's own HTTP answer (scripting dialect)
            self.artifacts.begin_response(
                status=frame.status, content_type=frame.content_type, size=frame.size, error=frame.error
            )


async def _follow(
    engine: RunEngine, spec: RunSpec, sup: Supervision, sink: _Sink, attach: RunHandle | None
) -> Execution:
    """Launch the sandbox (or attach to the one a crashed replica left) and take its frames until it exits."""
    t0 = asyncio.get_running_loop().time()
    execution = await (engine.backend.launch(spec) if attach is None else engine.backend.attach(attach))
    sup.handle = execution.handle
    if attach is None:
        await _mark(engine, spec.run_id, sandbox_ref=execution.handle.ref, backend=engine.backend.name)
    async for frame in execution.frames():
        if isinstance(frame, p.Exited):
            sup.exited = frame
            break
        if isinstance(frame, p.Started):
            if sup.started_at is None:
                sup.started_at = utcnow()
                if attach is None:
                    metrics.SANDBOX_START.labels(engine.backend.name).observe(asyncio.get_running_loop().time() - t0)
                await _running(engine, spec.run_id, sup.started_at)
            continue
        sink.take(frame)
    return execution


async def _release(engine: RunEngine, execution: Execution) -> None:
    try:
        await execution.release()
    except Exception:  # reconcile removes sandboxes of finished runs
        metrics.BACKEND_ERRORS.labels("remove").inc()
        log.warning("run %s: removing the sandbox failed", execution.handle.run_id, exc_info=True)


async def _wrap_up(
    engine: RunEngine,
    spec: RunSpec,
    sup: Supervision,
    output: RunOutput,
    artifacts: ArtifactCollector,
    prep: PreparedRun,
) -> None:
    if sup.outcome is None:
        # the sandbox may still exist (deadline, stop, engine error): kill and remove it first
        await safe_stop(engine, sup.handle or RunHandle(spec.run_id, spec.tenant_id, prep.sandbox_name))
    await ending.finalize(
        engine, spec.run_id, sup, output=output, artifacts=artifacts, timeout=int(spec.deadline_seconds)
    )


async def safe_stop(engine: RunEngine, handle: RunHandle) -> None:
    for attempt in range(3):
        try:
            await engine.backend.stop(handle)
            return
        except BackendError:
            metrics.BACKEND_ERRORS.labels("stop").inc()
            log.warning("run %s: stop failed (attempt %d)", handle.run_id, attempt + 1, exc_info=True)
            await asyncio.sleep(0.5 * (attempt + 1))
    engine.sweep_due = True


async def _mark(engine: RunEngine, run_id: str, **values: Any) -> None:
    async with transaction(engine.sessions) as s:
        await run_store.set_fields(s, run_id, **values)


async def _running(engine: RunEngine, run_id: str, started_at: datetime) -> None:
    async with transaction(engine.sessions) as s:
        run = await run_store.get_any(s, run_id)
        if run is None or RunStatus(run.status) != RunStatus.STARTING:
            return
        if await run_store.move(s, run_id, RunStatus.STARTING, RunStatus.RUNNING, start_time=started_at):
            await run_store.mirror_last_run(s, run, RunStatus.RUNNING)


async def to_the_end(work: Coroutine[Any, Any, None]) -> None:
    """Run ``work`` to completion even if we are cancelled meanwhile (recording a run's end and removing
    its sandbox must not be cut short), then let the cancellation through."""
    task = asyncio.ensure_future(work)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait({task})
        raise
