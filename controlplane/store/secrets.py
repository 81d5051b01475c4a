"""A tenant's variables and secrets (one table; secrets hold only ciphertext)."""

from __future__ import annotations

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from controlplane.db.tables import TenantVariable


async def list_for(session: AsyncSession, tenant_id: str, *, secret: bool | None = None) -> list[TenantVariable]:
    """The tenant's entries by name; ``secret`` picks secrets (True) or plain variables (False) only."""
    stmt = select(TenantVariable).where(TenantVariable.tenant_id == tenant_id)
    if secret is not None:
        stmt = stmt.where(TenantVariable.is_secret == secret)
    return list((await session.execute(stmt.order_by(TenantVariable.name))).scalars())


async def get(session: AsyncSession, tenant_id: str, name: str, *, for_update: bool = False) -> TenantVariable | None:
    stmt = select(TenantVariable).where(TenantVariable.tenant_id == tenant_id, TenantVariable.name == name)
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def count(session: AsyncSession, tenant_id: str) -> int:
    stmt = select(func.count()).select_from(TenantVariable).where(TenantVariable.tenant_id == tenant_id)
    return int((await session.execute(stmt)).scalar_one())


async def add(session: AsyncSession, row: TenantVariable) -> None:
    session.add(row)
    await session.flush()


async def remove(session: AsyncSession, tenant_id: str, name: str) -> bool:
    result = await session.execute(
        delete(TenantVariable)
        .where(TenantVariable.tenant_id == tenant_id, TenantVariable.name == name)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


async def secrets_batch(
    session: AsyncSession, *, tenant_id: str | None, after_id: str, limit: int
) -> list[TenantVariable]:
    """Secrets (of one tenant, or of every tenant) in id order, ``limit`` at a time after ``after_id``."""
    stmt = select(TenantVariable).where(TenantVariable.is_secret.is_(True), TenantVariable.id > after_id)
    if tenant_id is not None:
        stmt = stmt.where(TenantVariable.tenant_id == tenant_id)
    stmt = stmt.order_by(TenantVariable.id).limit(limit).with_for_update()
    return list((await session.execute(stmt)).scalars())
