"""Shared fixtures: databases (SQLite and a real PostgreSQL), platforms, API clients.

Fixtures are factories: a test asks for what it needs (``make_platform(backend="docker")``) and everything
it made is closed afterwards. Databases are cloned from a template migrated once per session, so each test
starts from an empty, fully migrated schema on both dialects.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy.engine import make_url

from controlplane.core.settings import Settings
from controlplane.db.migrate import upgrade
from controlplane.main import create_app
from controlplane.services.platform import Platform
from tests.support.pg import fresh_database, postgres_url

ADMIN_TOKEN = "cp_test_admin_token_0123456789abcdef"
# one template per test session: parallel sessions on one server (checkouts, CI) never drop each other's
PG_TEMPLATE = f"cp_template_{uuid.uuid4().hex[:8]}"
_PG_CREATED: list[str] = []


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def pg_base_url() -> Iterator[str]:
    base = postgres_url()
    upgrade(fresh_database(base, PG_TEMPLATE))
    yield base
    with psycopg.connect(_pg_admin_dsn(base), autocommit=True) as conn:
        for name in [*_PG_CREATED, PG_TEMPLATE]:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _pg_admin_dsn(base: str) -> str:
    u = make_url(base)
    return f"host={u.host} port={u.port or 5432} user={u.username} password={u.password} dbname=postgres"


@pytest.fixture
def sqlite_url(tmp_path: Path, sqlite_template: Path) -> str:
    target = tmp_path / "cp.db"
    shutil.copy(sqlite_template, target)
    return f"sqlite+aiosqlite:///{target}"


@pytest.fixture
def postgres_db_url(pg_base_url: str) -> Iterator[str]:
    name = f"cp_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_pg_admin_dsn(pg_base_url), autocommit=True) as conn:
        # drop the databases of earlier tests here, when their platforms are surely closed (a test's own
        # teardown order between make_platform and this fixture depends on its signature)
        while _PG_CREATED:
            conn.execute(f'DROP DATABASE IF EXISTS "{_PG_CREATED.pop()}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{PG_TEMPLATE}"')
    _PG_CREATED.append(name)
    yield make_url(pg_base_url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Both dialects: a test using this runs once on SQLite and once on PostgreSQL."""
    return str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_db_url"))


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


PlatformFactory = Callable[..., Awaitable[Platform]]


@pytest.fixture
async def make_platform(tmp_path: Path) -> AsyncIterator[PlatformFactory]:
    made: list[Platform] = []

    async def factory(database_url: str, **overrides: Any) -> Platform:
        platform = await Platform.start(make_settings(tmp_path, database_url, **overrides))
        made.append(platform)
        return platform

    yield factory
    for platform in made:
        await platform.close()


def client_for(platform: Platform, token: str | None = ADMIN_TOKEN) -> httpx.AsyncClient:
    app = create_app(platform.settings, platform=platform)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver", headers=headers)


@pytest.fixture
async def platform(make_platform: PlatformFactory, database_url: str) -> Platform:
    """A platform on the fake backend, on each database dialect."""
    return await make_platform(database_url)


@pytest.fixture
async def api(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(platform) as client:
        yield client


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
