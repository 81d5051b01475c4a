"""``controlplane`` command line: serve, migrate, tokens create, automations sync, run, config-table."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import click
import httpx

from controlplane.core.settings import Settings, config_table
from controlplane.db.migrate import upgrade

FINAL = {"finished", "finished with warnings", "failed", "stopped", "exceeded limit", "not started"}


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@click.group()
def main() -> None:
    """Control plane for running scripts in hardened, single-use sandboxes."""


@main.command()
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
    _setup_logging(settings.log_level)
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


@main.command()
def migrate() -> None:
    """Apply database migrations (Alembic) up to the newest."""
    settings = Settings()
    _setup_logging(settings.log_level)
    upgrade(settings.database_url)
    click.echo("database is up to date")


@main.group()
def tokens() -> None:
    """Manage API tokens."""


@tokens.command("create")
@click.option("--tenant", required=True)
@click.option("--user", required=True)
@click.option("--role", required=True, type=click.Choice(["admin", "developer", "operator", "viewer"]))
@click.option("--description", default="")
@click.option("--create-tenant", is_flag=True, help="Create the tenant if it does not exist.")
def tokens_create(tenant: str, user: str, role: str, description: str, create_tenant: bool) -> None:
    """Create a token and print it once (only its hash is stored)."""
    from controlplane.core.errors import ControlPlaneError
    from controlplane.db.session import create_engine, session_factory
    from controlplane.services.tenancy import tenants as tenancy

    settings = Settings()
    upgrade(settings.database_url)

    async def go() -> str:
        engine = create_engine(settings.database_url)
        try:
            token, *_ = await tenancy.issue_token(
                session_factory(engine),
                tenant=tenant,
                user=user,
                role=role,
                description=description,
                create_tenant=create_tenant,
            )
            return token
        finally:
            await engine.dispose()

    try:
        click.echo(asyncio.run(go()))
    except ControlPlaneError as exc:
        raise click.ClickException(exc.detail or exc.title) from None


@main.group()
def tenants() -> None:
    """Manage tenants."""


@tenants.command("configure")
@click.argument("tenant")
@click.option("--max-cpus", type=float, default=None, help="Largest cpus an automation may ask for.")
@click.option("--max-memory-mb", type=int, default=None, help="Largest memoryMb an automation may ask for.")
@click.option("--max-pids", type=int, default=None, help="Largest pids an automation may ask for.")
@click.option("--dsn", default=None, help="Value of JETQUERY_DSN for this tenant's runs.")
@click.option("--archive-retention-days", type=int, default=None, help="ARCHIVE files older than this are deleted.")
@click.option("--run-retention-days", type=int, default=None, help="Runs older than this are deleted (usage stays).")
@click.option("--create", is_flag=True, help="Create the tenant if it does not exist.")
def tenants_configure(
    tenant: str,
    max_cpus: float | None,
    max_memory_mb: int | None,
    max_pids: int | None,
    dsn: str | None,
    archive_retention_days: int | None,
    run_retention_days: int | None,
    create: bool,
) -> None:
    """Set a tenant's resource maxima, DSN and ARCHIVE retention; prints its settings."""
    import json

    from controlplane.core.errors import ControlPlaneError
    from controlplane.db.session import create_engine, session_factory
    from controlplane.services.tenancy import tenants as tenancy

    settings = Settings()
    upgrade(settings.database_url)
    limits: dict[str, float | int] = {
        k: v for k, v in (("maxCpus", max_cpus), ("maxMemoryMb", max_memory_mb), ("maxPids", max_pids)) if v is not None
    }

    async def go() -> dict[str, object]:
        engine = create_engine(settings.database_url)
        try:
            return await tenancy.configure_tenant(
                session_factory(engine),
                settings,
                tenant=tenant,
                limits=limits,
                dsn=dsn,
                archive_retention_days=archive_retention_days,
                run_retention_days=run_retention_days,
                create=create,
            )
        finally:
            await engine.dispose()

    try:
        shown = asyncio.run(go())
    except ControlPlaneError as exc:
        raise click.ClickException(exc.detail or exc.title) from None
    if "dsn" in shown:
        shown["dsn"] = "***"
    click.echo(json.dumps(shown, indent=2, sort_keys=True))


@main.group()
def automations() -> None:
    """Manage automations."""


@automations.command("sync")
@click.option(
    "--dir", "directory", type=click.Path(path_type=Path), default=None, help="Defaults to CP_AUTOMATIONS_DIR."
)
@click.option("--tenant", default=None, help="Defaults to CP_BOOTSTRAP_TENANT.")
def automations_sync(directory: Path | None, tenant: str | None) -> None:
    """Load an automations directory into a tenant (idempotent)."""
    from controlplane.core.auth import Principal
    from controlplane.core.states import Role
    from controlplane.db.session import create_engine, session_factory
    from controlplane.services.automations import catalog
    from controlplane.services.automations.service import AutomationService
    from controlplane.services.tenancy import tenants as tenancy
    from controlplane.store import tenants as tenant_store

    settings = Settings()
    upgrade(settings.database_url)
    target = directory or settings.automations_dir
    tenant_name = tenant or settings.bootstrap_tenant

    async def go() -> catalog.SyncReport:
        engine = create_engine(settings.database_url)
        sessions = session_factory(engine)
        try:
            if tenant_name == settings.bootstrap_tenant:
                await tenancy.bootstrap(settings, sessions)
            async with sessions() as s, s.begin():
                row = await tenant_store.get_tenant_by_name(s, tenant_name)
                if row is None:
                    raise click.ClickException(f"tenant {tenant_name!r} does not exist")
                admin = await tenant_store.ensure_user(s, row.id, settings.bootstrap_user, Role.ADMIN.value)
                principal = Principal(row.id, row.name, admin.id, Role.ADMIN, token_id="cli")
            return await catalog.sync(AutomationService(settings, sessions), principal, target)
        finally:
            await engine.dispose()

    report = asyncio.run(go())
    click.echo(report.summary())
    if report.errors:
        sys.exit(1)


# Options go before NAME; everything after it is the script's, verbatim (A002's own --wait is not ours).
@main.command("run", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("name")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.option("--wait/--no-wait", default=True, help="Follow the run and exit with its exit code (default).")
@click.option("--input", "input_text", default=None, help="Input for the script's stdin (JSON if it parses).")
@click.option("--url", envvar="CP_URL", default=None, help="API base URL (CP_URL; default http://CP_HOST:CP_PORT).")
@click.option("--token", envvar="CP_TOKEN", default=None, help="Bearer token (CP_TOKEN; default DATA_DIR/admin-token).")
def run_cmd(
    name: str, args: tuple[str, ...], wait: bool, input_text: str | None, url: str | None, token: str | None
) -> None:
    """Start automation NAME with ARGS; with --wait show progress, stream its output, exit with its code.

    Options come before NAME: every argument after NAME is passed to the script as it is."""
    settings = Settings()
    base = (url or settings.base_url).rstrip("/")
    if token is None:
        token_file = Path(settings.data_dir) / "admin-token"
        if not token_file.exists():
            raise click.ClickException("no token: pass --token or set CP_TOKEN")
        token = token_file.read_text().strip()
    sys.exit(_run_remote(base, token, name, list(args), wait=wait, input_text=input_text))


def _run_remote(base: str, token: str, name: str, args: list[str], *, wait: bool, input_text: str | None) -> int:
    import json

    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, headers=headers, timeout=httpx.Timeout(30.0, read=None)) as client:
        listing = client.get("/api/v1/automations", params={"filter": f'name eq "{name}"', "limit": 1})
        _check(listing)
        found = listing.json()["data"]
        if not found:
            raise click.ClickException(f"no automation named {name!r}")
        automation_id = found[0]["id"]
        body: dict[str, Any] = {"context": "api_async", "args": args}
        if input_text is not None:
            try:
                body["input"] = json.loads(input_text)
            except ValueError:
                body["input"] = input_text
        created = client.post(f"/api/v1/automations/{automation_id}/runs", json=body)
        _check(created)
        run = created.json()
        run_path = f"/api/v1/automations/{automation_id}/runs/{run['id']}"
        click.echo(f"run {run['id']} {run['status']}", err=True)
        if not wait:
            click.echo(run["id"])
            return 0
        last = run["status"]
        while run["status"] in ("queued", "starting"):
            time.sleep(0.2)
            run = _check(client.get(run_path)).json()
            if run["status"] != last:
                click.echo(f"run {run['id']} {run['status']}", err=True)
                last = run["status"]
        interrupted = False

        def stop(*_: Any) -> None:
            nonlocal interrupted
            interrupted = True
            raise KeyboardInterrupt

        signal.signal(signal.SIGINT, stop)
        try:
            with client.stream("GET", f"{run_path}/logs", params={"stream": "stdout", "follow": "true"}) as resp:
                _check(resp)
                for chunk in resp.iter_bytes():
                    sys.stdout.buffer.write(chunk)
                    sys.stdout.buffer.flush()
        except KeyboardInterrupt:
            click.echo(f"\ndetached; the run continues: {base}{run_path}", err=True)
            return 130
        run = _check(client.get(run_path)).json()
        while run["status"] not in FINAL:
            time.sleep(0.2)
            run = _check(client.get(run_path)).json()
        stderr = _check(client.get(f"{run_path}/logs", params={"stream": "stderr"})).content
        sys.stderr.buffer.write(stderr)
        sys.stderr.flush()
        click.echo(f"run {run['id']} {run['status']} exitCode={run['exitCode']}", err=True)
        for e in run.get("error", []):
            click.echo(f"  {e.get('code')}: {e.get('title')} {e.get('detail', '')}", err=True)
        if run["exitCode"] is not None:
            return int(run["exitCode"])
        return 124 if run["status"] == "exceeded limit" else 1


def _check(resp: httpx.Response) -> httpx.Response:
    if resp.status_code >= 400:
        resp.read()
        try:
            errors = resp.json().get("errors", [])
            text = "; ".join(f"{e.get('code')}: {e.get('detail') or e.get('title')}" for e in errors)
        except ValueError:
            text = resp.text[:500]
        raise click.ClickException(f"HTTP {resp.status_code}: {text}")
    return resp


@main.group("secrets")
def secrets_group() -> None:
    """Tenant secrets (the keys are CP_SECRETS_KEYS)."""


@secrets_group.command("re-encrypt")
def secrets_re_encrypt() -> None:
    """Store every tenant's secrets under the first key of CP_SECRETS_KEYS (after putting a new key first)."""
    from controlplane.core.errors import ControlPlaneError
    from controlplane.db.session import create_engine, session_factory
    from controlplane.services.tenancy.secrets import SecretService, keyring

    settings = Settings()
    _setup_logging("warning")
    upgrade(settings.database_url)

    async def go() -> int:
        engine = create_engine(settings.database_url)
        try:
            return await SecretService(settings, session_factory(engine)).re_encrypt()
        finally:
            await engine.dispose()

    try:
        count = asyncio.run(go())
    except ControlPlaneError as exc:
        raise click.ClickException(exc.detail or exc.title) from None
    click.echo(f"{count} secret(s) re-encrypted; all are under key {keyring(settings).current_id}")


@main.command("config-table")
def config_table_cmd() -> None:
    """Print the configuration table (Markdown) the README embeds."""
    click.echo(config_table(), nl=False)


if __name__ == "__main__":
    main()
