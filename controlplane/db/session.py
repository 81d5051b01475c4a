"""The async engine and session factory, tuned per dialect (SQLite WAL + busy timeout; PostgreSQL pool)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def ensure_sqlite_dir(url: str) -> None:
    u = make_url(url)
    if u.get_backend_name() == "sqlite" and u.database and u.database != ":memory:":
        Path(u.database).parent.mkdir(parents=True, exist_ok=True)


def create_engine(url: str, *, pool_size: int = 10, timeout: float = 5.0) -> AsyncEngine:
    kwargs: dict[str, Any] = {}
    if is_sqlite(url):
        ensure_sqlite_dir(url)
        kwargs["connect_args"] = {"timeout": 30}
    else:
        kwargs.update(
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_timeout=timeout,
            pool_pre_ping=True,
            connect_args={"connect_timeout": max(1, int(timeout))},
        )
    engine = create_async_engine(url, **kwargs)
    if is_sqlite(url):

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA busy_timeout=30000")  # first: what follows may wait for another writer
            # switching to WAL takes the database's lock and is refused outright (no busy wait) while another
            # connection writes; once the file is in WAL (persistent) a new connection has nothing to switch
            cur.execute("PRAGMA journal_mode")
            mode = cur.fetchone()
            if str(mode[0] if mode else "").lower() != "wal":
                cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

    return engine


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def transaction(factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    async with factory() as session, session.begin():
        yield session


async def ping(factory: async_sessionmaker[AsyncSession]) -> None:
    """One round trip to the database (readiness)."""
    async with factory() as session:
        await session.execute(text("SELECT 1"))
