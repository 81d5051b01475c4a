"""Request dependencies: the platform, the authenticated principal (rate-limited per user), paging helpers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from controlplane.core.auth import Principal
from controlplane.core.schemas.wire import Href, Links
from controlplane.services.platform import Platform
from controlplane.services.runs import usage
from controlplane.services.tenancy import tenants as tenancy
from controlplane.store.query import PageResult


def get_platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


PlatformDep = Annotated[Platform, Depends(get_platform)]


async def get_principal(request: Request, platform: PlatformDep) -> Principal:
    cached: Principal | None = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    principal = await tenancy.authenticate(platform.sessions, request.headers.get("authorization"))
    if principal.run_id is not None:  # a run calling back with its own token: metrics.totalApiCalls
        await usage.count_api_call(platform.sessions, principal.run_id)
    # per-user tiers (429 past them); main.py's middleware puts the X-RateLimit-* headers on the response
    decision = await platform.ratelimiter.check(principal.user_id, request.method)
    if decision is not None:
        request.state.rate_limit_headers = decision.headers()
    request.state.principal = principal
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def page_links(request: Request, page: PageResult) -> Links:
    def href(cursor: str) -> Href:
        return Href(href=str(request.url.include_query_params(page=cursor)))

    return Links(
        next=href(page.next.encode()) if page.next else None,
        prev=href(page.prev.encode()) if page.prev else None,
    )
