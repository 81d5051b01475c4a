"""Platforms and API clients for tests: settings for a test's directory and database, the bootstrap admin's
token, an in-process HTTP client for a platform, and tokens for new users."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from controlplane.core.settings import Settings
from controlplane.main import create_app
from controlplane.services.platform import Platform

ADMIN_TOKEN = "cp_test_admin_token_0123456789abcdef"

PlatformFactory = Callable[..., Awaitable[Platform]]


def make_settings(tmp_path: Path, database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "data_dir": tmp_path / "data",
        "automations_dir": tmp_path / "no-automations",
        "backend": "fake",
        "bootstrap_token": ADMIN_TOKEN,
        "log_level": "debug",
    }
    values.update(overrides)
    return Settings(**values)


def client_for(platform: Platform, token: str | None = ADMIN_TOKEN) -> httpx.AsyncClient:
    app = create_app(platform.settings, platform=platform)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver", headers=headers)


async def new_token(platform: Platform, *, role: str, tenant: str | None = None, user: str | None = None) -> str:
    from controlplane.services.tenancy import tenants as tenancy

    token, *_ = await tenancy.issue_token(
        platform.sessions,
        tenant=tenant or platform.settings.bootstrap_tenant,
        user=user or f"{role}-{uuid.uuid4().hex[:6]}",
        role=role,
        create_tenant=True,
    )
    return token
