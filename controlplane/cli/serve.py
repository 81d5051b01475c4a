"""``controlplane serve`` (migrate, start the platform, serve the API and its side listeners) and
``controlplane migrate``."""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
from typing import Any

import click

from controlplane.cli.logs import setup_logging
from controlplane.core.settings import Settings
from controlplane.db.migrate import upgrade


@click.command()
@click.option("--host", default=None, help="Overrides CP_HOST.")
@click.option("--port", type=int, default=None, help="Overrides CP_PORT.")
def serve(host: str | None, port: int | None) -> None:
    """Migrate the database, start the platform and serve the API until Ctrl-C."""
    overrides: dict[str, Any] = {}
    if host:
        overrides["host"] = host
    if port:
        overrides["port"] = port
    settings = Settings(**overrides)
    setup_logging(settings.log_level)
    upgrade(settings.database_url)
    try:
        asyncio.run(_serve(settings))
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C after a clean shutdown
        pass


async def _serve(settings: Settings) -> None:
    import uvicorn

    from controlplane.main import create_app
    from controlplane.services.platform import Platform

    extra_servers: list[asyncio.Task[None]] = []

    def _bind(host: str, port: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
        sock.setblocking(False)
        return sock

    async def on_started(platform: Platform) -> None:
        app = server.config.app
        for host, port in platform.backend.extra_listen_addresses():
            if host == settings.host and port == settings.port:
                continue
            cfg = uvicorn.Config(
                app, lifespan="off", log_config=None, h11_max_incomplete_event_size=settings.max_header_bytes + 65536
            )
            extra = uvicorn.Server(cfg)
            extra_servers.append(asyncio.create_task(extra.serve(sockets=[_bind(host, port)])))
            logging.getLogger("controlplane").info("also listening on %s:%d for runs with network access", host, port)
        if settings.metrics_port is not None:
            metrics_app = _metrics_app(settings)
            cfg = uvicorn.Config(metrics_app, lifespan="off", log_config=None, log_level="warning")
            extra_servers.append(
                asyncio.create_task(uvicorn.Server(cfg).serve(sockets=[_bind(settings.host, settings.metrics_port)]))
            )
        token = platform.bootstrap_token
        note = (
            f"generated and saved in {settings.data_dir}/admin-token" if platform.bootstrap_generated else "bootstrap"
        )
        print(
            f"\ncontrolplane is serving on {settings.base_url}\n"
            f"tenant {settings.bootstrap_tenant!r}, admin token ({note}):\n\n    {token}\n\n"
            f"try: curl -H 'Authorization: Bearer {token}' {settings.base_url}/api/v1/automations\n",
            file=sys.stderr,
            flush=True,
        )

    app = create_app(settings, on_started=on_started)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        log_level=settings.log_level,
        access_log=False,
        h11_max_incomplete_event_size=settings.max_header_bytes + 65536,
        timeout_graceful_shutdown=10,
    )
    server = uvicorn.Server(config)
    try:
        await server.serve()
    finally:
        for task in extra_servers:
            task.cancel()
        await asyncio.gather(*extra_servers, return_exceptions=True)


def _metrics_app(settings: Settings) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from controlplane.api.routes.health import metrics_response
    from controlplane.core.errors import Unauthorized

    async def endpoint(request: Request) -> Response:
        try:
            return metrics_response(request, settings.metrics_token)
        except Unauthorized:
            return Response("unauthorized\n", status_code=401)

    return Starlette(routes=[Route("/metrics", endpoint)])


@click.command()
def migrate() -> None:
    """Apply database migrations (Alembic) up to the newest."""
    settings = Settings()
    setup_logging(settings.log_level)
    upgrade(settings.database_url)
    click.echo("database is up to date")


COMMANDS = (serve, migrate)
