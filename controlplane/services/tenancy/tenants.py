"""Tenants, users and tokens: bootstrap on start, authenticate a bearer token, issue new tokens."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from controlplane.core.auth import Permission, Principal, hash_token
from controlplane.core.errors import Code, Forbidden, NotFound, Unauthorized, ValidationFailed
from controlplane.core.settings import Settings
from controlplane.core.states import Role
from controlplane.db.session import transaction
from controlplane.db.tables import utcnow
from controlplane.store import tenants as store

log = logging.getLogger("controlplane.tenancy")
TOKEN_FILE = "admin-token"


async def bootstrap(settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> tuple[str, str, bool]:
    """Make sure the bootstrap tenant and its admin exist with a usable token.

    Returns (tenant_id, token, generated). With CP_BOOTSTRAP_TOKEN that value is the admin token; without
    it a token is generated once and kept in DATA_DIR/admin-token (mode 0600) so a restart shows it again.
    """
    token_file = Path(settings.data_dir) / TOKEN_FILE
    async with transaction(sessions) as s:
        tenant = await store.ensure_tenant(s, settings.bootstrap_tenant)
        admin = await store.ensure_user(s, tenant.id, settings.bootstrap_user, Role.ADMIN.value)
        wanted = settings.bootstrap_token
        generated = False
        if wanted is None and token_file.exists():
            candidate = token_file.read_text().strip()
            row = await store.find_token_by_hash(s, hash_token(candidate))
            if row is not None and row.tenant_id == tenant.id and row.revoked_at is None:
                wanted = candidate
        if wanted is not None:
            row = await store.find_token_by_hash(s, hash_token(wanted))
            if row is None:
                await store.create_token(
                    s,
                    tenant_id=tenant.id,
                    user_id=admin.id,
                    role=Role.ADMIN.value,
                    description="bootstrap",
                    plaintext=wanted,
                )
            elif row.tenant_id != tenant.id:
                raise ValidationFailed("CP_BOOTSTRAP_TOKEN already belongs to another tenant")
            token = wanted
        else:
            _, token = await store.create_token(
                s, tenant_id=tenant.id, user_id=admin.id, role=Role.ADMIN.value, description="bootstrap"
            )
            generated = True
            token_file.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(token + "\n")
        return tenant.id, token, generated


async def authenticate(sessions: async_sessionmaker[AsyncSession], header: str | None) -> Principal:
    if not header:
        raise Unauthorized("send 'Authorization: Bearer <token>'")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header must be 'Bearer <token>'")
    async with sessions() as s:
        owner = await store.resolve_token(s, hash_token(token.strip()))
    if owner is None:
        raise Unauthorized("the token is not valid")
    row = owner.token
    if row.revoked_at is not None:
        raise Unauthorized("the token has been revoked")
    if row.expires_at is not None and row.expires_at <= utcnow():
        raise Unauthorized("the token has expired")
    return Principal(
        tenant_id=owner.tenant.id,
        tenant_name=owner.tenant.name,
        user_id=owner.user.id,
        role=Role.parse(row.role),
        token_id=row.id,
        run_id=row.run_id,
    )


async def issue_token(
    sessions: async_sessionmaker[AsyncSession],
    *,
    tenant: str,
    user: str,
    role: str,
    description: str = "",
    create_tenant: bool = False,
) -> tuple[str, str, str, str]:
    """Create a token for ``user`` in ``tenant`` (creating the user). Returns (token, token id, user id, tenant id)."""
    try:
        parsed = Role.parse(role)
    except ValueError:
        raise ValidationFailed(f"role must be one of {', '.join(r.value for r in Role)}") from None
    async with transaction(sessions) as s:
        row = await store.get_tenant_by_name(s, tenant)
        if row is None:
            if not create_tenant:
                raise NotFound(f"tenant {tenant!r} does not exist")
            row = await store.ensure_tenant(s, tenant)
        account = await store.ensure_user(s, row.id, user, parsed.value)
        if account.role != parsed.value:
            account.role = parsed.value
        token_row, token = await store.create_token(
            s, tenant_id=row.id, user_id=account.id, role=parsed.value, description=description
        )
        return token, token_row.id, account.id, row.id


async def issue_token_for(
    sessions: async_sessionmaker[AsyncSession], principal: Principal, *, user: str, role: str, description: str
) -> tuple[str, str, str, str]:
    """An admin issues a token within their own tenant (never another one)."""
    principal.require(Permission.ADMIN)
    if principal.run_id is not None:
        raise Forbidden("a run's token cannot issue tokens")
    return await issue_token(sessions, tenant=principal.tenant_name, user=user, role=role, description=description)


async def configure_tenant(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    *,
    tenant: str,
    limits: dict[str, float | int] | None = None,
    dsn: str | None = None,
    archive_retention_days: int | None = None,
    run_retention_days: int | None = None,
    create: bool = False,
) -> dict[str, object]:
    """Set a tenant's maxima (maxCpus, maxMemoryMb, maxPids: at most the global ones), DSN and ARCHIVE
    retention. Returns the tenant's settings afterwards."""
    globals_ = {"maxCpus": settings.max_cpus, "maxMemoryMb": settings.max_memory_mb, "maxPids": settings.max_pids}
    problems = [
        f"{key} {value} is above the platform's maximum of {globals_[key]}"
        for key, value in (limits or {}).items()
        if key in globals_ and value > globals_[key]
    ]
    unknown = sorted(set(limits or {}) - set(globals_))
    if unknown:
        problems.append(f"unknown limits: {', '.join(unknown)}")
    if problems:
        raise ValidationFailed("; ".join(problems), code=Code.LIMIT_EXCEEDED)
    async with transaction(sessions) as s:
        row = await store.get_tenant_by_name(s, tenant)
        if row is None:
            if not create:
                raise NotFound(f"tenant {tenant!r} does not exist")
            row = await store.ensure_tenant(s, tenant)
        current = dict(row.settings or {})
        if limits:
            current["limits"] = {**current.get("limits", {}), **limits}
        if dsn is not None:
            current["dsn"] = dsn
        if archive_retention_days is not None:
            current["archiveRetentionDays"] = archive_retention_days
        if run_retention_days is not None:
            current["runRetentionDays"] = run_retention_days
        row.settings = current
        return current
