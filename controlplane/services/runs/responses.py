"""A run's answer: what its script wrote into $JETQUERY_OUTPUTS/.response/ (status, content-type, body, stored
with the run by the engine), or its stdout as text/plain when it wrote none.

The native API serves it at ``GET …/runs/{runId}/response``; the scripting dialect (seed 002) answers its
callers with the same thing, mapping how the run ended to that API's status codes.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from controlplane.core.auth import Permission, Principal
from controlplane.core.errors import Code, Conflict, NotFound
from controlplane.core.settings import Settings
from controlplane.core.states import TERMINAL, RunStatus
from controlplane.services.automations.service import AutomationService
from controlplane.store import responses as response_store
from controlplane.store import runs as run_store
from controlplane.store.responses import Execution

COMPLETED = frozenset({RunStatus.FINISHED, RunStatus.FINISHED_WITH_WARNINGS})
STDOUT_TYPE = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class Answer:
    execution_id: str
    status_code: int
    content_type: str
    body: bytes
    source: str  # "script" (outputs/.response/), "stdout", or "error" (the execution did not finish)


def delivered(ex: Execution) -> bool:
    """The script ran to exit 0 and its answer (its own, or its stdout) can be used."""
    if ex.status not in COMPLETED:
        return False
    return not ex.answered or (ex.answer_error is None and ex.answer_status is not None)


async def read_answer(settings: Settings, s: AsyncSession, ex: Execution) -> Answer:
    """The answer of a run that ``delivered`` one: its script's own, else its stdout with status 200."""
    if ex.answered:
        row = await response_store.get(s, ex.run_id)
        if row is not None and row.content_type is not None:
            return Answer(ex.run_id, ex.answer_status or 200, row.content_type, bytes(row.body), "script")
    data, _ = await run_store.read_log(s, ex.run_id, "stdout", max_bytes=settings.script_response_max_bytes)
    return Answer(ex.run_id, 200, STDOUT_TYPE, data, "stdout")


class RunResponses:
    def __init__(
        self, settings: Settings, sessions: async_sessionmaker[AsyncSession], automations: AutomationService
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.automations = automations

    async def get(self, principal: Principal, automation_id: str, run_id: str) -> Answer:
        """A run's answer. 409 while it runs (RUN_NOT_FINISHED) and when it ended without delivering one
        (RUN_HAS_NO_RESPONSE: failed, timed out, stopped, or its answer was invalid)."""
        async with self.sessions() as s:
            await self.automations.load(s, principal, automation_id, Permission.READ)
            ex = await response_store.execution(s, principal.tenant_id, run_id)
            if ex is None or ex.automation_id != automation_id:
                raise NotFound(f"run {run_id} does not exist")
            if ex.status not in TERMINAL:
                raise Conflict(f"run {run_id} is {ex.status.value}; it has no response yet", code=Code.RUN_NOT_FINISHED)
            if not delivered(ex):
                why = f" ({ex.answer_error})" if ex.answer_error else ""
                raise Conflict(
                    f"run {run_id} ended {ex.status.value} without a response{why}", code=Code.RUN_HAS_NO_RESPONSE
                )
            return await read_answer(self.settings, s, ex)
