"""/healthz (the process answers), /readyz (database and engine reachable) and /metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from controlplane.api.deps import PlatformDep
from controlplane.core.auth import same_secret
from controlplane.core.errors import NotFound, Unauthorized
from controlplane.core.metrics import REGISTRY

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(platform: PlatformDep) -> JSONResponse:
    checks = await platform.readiness()
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks}, status_code=200 if ready else 503
    )


def metrics_response(request: Request, token: str | None) -> Response:
    if token:
        given = request.headers.get("authorization", "").partition(" ")[2]
        if not given or not same_secret(given, token):
            raise Unauthorized("/metrics needs the metrics token")
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request, platform: PlatformDep) -> Response:
    if platform.settings.metrics_port is not None:
        raise NotFound(f"metrics are served on port {platform.settings.metrics_port}")
    return metrics_response(request, platform.settings.metrics_token)
