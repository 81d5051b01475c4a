"""The scripting app (seed 002) over the run services: one script execution is one run of an automation.

* A request becomes the run's input: its body as sent, wrapped with the request's method, path, query,
  headers (minus Authorization and Proxy-Authorization) and content type. The sandbox's runner unwraps it:
  the script reads the body on stdin and in /work/input, the request in /work/request.json, and gets
  JETQUERY_REQUEST_METHOD, _CONTENT_TYPE, _QUERY (when short) and _FILE, and JETQUERY_RESPONSE_DIR.
* The answer is what the script wrote into $JETQUERY_OUTPUTS/.response/ (status, content-type, body; the
  engine stores it with the run), or, when it wrote none, its stdout as text/plain with status 200.
* How an execution ended is that API's status code (``status_code``): the script's own when it exited 0,
  504 when its deadline stopped it, 500 when it never started, 502 for every other way of not finishing
  (non-zero exit, signal, out of memory, stopped, lost, an answer that cannot be used).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qs

from sqlalchemy.ext.asyncio import AsyncSession

from controlplane.backends.base import SANDBOX_OUTPUTS, SANDBOX_WORK
from controlplane.core.auth import Permission, Principal
from controlplane.core.errors import (
    Code,
    Conflict,
    ControlPlaneError,
    NotFound,
    QuotaExceeded,
    ScriptFailed,
    ScriptNotScheduled,
    ScriptNotStarted,
    ScriptTimedOut,
)
from controlplane.core.settings import Settings
from controlplane.core.states import TERMINAL, ErrorCode, RunContext
from controlplane.db.tables import Automation, Run
from controlplane.dialects.scripting.schemas import ScriptLogEntryPublic, ScriptLogPagePublic
from controlplane.services.runs.responses import COMPLETED, Answer, delivered, read_answer
from controlplane.services.runs.surface import Surface
from controlplane.services.tenancy.spaces import automation_missing
from controlplane.store import responses as response_store
from controlplane.store.responses import Execution

REQUEST_MAGIC = b"\x00controlplane-request/1\n"  # the runner's twin: sandbox-images/python/runner.py
HIDDEN_HEADERS = frozenset({"authorization", "proxy-authorization"})
ENV_QUERY_MAX = 8192  # longer query strings reach the script in request.json only
FAILURES: dict[int, type[ControlPlaneError]] = {500: ScriptNotStarted, 502: ScriptFailed, 504: ScriptTimedOut}


@dataclass(frozen=True)
class ScriptRequest:
    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    content_type: str | None
    body: bytes


def wrap_request(settings: Settings, request: ScriptRequest, *, script_id: str, mode: str) -> bytes:
    """The run's input for a request: REQUEST_MAGIC, one JSON line, then the body as sent."""
    headers: dict[str, str] = {}
    for name, value in request.headers:
        key = name.lower()
        if key not in HIDDEN_HEADERS:
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
    meta = {
        "method": request.method,
        "path": request.path,
        "query": request.query,
        "queryParams": parse_qs(request.query, keep_blank_values=True),
        "headers": headers,
        "contentType": request.content_type,
        "scriptId": script_id,
        "mode": mode,
    }
    prefix = settings.sandbox_env_prefix
    env = {
        f"{prefix}REQUEST_FILE": f"{SANDBOX_WORK}/request.json",
        f"{prefix}REQUEST_METHOD": request.method,
        f"{prefix}RESPONSE_DIR": f"{SANDBOX_OUTPUTS}/.response",
    }
    if request.content_type:
        env[f"{prefix}REQUEST_CONTENT_TYPE"] = request.content_type[:1024]
    if len(request.query) <= ENV_QUERY_MAX:
        env[f"{prefix}REQUEST_QUERY"] = request.query
    line = json.dumps({"request": meta, "env": env}, separators=(",", ":")).encode()  # never holds a newline
    return REQUEST_MAGIC + line + b"\n" + request.body


def timed_out(ex: Execution) -> bool:
    return any(e.get("code") == ErrorCode.RUN_TIMEOUT.value for e in ex.errors)


def status_code(ex: Execution) -> int | None:
    """The status /scripting/script/{id}/run answers for this execution; None while it is unfinished."""
    if ex.status not in TERMINAL:
        return None
    if delivered(ex):
        return ex.answer_status if ex.answered and ex.answer_status is not None else 200
    if timed_out(ex):
        return 504
    if ex.status not in COMPLETED and ex.start_time is None:
        return 500  # no script process ever ran: launch failed, never dispatched, stopped while queued
    return 502


def failure(ex: Execution, code: int) -> ControlPlaneError:
    """The error for an execution that did not deliver an answer; its run's error entries follow."""
    entries = ex.errors or [{"code": ErrorCode.RUN_LOST.value, "title": "The run ended without a result"}]
    first = entries[0]
    why = str(first.get("title", "")) + (f" ({first['detail']})" if first.get("detail") else "")
    detail = f"execution {ex.run_id} ended {ex.status.value}: {why}"
    return FAILURES[code](detail, extra=entries, headers={"X-Execution-Id": ex.run_id})


def execution_date(ex: Execution) -> str:
    when: datetime = ex.start_time or ex.created_at
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ScriptingService(Surface):
    async def script(self, principal: Principal, script_id: str, permission: Permission) -> Automation:
        """The automation called ``script_id`` by id or else by name: 404 when missing or not visible to the
        caller (another tenant's), 403 when visible but not allowed."""
        async with self.sessions() as s:
            return await self.runs.find_automation(
                s, principal, script_id, permission, missing=automation_missing(script_id)
            )

    async def _submit(self, principal: Principal, script: Automation, request: ScriptRequest, mode: str) -> Run:
        """A run of the script with the request wrapped as its input: waited for (``run``) or queued."""
        return await self.runs.run_and_collect(
            principal,
            script.id,
            context=RunContext.API_SYNC if mode == "run" else RunContext.API_ASYNC,
            input_data=wrap_request(self.settings, request, script_id=script.id, mode=mode),
            input_content_type=request.content_type,
        )

    async def run(self, principal: Principal, script_id: str, request: ScriptRequest) -> Answer:
        """Execute and wait: the script's answer, or ScriptNotStarted / ScriptFailed / ScriptTimedOut."""
        script = await self.script(principal, script_id, Permission.RUN)
        try:
            run = await self._submit(principal, script, request, "run")
        except Conflict as exc:  # disabled
            raise ScriptNotStarted(exc.detail, extra=exc.entries()) from exc
        async with self.sessions() as s:
            ex = await response_store.execution(s, principal.tenant_id, run.id)
            if ex is None or ex.status not in TERMINAL:
                raise ScriptTimedOut(f"execution {run.id} did not end in time", headers={"X-Execution-Id": run.id})
            return await self._answer(s, ex)

    async def background(self, principal: Principal, script_id: str, request: ScriptRequest) -> tuple[str, str]:
        """Schedule a run: (script id, execution id). ScriptNotScheduled when it cannot be queued."""
        script = await self.script(principal, script_id, Permission.RUN)
        try:
            run = await self._submit(principal, script, request, "background")
        except (Conflict, QuotaExceeded) as exc:  # disabled, or the tenant's queue is full
            raise ScriptNotScheduled(exc.detail, extra=exc.entries(), headers=exc.headers) from exc
        return script.id, run.id

    async def logs(self, principal: Principal, script_id: str, *, limit: int, offset: int) -> ScriptLogPagePublic:
        """Finished executions of the script's latest version, newest first."""
        script = await self.script(principal, script_id, Permission.RUN)
        async with self.sessions() as s:
            items, more = await response_store.finished_executions(
                s, principal.tenant_id, script.id, script.version, limit=limit, offset=offset
            )
        entries = [
            ScriptLogEntryPublic(
                execution_id=ex.run_id,
                script_id=script.id,
                execution_date=execution_date(ex),
                status_code=status_code(ex) or 0,
            )
            for ex in items
        ]
        return ScriptLogPagePublic(filtered_logs=entries, more_elements=more)

    async def execution(self, principal: Principal, script_id: str, execution_id: str) -> Answer:
        """What the execution answered: the script's answer, or for one that did not deliver, the error
        entries /run answered with (JSON) and the status code it answered."""
        script = await self.script(principal, script_id, Permission.RUN)
        async with self.sessions() as s:
            ex = await response_store.execution(s, principal.tenant_id, execution_id)
            if ex is None or ex.automation_id != script.id:
                raise NotFound(f"execution {execution_id} of script {script_id} does not exist")
            if ex.status not in TERMINAL:
                raise NotFound(f"execution {execution_id} has not finished yet", code=Code.EXECUTION_NOT_FINISHED)
            try:
                return await self._answer(s, ex)
            except ControlPlaneError as exc:
                body = json.dumps({"errors": exc.entries()}).encode()
                return Answer(ex.run_id, exc.status_code, "application/json", body, "error")

    async def _answer(self, s: AsyncSession, ex: Execution) -> Answer:
        code = status_code(ex)
        if code is None or not delivered(ex):
            raise failure(ex, code or 502)
        return await read_answer(self.settings, s, ex)
