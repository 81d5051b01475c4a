"""The live server of the monitoring tests: a real `controlplane serve` on the Docker engine, as in tests/e2e."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.e2e import Server, launch


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One live server per test module, on SQLite."""
    srv = launch(tmp_path_factory.mktemp("cp-monitoring"))
    yield srv
    srv.destroy()
