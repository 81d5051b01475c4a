"""The run engine: takes a committed, queued run to its final status, whatever happens in between.

For each run one supervisor task: claim the row (queued -> starting, compare-and-set, committed before any
sandbox exists), launch the sandbox, stream its frames into logs and artifacts, enforce the deadline
(the control plane's own clock: kill, remove, record), then record the outcome in one transaction. Every
path out of a supervisor - success, script failure, engine error, deadline, cancellation - goes through
``_finalize`` and through ``backend.stop`` when the sandbox may still exist, so no run is left "running"
and no container is left behind.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from controlplane.backends import protocol as p
from controlplane.backends.base import Backend, Execution, Outcome, RunHandle, RunSpec, SandboxState
from controlplane.core import metrics
from controlplane.core.errors import BackendError, ControlPlaneError
from controlplane.core.settings import Settings
from controlplane.core.states import ACTIVE, TERMINAL, ErrorCode, RunStatus, transition
from controlplane.db.session import transaction
from controlplane.db.tables import Artifact, Automation, Run, RunLog, RunResponse, utcnow
from controlplane.services.events import hooks as run_hooks
from controlplane.services.execution import masking
from controlplane.services.execution.capture import ArtifactCollector, StreamCapture
from controlplane.services.execution.spec import PreparedRun, prepare_run
from controlplane.store import runs as run_store
from controlplane.store import tenants as tenant_store
from controlplane.store import usage as usage_store

log = logging.getLogger("controlplane.engine")
FLUSH_SECONDS = 0.25


def err(code: ErrorCode | str, title: str, detail: str | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"code": str(code), "title": title}
    if detail:
        entry["detail"] = detail
    return entry


class RunOutput:
    """Both streams of one run, flushed to the database every FLUSH_SECONDS while it runs.

    A flush is never cancelled half-way (that would lose the bytes it took); a failed flush keeps its
    chunks and the next one writes them first, so stored logs have no holes. The tenant's ``secrets`` are
    masked before anything is kept (services/execution/masking.py), so neither stored nor followed logs show them.
    """

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], run_id: str, cap: int, secrets: Sequence[str] = ()
    ) -> None:
        self.sessions = sessions
        self.run_id = run_id
        patterns = masking.patterns_for(secrets)
        self.maskers = {"stdout": masking.Masker(patterns), "stderr": masking.Masker(patterns)}
        self.mask_text = masking.Masker(patterns).mask_text
        self.streams = {"stdout": StreamCapture(cap), "stderr": StreamCapture(cap)}
        self.seq = {"stdout": 0, "stderr": 0}
        self._unwritten: list[tuple[str, bytes]] = []
        self._skip = {"stdout": 0, "stderr": 0}
        self._lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._flusher())

    async def resume(self) -> None:
        """A re-attached sandbox replays its output from the start: skip the bytes an earlier supervisor
        already stored and append after its chunks, so stored (and followed) logs hold each byte once."""
        async with self.sessions() as s:
            rows = (
                await s.execute(
                    select(RunLog.stream, func.max(RunLog.seq), func.coalesce(func.sum(func.length(RunLog.data)), 0))
                    .where(RunLog.run_id == self.run_id)
                    .group_by(RunLog.stream)
                )
            ).all()
        for stream, last_seq, stored in rows:
            if stream in self.seq:
                self.seq[stream] = int(last_seq) + 1
                self._skip[stream] = int(stored)

    def add(self, stream: str, data: bytes) -> None:
        self._keep(stream, self.maskers[stream].feed(data))

    def _keep(self, stream: str, data: bytes) -> None:
        skip = self._skip[stream]
        if skip:  # stored before a restart: counted as the stream's head, not stored again
            n = min(skip, len(data))
            self._skip[stream] -= n
            cap = self.streams[stream]
            cap.total += n
            cap.head_len += n
            data = data[n:]
            if not data:
                return
        self.streams[stream].add(data)
        metrics.OUTPUT_BYTES.labels(stream).inc(len(data))

    async def _flusher(self) -> None:
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=FLUSH_SECONDS)
            except TimeoutError:
                pass
            if self._stop.is_set():
                return
            try:
                await asyncio.shield(self._flush(final=False))
            except Exception:  # retried with the next flush, never kills the run
                log.warning("run %s: flushing logs failed; will retry", self.run_id, exc_info=True)

    async def _flush(self, *, final: bool) -> None:
        async with self._lock:
            for name, cap in self.streams.items():
                self._unwritten += [(name, part) for part in (cap.finish() if final else cap.take_pending()) if part]
            if not self._unwritten:
                return
            async with transaction(self.sessions) as s:
                seq = dict(self.seq)
                for stream, part in self._unwritten:
                    await run_store.append_log(s, self.run_id, stream, seq[stream], part)
                    seq[stream] += 1
            self.seq = seq
            self._unwritten = []

    async def close(self) -> None:
        for stream, masker in self.maskers.items():  # what the maskers still held back
            self._keep(stream, masker.finish())
        self._stop.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        for attempt in range(5):
            try:
                await self._flush(final=attempt == 0)
                return
            except Exception:
                log.warning("run %s: final log flush failed (attempt %d)", self.run_id, attempt + 1, exc_info=True)
                await asyncio.sleep(0.2 * (attempt + 1))
        raise RuntimeError(f"run {self.run_id}: logs could not be stored")


@dataclass
class Supervision:
    """What one supervisor learned about its run; turned into a final status by ``decide``."""

    exited: p.Exited | None = None
    outcome: Outcome | None = None
    timed_out: bool = False
    stop_reason: str | None = None
    failure: ControlPlaneError | None = None
    started_at: datetime | None = None
    handle: RunHandle | None = None
    notes: list[dict[str, Any]] = field(default_factory=list)


def decide(sup: Supervision, *, stderr_bytes: int, timeout: int) -> tuple[RunStatus, int | None, list[dict[str, Any]]]:
    """Final status, exit code and error entries of a run (design.md's mapping)."""
    notes = list(sup.notes)
    if sup.timed_out:
        return (
            RunStatus.EXCEEDED_LIMIT,
            None,
            [
                err(ErrorCode.RUN_TIMEOUT, "The run passed its deadline", f"stopped after {timeout} s"),
                *notes,
            ],
        )
    if sup.stop_reason is not None:
        code = ErrorCode.STOPPED_BY_USER if sup.stop_reason == "user" else "SERVER_SHUTDOWN"
        title = "The run was stopped" if sup.stop_reason == "user" else "The control plane shut down"
        return RunStatus.STOPPED, None, [err(code, title), *notes]
    if sup.failure is not None:
        return RunStatus.FAILED, None, [err(sup.failure.code, sup.failure.title, sup.failure.detail), *notes]
    out = sup.outcome
    if out is None or out.exit_code is None:
        detail = out.detail if out is not None else None
        return RunStatus.FAILED, None, [err(ErrorCode.RUN_LOST, "The sandbox ended without a result", detail), *notes]
    if out.oom_killed:
        return (
            RunStatus.EXCEEDED_LIMIT,
            137,
            [
                err(ErrorCode.OUT_OF_MEMORY, "The run ran out of memory", "killed by the kernel's OOM killer"),
                *notes,
            ],
        )
    exit_code = out.exit_code
    if exit_code == 0:
        return (RunStatus.FINISHED_WITH_WARNINGS if stderr_bytes > 0 else RunStatus.FINISHED), 0, notes
    if sup.exited is not None and sup.exited.signal:
        return (
            RunStatus.FAILED,
            exit_code,
            [
                err(ErrorCode.KILLED_BY_SIGNAL, "The script was killed by a signal", f"signal {sup.exited.signal}"),
                *notes,
            ],
        )
    return (
        RunStatus.FAILED,
        exit_code,
        [err(ErrorCode.NON_ZERO_EXIT, "The script failed", f"exit code {exit_code}"), *notes],
    )


class RunEngine:
    def __init__(
        self,
        *,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        backend: Backend,
        replica_id: str = "local",
        on_finished: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.backend = backend
        self.replica_id = replica_id
        self.on_finished = on_finished
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._events: dict[str, asyncio.Event] = {}
        self._stop_reasons: dict[str, str] = {}
        self._closing = False
        self.sweep_due = False  # a sandbox could not be removed (engine down?): sweep again soon, not in a minute

    # --- public -------------------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def supervises(self, run_id: str) -> bool:
        return run_id in self._tasks

    def dispatch(self, run_id: str, *, attach: RunHandle | None = None, claimed: bool = False) -> None:
        """Start supervising a committed run: a queued one (claimed here), one the dispatcher already claimed
        for this replica (``claimed``), or one whose sandbox outlived its supervisor (``attach``)."""
        if self._closing or run_id in self._tasks:
            return
        self._events.setdefault(run_id, asyncio.Event())
        task = asyncio.create_task(self._supervise(run_id, attach, claimed), name=f"run-{run_id}")
        self._tasks[run_id] = task
        task.add_done_callback(lambda t: self._task_done(run_id, t))

    async def wait(self, run_id: str, timeout: float) -> bool:
        """Wait until the run is final (in this process or any other). False on timeout."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            left = end - loop.time()
            if left <= 0:
                return False
            event = self._events.get(run_id)
            if event is not None:
                try:
                    await asyncio.wait_for(event.wait(), timeout=min(left, 1.0))
                    return True
                except TimeoutError:
                    pass
            else:
                await asyncio.sleep(min(left, 0.2))
            async with self.sessions() as s:
                run = await run_store.get_any(s, run_id)
                if run is None or RunStatus(run.status) in TERMINAL:
                    return True

    def request_stop(self, run_id: str, reason: str = "user") -> bool:
        """Cancel the local supervisor of a run (it kills and removes the sandbox, then records 'stopped').
        False when this replica does not supervise it (its owner acts on the 'must stop' status)."""
        task = self._tasks.get(run_id)
        if task is None:
            return False
        if run_id not in self._stop_reasons:
            self._stop_reasons[run_id] = reason
            task.cancel()
        return True

    async def poll_stop_requests(self) -> int:
        """Act on 'must stop' runs this replica owns (the stop may have arrived through another replica)."""
        async with self.sessions() as s:
            rows = (
                await s.execute(
                    select(Run.id, Run.tenant_id).where(
                        Run.status == RunStatus.MUST_STOP.value, Run.claimed_by == self.replica_id
                    )
                )
            ).all()
        acted = 0
        for run_id, tenant_id in rows:
            if self.request_stop(str(run_id)):
                acted += 1
            elif not self._closing:  # owned here but nobody supervises it: stop what may exist, record it
                await self._safe_stop(
                    RunHandle(str(run_id), str(tenant_id), self.settings.container_prefix + str(run_id))
                )
                await self._finalize(
                    str(run_id), Supervision(stop_reason="user"), output=None, artifacts=None, timeout=0
                )
                acted += 1
        return acted

    async def end_unstarted(self, run_id: str, status: RunStatus, entry: dict[str, Any]) -> bool:
        """Finish a run that never got a sandbox (cancelled or expired while queued)."""
        now = utcnow()
        async with transaction(self.sessions) as s:
            run = await run_store.get_any(s, run_id)
            if run is None or RunStatus(run.status) != RunStatus.QUEUED:
                return False
            transition(run.status, status)
            if not await run_store.set_fields(
                s, run_id, expect=[RunStatus.QUEUED], status=status.value, stop_time=now, errors=[entry]
            ):
                return False
            await _mirror_last_run(s, run, status, finished_at=now, duration=None)
            tenant = await tenant_store.get_tenant(s, run.tenant_id)
        metrics.RUNS.labels(tenant.name if tenant else run.tenant_id, status.value, run.context).inc()
        run_hooks.publish(
            run_hooks.run_event(
                self.sessions,
                tenant_id=run.tenant_id,
                automation_id=run.automation_id,
                run_id=run_id,
                status=status.value,
            )
        )
        event = self._events.get(run_id)
        if event is not None:
            event.set()
        if self.on_finished is not None:
            self.on_finished(run_id)
        return True

    async def reconcile(self, alive: set[str] | None = None) -> dict[str, int]:
        """After a start: take over unfinished runs of dead replicas (a restarted process is a new replica,
        so its own earlier runs are among them), then remove sandboxes that belong to no unfinished run."""
        counts = await self.take_over(alive if alive is not None else {self.replica_id})
        counts["orphans"] = await self.sweep_orphans()
        if any(counts.values()):
            log.info("reconcile: %s", counts)
        return counts

    async def take_over(self, alive: set[str]) -> dict[str, int]:
        """Adopt unfinished runs whose owner is not alive: resume (or finish) those whose sandbox exists,
        restart synchronous runs that never started, record the rest as lost (RUN_LOST)."""
        counts = {"resumed": 0, "requeued": 0, "lost": 0}
        async with self.sessions() as s:
            candidates = [
                (r.id, r.status, r.claimed_by, r.timeout_seconds)
                for r in (
                    await s.execute(
                        select(Run).where(
                            Run.status.in_([x.value for x in ACTIVE])
                            | ((Run.status == RunStatus.QUEUED.value) & Run.synchronous.is_(True))
                        )
                    )
                ).scalars()
                if r.claimed_by not in alive and r.id not in self._tasks
            ]
        if not candidates:
            return counts
        sandboxes = {info.handle.run_id: info for info in await self.backend.list_sandboxes()}
        for run_id, status, owner, timeout in candidates:
            async with transaction(self.sessions) as s:
                owner_clause = Run.claimed_by.is_(None) if owner is None else Run.claimed_by == owner
                won = await s.execute(
                    update(Run)
                    .where(Run.id == run_id, Run.status == status, owner_clause)
                    .values(claimed_by=self.replica_id, updated_at=utcnow())
                )
                if not getattr(won, "rowcount", 0):
                    continue  # another replica adopted it first
            info = sandboxes.get(run_id)
            if RunStatus(status) == RunStatus.QUEUED:
                self.dispatch(run_id)
                outcome = "requeued"
            elif info is not None and info.state != SandboxState.MISSING:
                self.dispatch(run_id, attach=info.handle)
                outcome = "resumed"
            else:
                await self._finalize(
                    run_id,
                    Supervision(failure=_lost("its sandbox no longer exists (the control plane was down)")),
                    output=None,
                    artifacts=None,
                    timeout=timeout,
                )
                outcome = "lost"
            counts[outcome] += 1
            metrics.RECONCILED.labels(outcome).inc()
        return counts

    async def sweep_orphans(self) -> int:
        """Remove sandboxes carrying our labels whose run is final or unknown."""
        sandboxes = await self.backend.list_sandboxes()
        if not sandboxes:
            return 0
        ids = [info.handle.run_id for info in sandboxes]
        async with self.sessions() as s:
            unfinished = {
                str(r)
                for r in (
                    await s.execute(
                        select(Run.id).where(Run.id.in_(ids), Run.status.not_in([x.value for x in TERMINAL]))
                    )
                ).scalars()
            }
        removed = 0
        for info in sandboxes:
            if info.handle.run_id not in unfinished and info.handle.run_id not in self._tasks:
                await self._safe_stop(info.handle)
                metrics.ORPHANS_REMOVED.inc()
                removed += 1
        return removed

    async def shutdown(self) -> None:
        """Stop every run this process supervises and record it (design: nothing left running)."""
        self._closing = True
        for run_id, task in list(self._tasks.items()):
            self._stop_reasons.setdefault(run_id, "shutdown")
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    # --- supervision --------------------------------------------------------------------------------

    def _task_done(self, run_id: str, task: asyncio.Task[None]) -> None:
        self._tasks.pop(run_id, None)
        self._stop_reasons.pop(run_id, None)
        event = self._events.pop(run_id, None)
        if event is not None:
            event.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("run %s: supervisor crashed", run_id, exc_info=task.exception())
        if self.on_finished is not None:
            self.on_finished(run_id)

    async def _supervise(self, run_id: str, attach: RunHandle | None, claimed: bool) -> None:
        prepared: PreparedRun | None
        try:
            prepared = await prepare_run(
                self.settings,
                self.sessions,
                self.backend,
                run_id,
                attach=attach is not None,
                claimed=claimed,
                replica_id=self.replica_id,
            )
        except ControlPlaneError as exc:
            await self._finalize(run_id, Supervision(failure=exc), output=None, artifacts=None, timeout=0)
            return
        if prepared is None:
            return  # not ours to run (already claimed, stopped or final)
        kind = "sync" if prepared.synchronous else "background"
        metrics.RUNS_IN_FLIGHT.labels(kind).inc()
        try:
            await self._execute(prepared, attach)
        finally:
            metrics.RUNS_IN_FLIGHT.labels(kind).dec()

    async def _execute(self, prep: PreparedRun, attach: RunHandle | None) -> None:
        loop = asyncio.get_running_loop()
        spec: RunSpec = prep.spec
        sup = Supervision()
        release: Execution | None = None  # a collected sandbox, removed once its outcome is recorded
        output = RunOutput(self.sessions, spec.run_id, self.settings.log_max_bytes, prep.secrets)
        artifacts = ArtifactCollector(
            spec.outputs_max_files,
            spec.outputs_max_bytes,
            response_max_bytes=self.settings.script_response_max_bytes,
            mask=output.mask_text,
        )
        if attach is not None:
            try:
                await output.resume()
            except Exception:  # storing a line twice beats losing the run
                log.warning("run %s: reading its stored logs failed", spec.run_id, exc_info=True)
        output.start()
        t0 = loop.time()
        # The deadline counts from the sandbox's launch (queue time excluded); a resumed run keeps its own.
        deadline = loop.time() + spec.deadline_seconds
        if attach is not None and prep.deadline_at is not None:
            deadline = loop.time() + max(0.0, (prep.deadline_at - utcnow()).total_seconds())
        try:
            async with asyncio.timeout_at(deadline):
                execution: Execution
                if attach is None:
                    execution = await self.backend.launch(spec)
                else:
                    execution = await self.backend.attach(attach)
                sup.handle = execution.handle
                if attach is None:
                    await self._mark(spec.run_id, sandbox_ref=execution.handle.ref, backend=self.backend.name)
                async for frame in execution.frames():
                    if isinstance(frame, p.Output):
                        output.add(frame.stream, frame.data)
                    elif isinstance(frame, p.ArtifactHead):
                        artifacts.begin(frame.path, frame.size)
                    elif isinstance(frame, p.ArtifactData):
                        artifacts.data(frame.data)
                    elif isinstance(frame, p.Skipped):
                        artifacts.skipped.extend(frame.entries)
                    elif isinstance(frame, p.ResponseHead):  # the script's own HTTP answer (scripting dialect)
                        artifacts.begin_response(
                            status=frame.status, content_type=frame.content_type, size=frame.size, error=frame.error
                        )
                    elif isinstance(frame, p.Started):
                        if sup.started_at is None:
                            sup.started_at = utcnow()
                            if attach is None:
                                metrics.SANDBOX_START.labels(self.backend.name).observe(loop.time() - t0)
                            await self._running(spec.run_id, sup.started_at)
                    elif isinstance(frame, p.Exited):
                        sup.exited = frame
                        break
                sup.outcome = await execution.collect()
                release = execution
        except TimeoutError:
            sup.timed_out = True
        except BackendError as exc:
            metrics.BACKEND_ERRORS.labels("run").inc()
            sup.failure = exc
        except asyncio.CancelledError:
            if sup.outcome is None:  # an outcome already collected is what happened; record that
                sup.stop_reason = self._stop_reasons.get(spec.run_id, "shutdown")
            await _to_the_end(self._wrap_up(spec, sup, output, artifacts, prep))
            if release is not None:
                await _to_the_end(self._release(release))
            raise
        except Exception as exc:  # never leave a run or a sandbox behind on a bug
            log.exception("run %s: supervisor failed", spec.run_id)
            sup.failure = ControlPlaneError(f"{type(exc).__name__}: {exc}")
        try:
            await _to_the_end(self._wrap_up(spec, sup, output, artifacts, prep))
        finally:
            if release is not None:
                await _to_the_end(self._release(release))

    async def _release(self, execution: Execution) -> None:
        try:
            await execution.release()
        except Exception:  # reconcile removes sandboxes of finished runs
            metrics.BACKEND_ERRORS.labels("remove").inc()
            log.warning("run %s: removing the sandbox failed", execution.handle.run_id, exc_info=True)

    async def _wrap_up(
        self, spec: RunSpec, sup: Supervision, output: RunOutput, artifacts: ArtifactCollector, prep: PreparedRun
    ) -> None:
        if sup.outcome is None:
            # the sandbox may still exist (deadline, stop, engine error): kill and remove it first
            await self._safe_stop(sup.handle or RunHandle(spec.run_id, spec.tenant_id, prep.sandbox_name))
        await self._finalize(spec.run_id, sup, output=output, artifacts=artifacts, timeout=int(spec.deadline_seconds))

    async def _safe_stop(self, handle: RunHandle) -> None:
        for attempt in range(3):
            try:
                await self.backend.stop(handle)
                return
            except BackendError:
                metrics.BACKEND_ERRORS.labels("stop").inc()
                log.warning("run %s: stop failed (attempt %d)", handle.run_id, attempt + 1, exc_info=True)
                await asyncio.sleep(0.5 * (attempt + 1))
        self.sweep_due = True

    # --- storage ------------------------------------------------------------------------------------

    async def _mark(self, run_id: str, **values: Any) -> None:
        async with transaction(self.sessions) as s:
            await run_store.set_fields(s, run_id, **values)

    async def _running(self, run_id: str, started_at: datetime) -> None:
        async with transaction(self.sessions) as s:
            run = await run_store.get_any(s, run_id)
            if run is None or RunStatus(run.status) != RunStatus.STARTING:
                return
            transition(run.status, RunStatus.RUNNING)
            if await run_store.set_fields(
                s, run_id, expect=[RunStatus.STARTING], status=RunStatus.RUNNING.value, start_time=started_at
            ):
                await _mirror_last_run(s, run, RunStatus.RUNNING)

    async def _finalize(
        self,
        run_id: str,
        sup: Supervision,
        *,
        output: RunOutput | None,
        artifacts: ArtifactCollector | None,
        timeout: int,
    ) -> None:
        stored: list[Artifact] = []
        answer: RunResponse | None = None
        stdout_bytes = stderr_bytes = 0
        truncated = {"stdout": False, "stderr": False}
        if output is not None:
            try:
                await output.close()
            except Exception:
                log.exception("run %s: final log flush failed", run_id)
            stdout_bytes = output.streams["stdout"].total
            stderr_bytes = output.streams["stderr"].total
            truncated = {k: v.dropped > 0 for k, v in output.streams.items()}
        if artifacts is not None:
            for art in artifacts.finish():
                stored.append(
                    Artifact(
                        run_id=run_id,
                        tenant_id="",
                        path=art.path,
                        size=art.size,
                        sha256=art.sha256,
                        content_type=art.content_type,
                        data=art.file.read(),
                    )
                )
            if artifacts.skipped:
                listed = ", ".join(f"{path} ({why})" for path, why in artifacts.skipped[:20])
                sup.notes.append(err(ErrorCode.ARTIFACTS_SKIPPED, "Some outputs were not collected", listed))
            response = artifacts.response  # the script's own HTTP answer (outputs/.response/), if it wrote one
            if response is not None:
                answer = RunResponse(
                    run_id=run_id,
                    tenant_id="",
                    status_code=response.status_code,
                    content_type=response.content_type,
                    body=response.body,
                    size=len(response.body),
                    error=response.error,
                )
                if response.error:
                    sup.notes.append(err("INVALID_RESPONSE", "The script's HTTP response was not used", response.error))
            artifacts.close()
        status, exit_code, errors = decide(sup, stderr_bytes=stderr_bytes, timeout=timeout)
        now = utcnow()
        usage = sup.outcome.usage if sup.outcome is not None else None
        async with transaction(self.sessions) as s:
            run = await run_store.get_any(s, run_id)
            if run is None:
                return
            current = RunStatus(run.status)
            if current in TERMINAL:
                return
            transition(current, status)
            start = run.start_time
            values: dict[str, Any] = {
                "status": status.value,
                "exit_code": exit_code,
                "stop_time": now,
                "stdout_bytes": stdout_bytes,
                "stderr_bytes": stderr_bytes,
                "stdout_truncated": truncated["stdout"],
                "stderr_truncated": truncated["stderr"],
                "errors": errors,
            }
            if usage is not None:
                values["metrics"] = {
                    **(run.metrics or {}),
                    "network": {"rxBytes": usage.net_rx_bytes, "txBytes": usage.net_tx_bytes},
                    "cpuSeconds": round(usage.cpu_seconds, 6),
                    "memoryPeakBytes": usage.memory_peak_bytes,
                }
            if not await run_store.set_fields(s, run_id, expect=[current], **values):
                return  # someone else finished it first
            for row in stored:
                row.tenant_id = run.tenant_id
                s.add(row)
            if answer is not None:
                answer.tenant_id = run.tenant_id
                s.add(answer)
            await tenant_store.revoke_run_tokens(s, run_id)
            duration = (now - start).total_seconds() if start else None
            await _mirror_last_run(s, run, status, finished_at=now, duration=duration)
            automation = await s.get(Automation, run.automation_id)
            await usage_store.record_run(  # daily aggregates: they outlive the run (retention)
                s,
                day=usage_store.day_of(now),
                tenant_id=run.tenant_id,
                automation_id=run.automation_id,
                automation_name=automation.name if automation is not None else run.title,
                owner_id=(automation.owner_id if automation is not None else run.owner_id) or "",
                context=run.context,
                status=status.value,
                duration_seconds=duration or 0.0,
                rx_bytes=usage.net_rx_bytes if usage is not None else 0,
                tx_bytes=usage.net_tx_bytes if usage is not None else 0,
            )
            tenant = await tenant_store.get_tenant(s, run.tenant_id)
            tenant_name = tenant.name if tenant is not None else run.tenant_id
        waiter = self._events.get(run_id)
        if waiter is not None:  # the outcome is committed: a synchronous caller may answer now
            waiter.set()
        run_hooks.publish(  # committed, and only by the replica whose compare-and-set won: rules fire once
            run_hooks.run_event(
                self.sessions,
                tenant_id=run.tenant_id,
                automation_id=run.automation_id,
                run_id=run_id,
                status=status.value,
            )
        )
        metrics.RUNS.labels(tenant_name, status.value, run.context).inc()
        if start is not None:
            metrics.RUN_DURATION.labels(run.context).observe((now - start).total_seconds())
            metrics.RUN_SECONDS.labels(tenant_name).inc(max(0.0, (now - start).total_seconds()))
        if usage is not None:
            metrics.NETWORK_BYTES.labels(tenant_name, "rx").inc(usage.net_rx_bytes)
            metrics.NETWORK_BYTES.labels(tenant_name, "tx").inc(usage.net_tx_bytes)


async def _to_the_end(work: Coroutine[Any, Any, None]) -> None:
    """Run ``work`` to completion even if we are cancelled meanwhile (recording a run's end and removing
    its sandbox must not be cut short), then let the cancellation through."""
    task = asyncio.ensure_future(work)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait({task})
        raise


def _lost(detail: str) -> ControlPlaneError:
    return ControlPlaneError(detail, code=ErrorCode.RUN_LOST.value, title="The run was lost")


async def _mirror_last_run(
    s: AsyncSession,
    run: Run,
    status: RunStatus,
    *,
    finished_at: datetime | None = None,
    duration: float | None = None,
) -> None:
    """Keep the automation's lastRun* fields on its latest run."""
    values: dict[str, Any] = {"last_run_status": status.value}
    if finished_at is not None:
        values["last_run_at"] = finished_at
        values["last_run_duration"] = duration
    await s.execute(
        update(Automation).where(Automation.id == run.automation_id, Automation.last_run_id == run.id).values(**values)
    )
