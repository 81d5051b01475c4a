"""Fixtures of the end-to-end tests: live ``controlplane serve`` processes (tests/support/e2e.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.e2e import Server, launch


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One live server per test module, on SQLite."""
    srv = launch(tmp_path_factory.mktemp("cp-e2e"))
    yield srv
    srv.destroy()


@pytest.fixture(scope="module")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One live server per test module, on a fresh PostgreSQL database."""
    srv = launch(tmp_path_factory.mktemp("cp-e2e-pg"), database="postgres")
    yield srv
    srv.destroy()


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Any]:
    """Factory of extra servers for one test (same code as ``server``); all destroyed afterwards."""
    made: list[Server] = []

    def factory(*, database: str = "sqlite", **options: Any) -> Server:
        srv = launch(tmp_path / f"server{len(made)}", database=database, **options)
        made.append(srv)
        return srv

    yield factory
    errors = []
    for srv in sorted(made, key=lambda s: s.owner):  # replicas first: owners drop what they share
        try:
            srv.destroy()
        except BaseException as exc:
            errors.append(str(exc))
    if errors:
        pytest.fail("\n".join(errors))
