"""The ASGI application: which router is mounted where (one table, ``MOUNTS``), the error handlers
(api/errors.py), the request middleware (api/middleware.py) and the platform's lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute

from controlplane import __version__
from controlplane.api.errors import install_error_handlers
from controlplane.api.middleware import RequestContext
from controlplane.api.routes import (
    automations,
    health,
    notifications,
    run_responses,
    runs,
    spaces,
    tokens,
    usage,
    variables,
)
from controlplane.core.settings import Settings
from controlplane.dialects.jobs import routes as jobs
from controlplane.dialects.processes import routes as processes
from controlplane.dialects.rules import routes as rules
from controlplane.dialects.scripting import routes as scripting
from controlplane.services.platform import Platform

NATIVE_PREFIXES = ("/api/v1/automations", "/api/workflows/automations")


@dataclass(frozen=True)
class OperationId:
    """Operation ids of a router mounted under several prefixes: unique per prefix in the OpenAPI document."""

    tag: str

    def __call__(self, route: APIRoute) -> str:
        return f"{self.tag}_{route.name}"


def native_tag(prefix: str) -> str:
    return "workflows" if "workflows" in prefix else "v1"


def path_tag(prefix: str) -> str:
    return prefix.strip("/").replace("/", "_")


@dataclass(frozen=True)
class Mount:
    router: APIRouter
    prefixes: tuple[str, ...]
    tag: Callable[[str], str] | None = None  # operation ids per prefix when there are several


# Order matters where paths overlap: GET .../usage before GET .../{id}.
MOUNTS: tuple[Mount, ...] = (
    Mount(usage.router, NATIVE_PREFIXES, native_tag),
    Mount(runs.signed_router, NATIVE_PREFIXES, native_tag),  # signed export/debug links: no bearer token
    Mount(automations.router, NATIVE_PREFIXES, native_tag),
    Mount(runs.router, NATIVE_PREFIXES, native_tag),
    Mount(run_responses.router, NATIVE_PREFIXES, native_tag),
    Mount(tokens.router, ("/api/v1/tokens",)),
    Mount(spaces.router, ("/api/v1/spaces",)),
    Mount(health.router, ("",)),
    Mount(scripting.router, (scripting.PREFIX,)),  # seed 002
    Mount(jobs.router, (jobs.PREFIX,)),  # seed 000
    Mount(processes.router, (processes.PREFIX,)),  # seed 001
    Mount(notifications.router, ("/api/v1/notifications",)),
    Mount(rules.router, rules.PREFIXES, path_tag),  # seed 003
    Mount(variables.variables_router, ("/api/v1/variables",)),
    Mount(variables.secrets_router, ("/api/v1/secrets",)),
)
# What the dialects add to a running platform (e.g. the processes jobs' notifier), attached at start.
EXTENSIONS: tuple[Callable[[Platform], object], ...] = (processes.attach,)


def mount_all(app: FastAPI) -> None:
    for mount in MOUNTS:
        for prefix in mount.prefixes:
            if mount.tag is None:
                app.include_router(mount.router, prefix=prefix)
            else:
                ids = OperationId(mount.tag(prefix))
                app.include_router(mount.router, prefix=prefix, generate_unique_id_function=ids)


def _declare_extra_schemas(app: FastAPI) -> None:
    """Bodies a route parses itself (JSON or raw, e.g. POST .../runs) still get their schema in OpenAPI."""
    from fastapi.openapi.utils import get_openapi

    from controlplane.core.schemas.runs import RunCreate

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            schemas = doc.setdefault("components", {}).setdefault("schemas", {})
            extra = RunCreate.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
            schemas.update(extra.pop("$defs", {}))
            schemas["RunCreate"] = extra
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(
    settings: Settings | None = None,
    *,
    platform: Platform | None = None,
    on_started: Callable[[Platform], Awaitable[None] | None] | None = None,
) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = platform is None
        p = platform or await Platform.start(settings)
        for extend in EXTENSIONS:
            extend(p)
        app.state.platform = p
        if on_started is not None:
            result = on_started(p)
            if result is not None:
                await result
        try:
            yield
        finally:
            if owned:
                await p.close()

    app = FastAPI(
        title="controlplane",
        version=__version__,
        description="Runs customers' scripts in hardened, single-use sandboxes. Native API: seed 004's "
        "automations resource model, extended with code, runtime, args, env, resources, network, "
        "exitCode, stdout and stderr.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    if platform is not None:
        app.state.platform = platform
        for extend in EXTENSIONS:
            extend(platform)
    install_error_handlers(app)
    mount_all(app)
    _declare_extra_schemas(app)
    app.add_middleware(RequestContext, settings=settings)
    return app
