"""A run's end: what the supervisor learned turned into the stored record (store/run_end.py, one
transaction), then the tail every final run shares (``after_final``): wake the caller waiting for it,
publish the run-end event, count it in the metrics. Nothing on the tail holds the caller up: the waiter is
woken first, as soon as the outcome is committed.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from controlplane.backends.base import Usage
from controlplane.core import metrics
from controlplane.core.states import ErrorCode, RunStatus
from controlplane.db.session import transaction
from controlplane.db.tables import Artifact, RunResponse, utcnow
from controlplane.services.events import hooks
from controlplane.services.execution.capture import ArtifactCollector
from controlplane.services.execution.outcome import Supervision, decide, err
from controlplane.services.execution.output import RunOutput
from controlplane.store import run_end
from controlplane.store.run_end import Ended, Ending

if TYPE_CHECKING:
    from controlplane.services.execution.engine import RunEngine

log = logging.getLogger("controlplane.engine")


async def finalize(
    engine: RunEngine,
    run_id: str,
    sup: Supervision,
    *,
    output: RunOutput | None,
    artifacts: ArtifactCollector | None,
    timeout: int,
) -> None:
    """Record the end of a run (whatever ended it) unless someone else already did, then ``after_final``."""
    if output is not None:
        try:
            await output.close()
        except Exception:
            log.exception("run %s: final log flush failed", run_id)
    ending = ending_of(run_id, sup, output, artifacts, timeout)
    async with transaction(engine.sessions) as s:
        ended = await run_end.record_end(s, run_id, ending, now=utcnow())
    if ended is not None:
        after_final(engine, ended, sup.outcome.usage if sup.outcome is not None else None)


def ending_of(
    run_id: str, sup: Supervision, output: RunOutput | None, artifacts: ArtifactCollector | None, timeout: int
) -> Ending:
    stdout_bytes = output.streams["stdout"].total if output is not None else 0
    stderr_bytes = output.streams["stderr"].total if output is not None else 0
    rows, response = _collected(run_id, sup, artifacts)
    status, exit_code, errors = decide(sup, stderr_bytes=stderr_bytes, timeout=timeout)
    usage = sup.outcome.usage if sup.outcome is not None else None
    figures: dict[str, Any] | None = None
    if usage is not None:
        figures = {
            "network": {"rxBytes": usage.net_rx_bytes, "txBytes": usage.net_tx_bytes},
            "cpuSeconds": round(usage.cpu_seconds, 6),
            "memoryPeakBytes": usage.memory_peak_bytes,
        }
    return Ending(
        status=status,
        exit_code=exit_code,
        errors=errors,
        stdout_bytes=stdout_bytes,
        stderr_bytes=stderr_bytes,
        stdout_truncated=output is not None and output.streams["stdout"].dropped > 0,
        stderr_truncated=output is not None and output.streams["stderr"].dropped > 0,
        metrics=figures,
        rx_bytes=usage.net_rx_bytes if usage is not None else 0,
        tx_bytes=usage.net_tx_bytes if usage is not None else 0,
        artifacts=tuple(rows),
        response=response,
    )


def _collected(
    run_id: str, sup: Supervision, artifacts: ArtifactCollector | None
) -> tuple[list[Artifact], RunResponse | None]:
    """The artifacts and the script's own HTTP answer (outputs/.response/) as rows; notes for what was not
    kept go on ``sup``."""
    if artifacts is None:
        return [], None
    rows = [
        Artifact(
            run_id=run_id,
            tenant_id="",
            path=art.path,
            size=art.size,
            sha256=art.sha256,
            content_type=art.content_type,
            data=art.file.read(),
        )
        for art in artifacts.finish()
    ]
    if artifacts.skipped:
        listed = ", ".join(f"{path} ({why})" for path, why in artifacts.skipped[:20])
        sup.notes.append(err(ErrorCode.ARTIFACTS_SKIPPED, "Some outputs were not collected", listed))
    answer: RunResponse | None = None
    response = artifacts.response
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
    return rows, answer


def after_final(engine: RunEngine, ended: Ended, usage: Usage | None = None) -> None:
    """What follows every committed run end, by the one replica whose compare-and-set won (rules fire once)."""
    waiter = engine.waiter(ended.run_id)
    if waiter is not None:  # the outcome is committed: a synchronous caller may answer now
        waiter.set()
    hooks.publish(
        hooks.run_event(
            engine.sessions,
            tenant_id=ended.tenant_id,
            automation_id=ended.automation_id,
            run_id=ended.run_id,
            status=ended.status.value,
        )
    )
    metrics.RUNS.labels(ended.tenant_name, ended.status.value, ended.context).inc()
    duration = ended.duration
    if duration is not None:
        metrics.RUN_DURATION.labels(ended.context).observe(duration)
        metrics.RUN_SECONDS.labels(ended.tenant_name).inc(max(0.0, duration))
    if usage is not None:
        metrics.NETWORK_BYTES.labels(ended.tenant_name, "rx").inc(usage.net_rx_bytes)
        metrics.NETWORK_BYTES.labels(ended.tenant_name, "tx").inc(usage.net_tx_bytes)


async def end_unstarted(engine: RunEngine, run_id: str, status: RunStatus, entry: dict[str, Any]) -> bool:
    """Finish a run that never got a sandbox (cancelled or expired while queued)."""
    async with transaction(engine.sessions) as s:
        ended = await run_end.record_unstarted(s, run_id, status, entry, now=utcnow())
    if ended is None:
        return False
    after_final(engine, ended)
    if engine.on_finished is not None:
        engine.on_finished(run_id)
    return True
