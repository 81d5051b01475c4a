"""A run's own HTTP answer in the native API: what its script wrote into $JETQUERY_OUTPUTS/.response/
(status, content-type, body), or its stdout as text/plain when it wrote none. The scripting dialect
(/scripting) answers its callers with the same thing."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from controlplane.api.deps import PlatformDep, PrincipalDep
from controlplane.core.schemas.wire import ErrorBody
from controlplane.services.runs.responses import RunResponses

ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (401, 403, 404, 409)}
router = APIRouter(tags=["runs"], responses=ERRORS)


@router.get(
    "/{id}/runs/{runId}/response",
    response_class=Response,
    responses={
        200: {
            "description": "The body with the script's content type; X-Script-Status-Code is the status it "
            "answered with, X-Response-Source 'script' (outputs/.response/) or 'stdout'."
        }
    },
)
async def get_run_response(id: str, runId: str, platform: PlatformDep, principal: PrincipalDep) -> Response:
    """409 while the run is unfinished (RUN_NOT_FINISHED) and when it ended without an answer to give
    (RUN_HAS_NO_RESPONSE: failed, timed out, stopped, or its answer was invalid)."""
    service = RunResponses(platform.settings, platform.sessions, platform.automations)
    answer = await service.get(principal, id, runId)
    headers = {
        "content-type": answer.content_type,
        "X-Script-Status-Code": str(answer.status_code),
        "X-Response-Source": answer.source,
    }
    return Response(answer.body, headers=headers)
