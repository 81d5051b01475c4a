"""Tenants, users and tokens."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from controlplane.core.auth import hash_token, new_token
from controlplane.db.tables import Tenant, Token, User, utcnow


async def get_tenant(session: AsyncSession, tenant_id: str) -> Tenant | None:
    return await session.get(Tenant, tenant_id)


async def all_tenants(session: AsyncSession) -> list[Tenant]:
    return list((await session.execute(select(Tenant).order_by(Tenant.name))).scalars())


async def get_tenant_by_name(session: AsyncSession, name: str) -> Tenant | None:
    return (await session.execute(select(Tenant).where(Tenant.name == name))).scalar_one_or_none()


async def ensure_tenant(session: AsyncSession, name: str) -> Tenant:
    tenant = await get_tenant_by_name(session, name)
    if tenant is None:
        tenant = Tenant(name=name, settings={})
        session.add(tenant)
        await session.flush()
    return tenant


async def get_user(session: AsyncSession, tenant_id: str, user_id: str) -> User | None:
    user = await session.get(User, user_id)
    return user if user is not None and user.tenant_id == tenant_id else None


async def ensure_user(session: AsyncSession, tenant_id: str, name: str, role: str) -> User:
    user = (
        await session.execute(select(User).where(User.tenant_id == tenant_id, User.name == name))
    ).scalar_one_or_none()
    if user is None:
        user = User(tenant_id=tenant_id, name=name, role=role)
        session.add(user)
        await session.flush()
    return user


async def create_token(
    session: AsyncSession,
    *,
    tenant_id: str,
    user_id: str,
    role: str,
    description: str = "",
    run_id: str | None = None,
    expires_at: datetime | None = None,
    plaintext: str | None = None,
) -> tuple[Token, str]:
    secret = plaintext or new_token()
    row = Token(
        tenant_id=tenant_id,
        user_id=user_id,
        token_hash=hash_token(secret),
        prefix=secret[:8],
        role=role,
        description=description,
        run_id=run_id,
        expires_at=expires_at,
    )
    session.add(row)
    await session.flush()
    return row, secret


async def find_token_by_hash(session: AsyncSession, token_hash: str) -> Token | None:
    return (await session.execute(select(Token).where(Token.token_hash == token_hash))).scalar_one_or_none()


@dataclass(frozen=True)
class TokenOwner:
    token: Token
    tenant: Tenant
    user: User


async def resolve_token(session: AsyncSession, token_hash: str) -> TokenOwner | None:
    row = (
        await session.execute(
            select(Token, Tenant, User)
            .join(Tenant, Tenant.id == Token.tenant_id)
            .join(User, User.id == Token.user_id)
            .where(Token.token_hash == token_hash)
        )
    ).first()
    if row is None:
        return None
    return TokenOwner(row[0], row[1], row[2])


async def revoke_run_tokens(session: AsyncSession, run_id: str) -> None:
    await session.execute(
        update(Token).where(Token.run_id == run_id, Token.revoked_at.is_(None)).values(revoked_at=utcnow())
    )
