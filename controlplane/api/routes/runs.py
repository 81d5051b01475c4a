"""Runs of an automation: create (sync or async), list, get, logs (stored or followed), artifacts, export, debug."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError

from controlplane.api.deps import PlatformDep, PrincipalDep, base_url, page_links
from controlplane.api.downloads import content_disposition
from controlplane.core.errors import BadRequest, Code, ValidationFailed
from controlplane.core.filters import ListQuery
from controlplane.core.schemas.runs import (
    ArtifactPublic,
    ExportLinkPublic,
    RunCreate,
    RunDebugPublic,
    RunPublic,
    parse_context,
)
from controlplane.core.schemas.wire import ErrorBody, Page
from controlplane.services.runs.exports import DEBUG, EXPORT
from controlplane.services.runs.service import encode_input

ERRORS = {code: {"model": ErrorBody} for code in (400, 401, 403, 404, 409, 413, 422, 429, 500, 503)}
router = APIRouter(tags=["runs"], responses=ERRORS)  # type: ignore[arg-type]

RUN_BODY: dict[str, Any] = {
    "requestBody": {
        "description": "A JSON RunCreate; or any other content type, which becomes the run's input as is "
        "(context and args then come from the query string).",
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/RunCreate"}},
            "*/*": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


@router.post(
    "/{id}/runs",
    status_code=201,
    response_model=RunPublic,
    responses={200: {"model": RunPublic, "description": "context api_sync: the finished run"}},
    openapi_extra=RUN_BODY,
)
async def create_run(
    id: str,
    request: Request,
    platform: PlatformDep,
    principal: PrincipalDep,
    context: Annotated[str | None, Query(description="For non-JSON bodies: api_sync or api_async.")] = None,
    args: Annotated[list[str] | None, Query(description="For non-JSON bodies: the script's arguments.")] = None,
) -> Response:
    raw = await request.body()
    ctype = request.headers.get("content-type", "")
    if ctype.split(";")[0].strip().lower() in ("application/json", "") and raw.strip():
        try:
            body = RunCreate.model_validate(json.loads(raw))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:  # not JSON, or not UTF-8 at all
            raise BadRequest(f"the body is not valid JSON: {exc}", code=Code.INVALID_JSON) from None
        except ValidationError as exc:
            raise ValidationFailed(_first_errors(exc)) from None
        data, input_type = encode_input(body.input), "application/json" if body.input is not None else None
    else:
        try:
            ctx = parse_context(context or "api_async").value
        except ValueError as exc:
            raise ValidationFailed(str(exc)) from None
        body = RunCreate(context=ctx, args=args)
        data, input_type = raw, ctype or None
    run_context = parse_context(body.context)
    run = await platform.runs.submit(
        principal,
        id,
        context=run_context,
        args=body.args,
        input_data=data,
        input_content_type=input_type,
        title=body.title,
    )
    if run_context.synchronous:
        await platform.runs.wait(run)
    public = await platform.runs.get(principal, id, run.id, base_url=base_url(request))
    return JSONResponse(
        public.model_dump(mode="json", by_alias=True), status_code=200 if run_context.synchronous else 201
    )


def _first_errors(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(x) for x in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()[:10])


@router.get("/{id}/runs", response_model=Page[RunPublic])
async def list_runs(
    id: str,
    request: Request,
    platform: PlatformDep,
    principal: PrincipalDep,
    filter: Annotated[
        str | None, Query(description='SCIM-style on status, context, startTime, title, ...: status eq "failed"')
    ] = None,
    sort: Annotated[str | None, Query(description="id, status, startTime, createdAt with +/- prefix.")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    page: Annotated[str | None, Query(description="Cursor from links.next / links.prev.")] = None,
    query: Annotated[
        str | None, Query(description="Seed 004's example spells sort this way (?query=-startTime): the same as sort.")
    ] = None,
) -> Page[RunPublic]:
    asked = ListQuery(filter=filter, sort=sort or query, limit=limit, cursor=page)
    items, result = await platform.runs.search(principal, id, asked, base_url=base_url(request))
    return Page[RunPublic](data=items, links=page_links(request, result))


@router.get("/{id}/runs/{runId}", response_model=RunPublic)
async def get_run(id: str, runId: str, request: Request, platform: PlatformDep, principal: PrincipalDep) -> RunPublic:
    return await platform.runs.get(principal, id, runId, base_url=base_url(request))


@router.post("/{id}/runs/{runId}/actions/stop", status_code=204, response_class=Response)
async def stop_run(id: str, runId: str, platform: PlatformDep, principal: PrincipalDep) -> Response:
    """Queued: cancelled, never started. Starting or running: 'must stop', then 'stopped' once its sandbox is
    killed and removed (partial logs kept). Idempotent; a run that already ended is a 409."""
    await platform.runs.stop(principal, id, runId)
    return Response(status_code=204)


@router.post("/{id}/runs/{runId}/actions/retry", status_code=204, response_class=Response)
async def retry_run(id: str, runId: str, request: Request, platform: PlatformDep, principal: PrincipalDep) -> Response:
    """A new run of the same automation version with the same args and input (retryOf, context retry).
    204 as seed 004 says; the new run is in the Location header (and X-Run-Id)."""
    run = await platform.runs.retry(principal, id, runId)
    location = f"{base_url(request)}{_mount(request, id)}/{id}/runs/{run.id}"
    return Response(status_code=204, headers={"Location": location, "X-Run-Id": run.id})


@router.get(
    "/{id}/runs/{runId}/logs",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "The stored text of the stream."}},
)
async def get_logs(
    id: str,
    runId: str,
    platform: PlatformDep,
    principal: PrincipalDep,
    stream: Annotated[str, Query(pattern="^(stdout|stderr)$")] = "stdout",
    follow: Annotated[bool, Query(description="Stream while the run is live; ends when it ends.")] = False,
) -> Response:
    if follow:
        chunks = await platform.runs.follow_log(principal, id, runId, stream)
        return StreamingResponse(chunks, media_type="text/plain; charset=utf-8")
    data = await platform.runs.read_log(principal, id, runId, stream)
    return Response(data, media_type="text/plain; charset=utf-8")


@router.get("/{id}/runs/{runId}/artifacts", response_model=list[ArtifactPublic])
async def list_artifacts(
    id: str, runId: str, request: Request, platform: PlatformDep, principal: PrincipalDep
) -> list[ArtifactPublic]:
    run = await platform.runs.get(principal, id, runId, base_url=base_url(request))
    return run.artifacts


@router.get("/{id}/runs/{runId}/artifacts/{path:path}", response_class=Response)
async def get_artifact(id: str, runId: str, path: str, platform: PlatformDep, principal: PrincipalDep) -> Response:
    art = await platform.runs.artifact(principal, id, runId, path)
    headers = {"Content-Disposition": content_disposition(path.rsplit("/", 1)[-1]), "X-Content-SHA256": art.sha256}
    return Response(art.data, media_type=art.content_type, headers=headers)


# --- export and debug (seed 004) ----------------------------------------------------------------------


def _mount(request: Request, automation_id: str) -> str:
    """The prefix this request came in on: /api/v1/automations or /api/workflows/automations."""
    path = request.url.path
    return path[: max(path.find(f"/{automation_id}/runs/"), 0)]


def _link_prefix(request: Request, platform: PlatformDep, automation_id: str) -> str:
    """Base URL plus the prefix this request came in on, for links handed out (public URL when set)."""
    return (platform.settings.public_url or base_url(request)).rstrip("/") + _mount(request, automation_id)


@router.post("/{id}/runs/{runId}/actions/export", response_model=ExportLinkPublic)
async def export_run(
    id: str, runId: str, request: Request, platform: PlatformDep, principal: PrincipalDep
) -> ExportLinkPublic:
    """A signed URL, valid CP_EXPORT_URL_TTL_SECONDS and usable without a bearer token, from which the run's
    details (run.json), logs (stdout.log, stderr.log) and artifacts (artifacts/...) download as one zip."""
    url = await platform.exports.link(principal, EXPORT, id, runId, prefix=_link_prefix(request, platform, id))
    return ExportLinkPublic(url=url)


def _wants_json(accept: str) -> bool:
    return "application/json" in accept and "text/plain" not in accept


@router.get(
    "/{id}/runs/{runId}/debug",
    response_class=Response,
    responses={
        200: {
            "description": "The debug URL (signed, time-limited, no bearer token needed) as text; as a JSON "
            "string with Accept: application/json.",
            "content": {
                "text/plain": {"schema": {"type": "string"}},
                "application/json": {"schema": {"type": "string"}},
            },
        }
    },
)
async def debug_run(id: str, runId: str, request: Request, platform: PlatformDep, principal: PrincipalDep) -> Response:
    """The URL of the run's debug record: the run, its automation and its timeline (created, queued, claimed,
    started, stopping, ended) with the time spent in each phase."""
    url = await platform.exports.link(principal, DEBUG, id, runId, prefix=_link_prefix(request, platform, id))
    if _wants_json(request.headers.get("accept", "")):
        return JSONResponse(url)
    return Response(url, media_type="text/plain; charset=utf-8")


# Signed links: no bearer token (a browser, a colleague), so this router has no bearer check;
# the signature names the automation and run and its expiry (403 when it does not match, 410 when expired).
SIGNED_ERRORS: dict[int | str, dict[str, Any]] = {c: {"model": ErrorBody} for c in (403, 404, 410, 500, 503)}
signed_router = APIRouter(tags=["runs"], responses=SIGNED_ERRORS)
Expires = Annotated[str | None, Query(description="Unix seconds after which the link is refused (410).")]
Signature = Annotated[str | None, Query(description="HMAC-SHA256 of the link; any change is refused (403).")]


@signed_router.get(
    "/{id}/runs/{runId}/export",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/zip": {}}, "description": "The run's zip archive, streamed."}},
)
async def download_export(
    id: str, runId: str, request: Request, platform: PlatformDep, expires: Expires = None, signature: Signature = None
) -> StreamingResponse:
    platform.exports.verify(EXPORT, id, runId, expires, signature)
    chunks = await platform.exports.archive(id, runId, base_url=base_url(request))
    return StreamingResponse(
        chunks,
        media_type="application/zip",
        headers={"Content-Disposition": content_disposition(f"run-{runId}.zip"), "Cache-Control": "no-store"},
    )


@signed_router.get("/{id}/runs/{runId}/debug/log", response_model=RunDebugPublic)
async def debug_record(
    id: str, runId: str, request: Request, platform: PlatformDep, expires: Expires = None, signature: Signature = None
) -> RunDebugPublic:
    platform.exports.verify(DEBUG, id, runId, expires, signature)
    return await platform.exports.record(id, runId, base_url=base_url(request))
