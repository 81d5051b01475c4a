"""Administration straight on the database: ``tokens create``, ``tenants configure``, ``automations sync``,
``secrets re-encrypt`` and ``config-table``. Each migrates first, so it works on a fresh database."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from controlplane.cli.logs import setup_logging
from controlplane.core.settings import Settings, config_table
from controlplane.db.migrate import upgrade


@click.group()
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


@click.group()
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


@click.group()
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


@click.group("secrets")
def secrets_group() -> None:
    """Tenant secrets (the keys are CP_SECRETS_KEYS)."""


@secrets_group.command("re-encrypt")
def secrets_re_encrypt() -> None:
    """Store every tenant's secrets under the first key of CP_SECRETS_KEYS (after putting a new key first)."""
    from controlplane.core.errors import ControlPlaneError
    from controlplane.db.session import create_engine, session_factory
    from controlplane.services.tenancy.secrets import SecretService, keyring

    settings = Settings()
    setup_logging("warning")
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


@click.command("config-table")
def config_table_cmd() -> None:
    """Print the configuration table (Markdown) the README embeds."""
    click.echo(config_table(), nl=False)


COMMANDS = (tokens, tenants, automations, secrets_group, config_table_cmd)
