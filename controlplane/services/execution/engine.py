"""The run engine: takes a committed, queued run to its final status, whatever happens in between.

This module is the engine's face and its bookkeeping: which runs this process supervises, who waits for
which, which stops were asked for. The work lives beside it:

* claim.py - a run becomes this replica's (queued -> starting, compare-and-set);
* spec.py - the claimed row becomes the spec a backend launches;
* supervisor.py - one task per run: launch, frames, deadline, outcome;
* output.py - the run's streams, masked and flushed;
* outcome.py - how the run ended, decided (pure);
* ending.py - the end recorded in one transaction, and the tail every final run shares;
* recovery.py - dead replicas' runs taken over, orphaned sandboxes removed, stops acted on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from controlplane.backends.base import Backend, RunHandle
from controlplane.core.settings import Settings
from controlplane.core.states import TERMINAL, RunStatus
from controlplane.services.execution import ending, recovery, supervisor
from controlplane.store import runs as run_store

log = logging.getLogger("controlplane.engine")


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
        self.stop_reasons: dict[str, str] = {}  # run id -> "user" | "shutdown", read by its supervisor
        self.closing = False
        self.sweep_due = False  # a sandbox could not be removed (engine down?): sweep again soon, not in a minute
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._events: dict[str, asyncio.Event] = {}

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def supervises(self, run_id: str) -> bool:
        return run_id in self._tasks

    def waiter(self, run_id: str) -> asyncio.Event | None:
        """The event a caller of ``wait`` waits on, set once the run's end is committed."""
        return self._events.get(run_id)

    def dispatch(self, run_id: str, *, attach: RunHandle | None = None, claimed: bool = False) -> None:
        """Start supervising a committed run: a queued one (claimed here), one the dispatcher already claimed
        for this replica (``claimed``), or one whose sandbox outlived its supervisor (``attach``)."""
        if self.closing or run_id in self._tasks:
            return
        self._events.setdefault(run_id, asyncio.Event())
        task = asyncio.create_task(supervisor.supervise(self, run_id, attach, claimed), name=f"run-{run_id}")
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
        if run_id not in self.stop_reasons:
            self.stop_reasons[run_id] = reason
            task.cancel()
        return True

    async def end_unstarted(self, run_id: str, status: RunStatus, entry: dict[str, Any]) -> bool:
        """Finish a run that never got a sandbox (cancelled or expired while queued)."""
        return await ending.end_unstarted(self, run_id, status, entry)

    async def reconcile(self, alive: set[str] | None = None) -> dict[str, int]:
        return await recovery.reconcile(self, alive if alive is not None else {self.replica_id})

    async def take_over(self, alive: set[str]) -> dict[str, int]:
        return await recovery.take_over(self, alive)

    async def sweep_orphans(self) -> int:
        return await recovery.sweep_orphans(self)

    async def poll_stop_requests(self) -> int:
        return await recovery.act_on_stops(self)

    async def shutdown(self) -> None:
        """Stop every run this process supervises and record it (design: nothing left running)."""
        self.closing = True
        for run_id, task in list(self._tasks.items()):
            self.stop_reasons.setdefault(run_id, "shutdown")
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    def _task_done(self, run_id: str, task: asyncio.Task[None]) -> None:
        self._tasks.pop(run_id, None)
        self.stop_reasons.pop(run_id, None)
        event = self._events.pop(run_id, None)
        if event is not None:
            event.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("run %s: supervisor crashed", run_id, exc_info=task.exception())
        if self.on_finished is not None:
            self.on_finished(run_id)
