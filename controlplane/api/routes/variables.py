"""/api/v1/variables and /api/v1/secrets: a tenant admin's variables and secrets for every run.

Runs see each NAME as ``JETQUERY_<NAME>`` (the sandbox prefix). Secrets are write-only: no response ever
carries a secret's value; listing shows names, versions, key fingerprints and times. PUT creates (201) or
replaces (200) - replacing a secret is its rotation.
"""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from controlplane.api.deps import PlatformDep, PrincipalDep
from controlplane.core.schemas.tenancy import (
    ReEncryptionPublic,
    SecretListPublic,
    SecretPublic,
    VariableListPublic,
    VariablePublic,
    VariableUpdate,
)
from controlplane.core.schemas.wire import ErrorBody
from controlplane.services.tenancy import secrets

ERRORS = {code: {"model": ErrorBody} for code in (401, 403, 404, 409, 422)}
variables_router = APIRouter(tags=["variables"], responses=ERRORS)  # type: ignore[arg-type]
secrets_router = APIRouter(tags=["secrets"], responses=ERRORS)  # type: ignore[arg-type]


def _service(platform: PlatformDep) -> secrets.SecretService:
    return secrets.SecretService(platform.settings, platform.sessions)


def _written(public: VariablePublic | SecretPublic, created: bool) -> JSONResponse:
    return JSONResponse(public.model_dump(mode="json", by_alias=True), status_code=201 if created else 200)


# --- variables ----------------------------------------------------------------------------------------


@variables_router.get("", response_model=VariableListPublic)
async def list_variables(platform: PlatformDep, principal: PrincipalDep) -> VariableListPublic:
    items = await _service(platform).list(principal, secret=False)
    return VariableListPublic(data=[i for i in items if isinstance(i, VariablePublic)])


@variables_router.get("/{name}", response_model=VariablePublic)
async def get_variable(name: str, platform: PlatformDep, principal: PrincipalDep) -> VariablePublic | SecretPublic:
    return await _service(platform).get(principal, name, secret=False)


@variables_router.put(
    "/{name}", response_model=VariablePublic, responses={201: {"model": VariablePublic, "description": "created"}}
)
async def put_variable(name: str, body: VariableUpdate, platform: PlatformDep, principal: PrincipalDep) -> JSONResponse:
    public, created = await _service(platform).put(principal, name, body.value, secret=False)
    return _written(public, created)


@variables_router.delete("/{name}", status_code=204, response_class=Response)
async def delete_variable(name: str, platform: PlatformDep, principal: PrincipalDep) -> Response:
    await _service(platform).delete(principal, name, secret=False)
    return Response(status_code=204)


# --- secrets ------------------------------------------------------------------------------------------


@secrets_router.get("", response_model=SecretListPublic)
async def list_secrets(platform: PlatformDep, principal: PrincipalDep) -> SecretListPublic:
    items = await _service(platform).list(principal, secret=True)
    return SecretListPublic(data=[i for i in items if isinstance(i, SecretPublic)])


@secrets_router.post("/actions/re-encrypt", response_model=ReEncryptionPublic)
async def re_encrypt(platform: PlatformDep, principal: PrincipalDep) -> ReEncryptionPublic:
    """Store this tenant's secrets under the first key of CP_SECRETS_KEYS (after a key rotation)."""
    service = _service(platform)
    count = await service.re_encrypt(principal)
    return ReEncryptionPublic(re_encrypted=count, key_id=secrets.keyring(platform.settings).current_id)


@secrets_router.get("/{name}", response_model=SecretPublic)
async def get_secret(name: str, platform: PlatformDep, principal: PrincipalDep) -> VariablePublic | SecretPublic:
    return await _service(platform).get(principal, name, secret=True)


@secrets_router.put(
    "/{name}", response_model=SecretPublic, responses={201: {"model": SecretPublic, "description": "created"}}
)
async def put_secret(name: str, body: VariableUpdate, platform: PlatformDep, principal: PrincipalDep) -> JSONResponse:
    public, created = await _service(platform).put(principal, name, body.value, secret=True)
    return _written(public, created)


@secrets_router.delete("/{name}", status_code=204, response_class=Response)
async def delete_secret(name: str, platform: PlatformDep, principal: PrincipalDep) -> Response:
    await _service(platform).delete(principal, name, secret=True)
    return Response(status_code=204)
