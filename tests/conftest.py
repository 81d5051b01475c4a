"""Shared fixtures: databases (SQLite and a real PostgreSQL), platforms, API clients, and the backend
fixtures tests/backends and tests/kube both use (run specs, a Docker backend with its own name prefix).

Fixtures are factories: a test asks for what it needs (``make_platform(backend="docker")``) and everything
it made is closed afterwards. Databases are cloned from a template migrated once per session, so each test
starts from an empty, fully migrated schema on both dialects.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy.engine import make_url

from controlplane.backends.base import Resources, RunSpec
from controlplane.core.settings import Settings
from controlplane.core.states import NetworkMode
from controlplane.db.migrate import upgrade
from controlplane.services.platform import Platform
from tests.support.backends import IMAGE, SpecFactory
from tests.support.pg import fresh_database, postgres_url
from tests.support.platform import PlatformFactory, client_for, make_settings

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


@pytest.fixture
async def platform(make_platform: PlatformFactory, database_url: str) -> Platform:
    """A platform on the fake backend, on each database dialect."""
    return await make_platform(database_url)


@pytest.fixture
async def api(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(platform) as client:
        yield client


@pytest.fixture
def make_spec() -> SpecFactory:
    def make(
        code: str | bytes = "print('ok')",
        *,
        runtime: str = "python",
        entrypoint: str | None = None,
        files: Mapping[str, bytes] | None = None,
        args: tuple[str, ...] | list[str] = (),
        env: Mapping[str, str] | None = None,
        input: bytes = b"",
        resources: Resources | None = None,
        network: NetworkMode = NetworkMode.NONE,
        run_id: str | None = None,
        **kw: Any,
    ) -> RunSpec:
        entry = entrypoint or ("main.py" if runtime == "python" else "main.sh")
        body = code.encode() if isinstance(code, str) else code
        return RunSpec(
            run_id=run_id or uuid.uuid4().hex[:12],
            tenant_id="tenant-1",
            automation_id="automation-1",
            image=IMAGE,
            runtime=runtime,
            entrypoint=entry,
            files=dict(files) if files is not None else {entry: body},
            args=tuple(args),
            env=dict(env or {}),
            input=input,
            resources=resources or Resources(cpus=1.0, memory_mb=256, pids=64, tmp_mb=16, work_mb=32),
            network=network,
            deadline_seconds=60,
            **kw,
        )

    return make


@pytest.fixture
def run_prefix() -> str:
    return f"cp-test-{uuid.uuid4().hex[:6]}-"


@pytest.fixture
def backend_settings(run_prefix: str) -> Settings:
    return Settings(container_prefix=run_prefix, sandbox_image=IMAGE)


@pytest.fixture
def docker_api(run_prefix: str) -> Iterator[Any]:
    """A plain docker-py client for assertions. Every path out of a run must remove its container, so a
    container left behind with the test's prefix fails the test (after it is removed)."""
    import docker

    client = docker.DockerClient(version="auto")
    yield client.api
    leftovers = client.api.containers(all=True, filters={"name": run_prefix})
    for c in leftovers:
        client.api.remove_container(c["Id"], force=True)
    client.close()
    assert not leftovers, f"containers left behind: {[c['Names'] for c in leftovers]}"


@pytest.fixture
async def docker_backend(backend_settings: Settings, docker_api: Any) -> AsyncIterator[Any]:
    from controlplane.backends.docker.backend import DockerBackend

    # the engine contract alone: networks and tenant volumes have their own suites, and the e2e suite
    # runs the default wiring (DockerBackend(settings) plugs both in)
    backend = DockerBackend(backend_settings, networks=None, mounts=None)
    yield backend
    await backend.close()
