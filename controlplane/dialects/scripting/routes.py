"""Seed 002's scripting app, mounted at /scripting: a thin translation over dialects/scripting/service.py.

* ``/scripting/script/{scriptId}/run`` (POST, GET, PUT, DELETE, PATCH; any body and content type): runs the
  script and answers with what it answered - its status, content type and body (its stdout as text/plain
  when it wrote no answer). 401 no/bad token, 404 no such script (or another tenant's), 429 past the
  tenant's CP_SYNC_CONCURRENCY_PER_TENANT (10) synchronous executions, 500 could not start, 502 could not
  fully execute, 504 stopped by its deadline. The execution id is in ``X-Execution-Id``.
* ``/scripting/script/{scriptId}/background`` (same methods): 202 once queued (``Location``: the execution's
  log; body ``{"executionId", "scriptId"}``), 500 when it cannot be queued. Background executions share the
  CP_BACKGROUND_CONCURRENCY_TOTAL (100) slots and run at most CP_BACKGROUND_TIMEOUT_SECONDS (14 minutes).
* ``GET /scripting/log/script/{scriptId}?limit=&offset=``: ``{"filteredLogs": [...], "moreElements"}``.
* ``GET /scripting/log/script/{scriptId}/execution/{executionId}``: that execution's answer.

``scriptId`` is the automation's id or its name. Errors are the native envelope.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse

from controlplane.api.deps import PlatformDep, PrincipalDep, base_url
from controlplane.core.schemas.wire import ErrorBody
from controlplane.dialects.scripting.schemas import ScriptLogPagePublic, ScriptScheduledPublic
from controlplane.dialects.scripting.service import ScriptingService, ScriptRequest
from controlplane.services.runs.responses import Answer

METHODS = ["POST", "GET", "PUT", "DELETE", "PATCH"]
ANY_BODY: dict[str, Any] = {
    "requestBody": {
        "required": False,
        "description": "Any body and content type; it reaches the script as its input (stdin, /work/input), "
        "the request's method, query, headers (minus Authorization) and content type as /work/request.json.",
        "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
    }
}
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (401, 403, 404, 413, 429, 431, 500, 502, 504)
}
PREFIX = "/scripting"
router = APIRouter(tags=["scripting"], responses=ERRORS)


def get_scripting(platform: PlatformDep) -> ScriptingService:
    return ScriptingService(platform.settings, platform.sessions, platform.automations, platform.runs)


ScriptingDep = Annotated[ScriptingService, Depends(get_scripting)]


async def script_request(request: Request) -> ScriptRequest:
    return ScriptRequest(
        method=request.method,
        path=request.url.path,
        query=request.url.query,
        headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw],
        content_type=request.headers.get("content-type"),
        body=await request.body(),
    )


def answer_response(answer: Answer, *, status_code: int | None = None) -> Response:
    """The body and Content-Type exactly as the script gave them (no charset added)."""
    headers = {"content-type": answer.content_type, "X-Execution-Id": answer.execution_id}
    return Response(answer.body, status_code=status_code or answer.status_code, headers=headers)


async def run_script(scriptId: str, request: Request, principal: PrincipalDep, scripting: ScriptingDep) -> Response:
    """Start a script and answer with its response."""
    return answer_response(await scripting.run(principal, scriptId, await script_request(request)))


async def run_script_in_background(
    scriptId: str, request: Request, principal: PrincipalDep, scripting: ScriptingDep
) -> JSONResponse:
    """Start a script in the background: 202 once it is scheduled (the script itself does not answer)."""
    script_id, execution_id = await scripting.background(principal, scriptId, await script_request(request))
    location = f"{base_url(request)}/scripting/log/script/{script_id}/execution/{execution_id}"
    return JSONResponse(
        ScriptScheduledPublic(execution_id=execution_id, script_id=script_id).model_dump(by_alias=True),
        status_code=202,
        headers={"Location": location, "X-Execution-Id": execution_id},
    )


for _method in METHODS:  # one route per method: each gets its own OpenAPI operation id
    router.add_api_route(
        "/script/{scriptId}/run",
        run_script,
        methods=[_method],
        name=f"run_script_{_method.lower()}",
        response_class=Response,
        openapi_extra=ANY_BODY,
        responses={200: {"description": "The script's own status, content type and body."}},
    )
    router.add_api_route(
        "/script/{scriptId}/background",
        run_script_in_background,
        methods=[_method],
        name=f"run_script_in_background_{_method.lower()}",
        status_code=202,
        response_class=JSONResponse,
        response_model=ScriptScheduledPublic,
        openapi_extra=ANY_BODY,
        responses={202: {"description": "Scheduled; Location is the execution's log."}},
    )


@router.get("/log/script/{scriptId}", response_model=ScriptLogPagePublic)
async def script_logs(
    scriptId: str,
    principal: PrincipalDep,
    scripting: ScriptingDep,
    limit: Annotated[int, Query(ge=1, le=1000, description="Entries per page.")] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1, description="Entries to skip (newest first).")] = 0,
) -> ScriptLogPagePublic:
    """The finished executions of the script's latest version, newest first; ``moreElements`` says whether
    another page follows (``offset`` + ``limit``)."""
    return await scripting.logs(principal, scriptId, limit=limit, offset=offset)


@router.get(
    "/log/script/{scriptId}/execution/{executionId}",
    response_class=Response,
    responses={200: {"description": "The execution's response content, with its content type."}},
)
async def execution_log(scriptId: str, executionId: str, principal: PrincipalDep, scripting: ScriptingDep) -> Response:
    """What the execution answered (X-Script-Status-Code: the status it answered with)."""
    answer = await scripting.execution(principal, scriptId, executionId)
    response = answer_response(answer, status_code=200)
    response.headers["X-Script-Status-Code"] = str(answer.status_code)
    return response
