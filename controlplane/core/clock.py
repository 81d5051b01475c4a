"""Time as a dependency: code that compares against "now" (link expiry, rate windows, queue timeouts)
takes a Clock, so tests can move time explicitly instead of sleeping until it has passed.

Production uses ``SYSTEM_CLOCK``; tests use a fake (tests/support/clock.py) they advance by hand.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def time(self) -> float:
        """Wall-clock Unix seconds (``time.time()``)."""
        ...

    def now(self) -> datetime:
        """The same instant as an aware UTC datetime (``datetime.now(UTC)``)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back, for durations (``time.monotonic()``)."""
        ...


class SystemClock:
    """The real clock."""

    def time(self) -> float:
        return time.time()

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


SYSTEM_CLOCK: Clock = SystemClock()
