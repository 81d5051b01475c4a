"""/api/v1/tokens: an admin issues tokens for users of their own tenant (the CLI does the same locally)."""

from __future__ import annotations

from fastapi import APIRouter

from controlplane.api.deps import PlatformDep, PrincipalDep
from controlplane.core.schemas.tenancy import TokenCreate, TokenPublic
from controlplane.core.schemas.wire import ErrorBody
from controlplane.services.tenancy import tenants as tenancy

router = APIRouter(tags=["tokens"], responses={c: {"model": ErrorBody} for c in (401, 403, 422)})


@router.post("", status_code=201, response_model=TokenPublic)
async def create_token(body: TokenCreate, platform: PlatformDep, principal: PrincipalDep) -> TokenPublic:
    token, token_id, user_id, tenant_id = await tenancy.issue_token_for(
        platform.sessions, principal, user=body.user, role=body.role, description=body.description
    )
    return TokenPublic(id=token_id, token=token, user_id=user_id, role=body.role, tenant_id=tenant_id)
