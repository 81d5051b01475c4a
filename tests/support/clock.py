"""A clock tests move by hand (controlplane.core.clock.Clock), so waits for time to pass take no time."""

from __future__ import annotations

import time
from datetime import UTC, datetime


class FakeClock:
    """Stands still until ``advance``d (or ``set``); starts at ``start`` Unix seconds, by default the real
    time when it was made."""

    def __init__(self, start: float | None = None) -> None:
        self._wall = time.time() if start is None else start
        self._mono = 0.0

    def time(self) -> float:
        return self._wall

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._wall, UTC)

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        assert seconds >= 0, "time does not go back"
        self._wall += seconds
        self._mono += seconds

    def set(self, wall: float) -> None:
        """Jump the wall clock to ``wall`` Unix seconds (forward only)."""
        self.advance(wall - self._wall)
