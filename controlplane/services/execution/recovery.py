"""Recovery: the runs and sandboxes nobody looks after any more.

* ``take_over`` - unfinished runs of dead replicas (a restarted process is a new replica, so its own earlier
  runs are among them) are adopted (services/execution/claim.py) and resumed when their sandbox still
  exists, restarted when they are synchronous runs that never started, recorded RUN_LOST otherwise.
* ``sweep_orphans`` - sandboxes carrying our labels whose run is final or unknown are removed.
* ``act_on_stops`` - 'must stop' runs this replica owns (the stop may have arrived through another
  replica) are stopped.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from controlplane.backends.base import RunHandle, SandboxState
from controlplane.core import metrics
from controlplane.core.states import RunStatus
from controlplane.services.execution import claim, ending
from controlplane.services.execution.outcome import Supervision, lost
from controlplane.services.execution.supervisor import safe_stop
from controlplane.store import runs as run_store

if TYPE_CHECKING:
    from controlplane.services.execution.engine import RunEngine

log = logging.getLogger("controlplane.engine")


async def reconcile(engine: RunEngine, alive: set[str]) -> dict[str, int]:
    """After a start: take over what dead replicas left, then remove sandboxes no unfinished run owns."""
    counts = await take_over(engine, alive)
    counts["orphans"] = await sweep_orphans(engine)
    if any(counts.values()):
        log.info("reconcile: %s", counts)
    return counts


async def take_over(engine: RunEngine, alive: set[str]) -> dict[str, int]:
    counts = {"resumed": 0, "requeued": 0, "lost": 0}
    async with engine.sessions() as s:
        candidates = [
            (r.id, r.status, r.claimed_by, r.timeout_seconds)
            for r in await run_store.unfinished_not_owned(s, alive)
            if not engine.supervises(r.id)
        ]
    if not candidates:
        return counts
    sandboxes = {info.handle.run_id: info for info in await engine.backend.list_sandboxes()}
    for run_id, status, owner, timeout in candidates:
        if not await claim.adopt(engine.sessions, run_id, status=status, owner=owner, replica_id=engine.replica_id):
            continue  # another replica adopted it first
        info = sandboxes.get(run_id)
        if RunStatus(status) == RunStatus.QUEUED:
            engine.dispatch(run_id)
            outcome = "requeued"
        elif info is not None and info.state != SandboxState.MISSING:
            engine.dispatch(run_id, attach=info.handle)
            outcome = "resumed"
        else:
            failure = lost("its sandbox no longer exists (the control plane was down)")
            await ending.finalize(
                engine, run_id, Supervision(failure=failure), output=None, artifacts=None, timeout=timeout
            )
            outcome = "lost"
        counts[outcome] += 1
        metrics.RECONCILED.labels(outcome).inc()
    return counts


async def sweep_orphans(engine: RunEngine) -> int:
    sandboxes = await engine.backend.list_sandboxes()
    if not sandboxes:
        return 0
    async with engine.sessions() as s:
        unfinished = await run_store.unfinished_among(s, [info.handle.run_id for info in sandboxes])
    removed = 0
    for info in sandboxes:
        if info.handle.run_id not in unfinished and not engine.supervises(info.handle.run_id):
            await safe_stop(engine, info.handle)
            metrics.ORPHANS_REMOVED.inc()
            removed += 1
    return removed


async def act_on_stops(engine: RunEngine) -> int:
    async with engine.sessions() as s:
        rows = await run_store.told_to_stop(s, engine.replica_id)
    acted = 0
    for run_id, tenant_id in rows:
        if engine.request_stop(run_id):
            acted += 1
        elif not engine.closing:  # owned here but nobody supervises it: stop what may exist, record it
            await safe_stop(engine, RunHandle(run_id, tenant_id, engine.settings.container_prefix + run_id))
            await ending.finalize(
                engine, run_id, Supervision(stop_reason="user"), output=None, artifacts=None, timeout=0
            )
            acted += 1
    return acted
