"""The live-server fixtures of tests/e2e (a real `controlplane serve` on the Docker engine)."""

from tests.e2e.conftest import server  # noqa: F401
