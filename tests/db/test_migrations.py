"""The Alembic migrations and the SQLAlchemy tables describe the same schema, on SQLite and PostgreSQL, and
every migration goes down and up again: a column added to a table without its migration (or the other
way round) fails here, not on an operator's upgrade."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from controlplane.db import migrate
from controlplane.db.tables import Base


def _differences(url: str) -> list[Any]:
    def compare(conn: Connection) -> list[Any]:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    async def run() -> list[Any]:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(compare)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def test_migrations_match_the_tables_and_go_down_and_up(database_url: str) -> None:
    # the fixture's database is at head already (built by the migrations): compare, then base and back
    assert _differences(database_url) == []
    migrate.upgrade(database_url, "head")  # idempotent
    command.downgrade(migrate.alembic_config(database_url), "base")
    migrate.upgrade(database_url, "head")
    assert _differences(database_url) == []
