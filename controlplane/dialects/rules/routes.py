"""Seed 003's App Offering Automation Rules API, at /app_offering_automation_rules (and /v1/..., the base
path that API family's clients use): a thin translation over dialects/rules/service.py.

* ``GET /`` lists the rules the caller sees as a JSON array with the seed's collection fields (id,
  app_offering, rulable_type, name, trigger, position, created_at, updated_at); ``?fields=a,b`` picks others
  (id always comes along; an unknown field is 400). ``?sort=position,-name`` (id, name, position, trigger,
  rulable_type, created_at, updated_at; ``-`` descending; without it: by id). Filters ``?name=``,
  ``?trigger=``, ``?rulable_type=``, ``?app_offering=`` (id or name), ``?id=1,2``, ``?position=``,
  ``?created_at=``/``?updated_at=`` with ``>``, ``>=``, ``<``, ``<=`` (``>=2026-01-01<2026-02-01``) and ``!``
  (not). The seed names no predefined filters. Pagination: ``page`` (from 1) and ``per_page`` (default 25,
  at most 100); the ``Link`` header carries rel first, prev, next and last, and ``X-Pagination-Per-Page``,
  ``X-Pagination-Current-Page``, ``X-Pagination-Total-Pages``, ``X-Pagination-Total-Entries``.
* ``POST /`` 201, ``GET /{id}`` 200, ``PATCH /{id}`` 200, ``DELETE /{id}`` 204; ``GET /{id}/evaluations``
  (ours): what the rule did lately (fired, failed with the error, cut), newest first, paged the same way.

Status codes: 400 bad JSON, sort, filter or fields; 401; 403 role (writes: developer, and editor in the
automation's space); 404 missing rule or one of an automation the caller cannot see; 422 invalid fields
(read-only, unknown, missing, too long, bad rulable_type/trigger, CEL that does not compile); 429.
Errors are the native envelope ``{"errors": [...], "traceId"}`` (the seed names none).
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request, Response
from fastapi.responses import JSONResponse

from controlplane.api.deps import PlatformDep, PrincipalDep
from controlplane.core.errors import BadRequest, Code
from controlplane.core.schemas.wire import ErrorBody
from controlplane.dialects.rules.fields import ALL_FIELDS, COLLECTION_FIELDS
from controlplane.dialects.rules.schemas import RuleEvaluationPublic, RulePublic
from controlplane.dialects.rules.service import FILTERS, RuleService
from controlplane.dialects.schemas import seed_json

PREFIXES = ("/app_offering_automation_rules", "/v1/app_offering_automation_rules")
ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (400, 401, 403, 404, 422, 429, 503)}
router = APIRouter(tags=["app offering automation rules (seed 003)"], responses=ERRORS)


def get_rules(platform: PlatformDep) -> RuleService:
    return RuleService(platform.settings, platform.sessions)


RulesDep = Annotated[RuleService, Depends(get_rules)]
PageQuery = Annotated[int, Query(ge=1, le=1_000_000, description="Page number, from 1.")]
PerPageQuery = Annotated[int, Query(ge=1, le=100, description="Entries per page (at most 100).")]
Fields = Annotated[str | None, Query(max_length=1024, description="Comma-separated fields to return.")]
Sort = Annotated[str | None, Query(max_length=256, description="Comma-separated fields; '-' sorts descending.")]
RuleBody = Annotated[dict[str, Any], Body(description="The rule's writable fields (seed 003).")]


def _chosen(fields: str | None) -> tuple[str, ...]:
    if fields is None:
        return COLLECTION_FIELDS
    wanted = [f.strip() for f in fields.split(",") if f.strip()]
    unknown = [f for f in wanted if f not in ALL_FIELDS]
    if unknown:
        raise BadRequest(
            f"unknown field(s) {', '.join(unknown)}; fields: {', '.join(ALL_FIELDS)}", code=Code.INVALID_FIELDS
        )
    return ("id", *[f for f in wanted if f != "id"])


def _paged(request: Request, items: list[Any], total: int, page: int, per_page: int) -> JSONResponse:
    pages = max(1, math.ceil(total / per_page))

    def link(number: int, rel: str) -> str:
        url = request.url.include_query_params(page=number, per_page=per_page)
        return f'<{url}>; rel="{rel}"'

    links = [link(1, "first")]
    if page > 1:
        links.append(link(min(page - 1, pages), "prev"))
    if page < pages:
        links.append(link(page + 1, "next"))
    links.append(link(pages, "last"))
    headers = {
        "Link": ", ".join(links),
        "X-Pagination-Per-Page": str(per_page),
        "X-Pagination-Current-Page": str(page),
        "X-Pagination-Total-Pages": str(pages),
        "X-Pagination-Total-Entries": str(total),
    }
    return JSONResponse(items, headers=headers)


async def list_rules(
    request: Request,
    principal: PrincipalDep,
    rules: RulesDep,
    fields: Fields = None,
    sort: Sort = None,
    page: PageQuery = 1,
    per_page: PerPageQuery = 25,
) -> JSONResponse:
    """List the app offering automation rules of the account (those of automations the caller sees)."""
    chosen = _chosen(fields)
    filters = {name: request.query_params[name] for name in FILTERS if name in request.query_params}
    items, total = await rules.search(principal, filters=filters, sort=sort, page=page, per_page=per_page)
    return _paged(request, [item.model_dump(mode="json", include=set(chosen)) for item in items], total, page, per_page)


async def create_rule(principal: PrincipalDep, rules: RulesDep, body: RuleBody) -> JSONResponse:
    """Create an app offering automation rule."""
    return JSONResponse(seed_json(await rules.create(principal, body)), status_code=201)


async def get_rule(rule_id: str, principal: PrincipalDep, rules: RulesDep) -> JSONResponse:
    """Get a single app offering automation rule."""
    return JSONResponse(seed_json(await rules.get(principal, rule_id)))


async def update_rule(rule_id: str, principal: PrincipalDep, rules: RulesDep, body: RuleBody) -> JSONResponse:
    """Update an app offering automation rule (the fields given; the others keep their values)."""
    return JSONResponse(seed_json(await rules.update(principal, rule_id, body)))


async def delete_rule(rule_id: str, principal: PrincipalDep, rules: RulesDep) -> Response:
    """Delete an app offering automation rule."""
    await rules.delete(principal, rule_id)
    return Response(status_code=204)


async def list_evaluations(
    request: Request,
    rule_id: str,
    principal: PrincipalDep,
    rules: RulesDep,
    page: PageQuery = 1,
    per_page: PerPageQuery = 25,
) -> JSONResponse:
    """What the rule did lately: fired (with each action's result), failed (with the error) or cut."""
    items, total = await rules.evaluations(principal, rule_id, page=page, per_page=per_page)
    return _paged(request, seed_json(items), total, page, per_page)


for _path, _endpoint, _method, _status, _answer in (
    ("", list_rules, "GET", 200, list[RulePublic]),
    ("", create_rule, "POST", 201, RulePublic),
    ("/{rule_id}", get_rule, "GET", 200, RulePublic),
    ("/{rule_id}", update_rule, "PATCH", 200, RulePublic),
    ("/{rule_id}", delete_rule, "DELETE", 204, None),
    ("/{rule_id}/evaluations", list_evaluations, "GET", 200, list[RuleEvaluationPublic]),
):
    router.add_api_route(
        _path,
        _endpoint,
        methods=[_method],
        status_code=_status,
        name=f"rules_{_endpoint.__name__}",
        response_model=_answer,
    )
