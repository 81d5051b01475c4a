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


def _named_routes(router: APIRouter, *, secret: bool, model: type[VariablePublic | SecretPublic]) -> None:
    """GET, PUT and DELETE of one name: the same for variables and secrets but for which kind they touch."""
    kind = "secret" if secret else "variable"

    async def get_one(name: str, platform: PlatformDep, principal: PrincipalDep) -> VariablePublic | SecretPublic:
        return await _service(platform).get(principal, name, secret=secret)

    async def put_one(name: str, body: VariableUpdate, platform: PlatformDep, principal: PrincipalDep) -> JSONResponse:
        public, created = await _service(platform).put(principal, name, body.value, secret=secret)
        return _written(public, created)

    async def delete_one(name: str, platform: PlatformDep, principal: PrincipalDep) -> Response:
        await _service(platform).delete(principal, name, secret=secret)
        return Response(status_code=204)

    router.add_api_route("/{name}", get_one, methods=["GET"], response_model=model, name=f"get_{kind}")
    router.add_api_route(
        "/{name}",
        put_one,
        methods=["PUT"],
        response_model=model,
        responses={201: {"model": model, "description": "created"}},
        name=f"put_{kind}",
    )
    router.add_api_route(
        "/{name}", delete_one, methods=["DELETE"], status_code=204, response_class=Response, name=f"delete_{kind}"
    )


_named_routes(variables_router, secret=False, model=VariablePublic)
_named_routes(secrets_router, secret=True, model=SecretPublic)
