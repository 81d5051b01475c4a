"""Per-user request rate limits in seed 004's tiers: reads (GET/HEAD) and writes (POST/PUT/PATCH/DELETE).

Why the database: the limit is the user's, not a replica's, so the counters live in one table every
replica shares (``store.ratelimit``). The window is a *sliding* minute, estimated from two fixed minutes
(the Cloudflare approximation): ``previous * (1 - elapsed fraction) + current`` must stay within the
limit. That holds a burst at a minute's boundary to the limit (a fixed window would let through twice
the limit across the boundary) while costing one conditional upsert per request. The previous minute's
count is final once the minute is over, so each replica reads it once per user and minute and keeps it.

Replicas must keep their clocks in step (NTP): each one decides which minute "now" is on its own clock.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from controlplane.core.clock import SYSTEM_CLOCK, Clock
from controlplane.core.errors import RateLimited
from controlplane.core.settings import Settings
from controlplane.db.session import transaction
from controlplane.store import ratelimit as store

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CACHE_MAX = 100_000  # previous-minute counts kept per replica before the cache starts over


class Tier(enum.StrEnum):
    READS = "reads"  # seed 004 tier 1
    WRITES = "writes"  # seed 004 tier 2


def tier_of(method: str) -> Tier:
    return Tier.READS if method.upper() in READ_METHODS else Tier.WRITES


@dataclass(frozen=True)
class Decision:
    """The state of one user's tier after a request: what the X-RateLimit-* headers say."""

    tier: Tier
    limit: int
    remaining: int
    reset_at: int  # Unix seconds: end of the current minute (on a refusal: when a request is accepted again)
    retry_after: int | None = None  # set when the request was refused

    def headers(self) -> dict[str, str]:
        out = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_at),
        }
        if self.retry_after is not None:
            out["Retry-After"] = str(self.retry_after)
        return out


class RateLimiter:
    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        *,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.clock = clock
        self._cache_minute = -1
        self._previous: dict[str, int] = {}
        self._purged_minute = -1

    def limit_for(self, tier: Tier) -> int:
        if tier is Tier.READS:
            return self.settings.rate_limit_reads_per_minute
        return self.settings.rate_limit_writes_per_minute

    async def check(self, user_id: str, method: str) -> Decision | None:
        """Count one request of ``user_id``; None when its tier is unlimited (0). Raises RateLimited (429,
        with Retry-After and X-RateLimit-* headers) when the request is over the limit; it is then not
        counted."""
        tier = tier_of(method)
        limit = self.limit_for(tier)
        if limit <= 0:
            return None
        now = self.clock.time()
        minute = int(now // 60)
        elapsed = (now - minute * 60) / 60.0
        subject = f"{user_id}:{tier.value}"
        previous = await self._previous_count(subject, minute)
        carried = math.floor(previous * (1.0 - elapsed))
        allowed = limit - carried
        # the transaction's first statement writes: on SQLite it then holds the write lock from the start
        # (a read first would make a later write fail against a concurrent writer's newer snapshot)
        async with transaction(self.sessions) as s:
            if self._purged_minute != minute:
                await store.purge(s, before=minute - 1)
                self._purged_minute = minute
            got = await store.take(s, subject, minute, allowed=allowed)
            current = got if got is not None else await store.count(s, subject, minute)
        if got is not None:
            return Decision(tier, limit, max(0, allowed - got), (minute + 1) * 60)
        wait = _retry_after(now, minute, previous=previous, current=current, limit=limit)
        decision = Decision(tier, limit, 0, math.ceil(now + wait), retry_after=wait)
        raise RateLimited(
            f"more than {limit} {tier.value} per minute for this user; retry in {wait} s",
            headers=decision.headers(),
        )

    async def _previous_count(self, subject: str, minute: int) -> int:
        if self._cache_minute != minute or len(self._previous) > CACHE_MAX:
            self._cache_minute = minute
            self._previous = {}
        cached = self._previous.get(subject)
        if cached is None:
            async with self.sessions() as s:
                cached = await store.count(s, subject, minute - 1)
            if self._cache_minute == minute:
                self._previous[subject] = cached
        return cached


def _retry_after(now: float, minute: int, *, previous: int, current: int, limit: int) -> int:
    """Whole seconds until ``previous * (1 - f) + current + 1 <= limit`` holds again (f: the fraction of
    the minute elapsed), assuming nobody else uses the tier meanwhile."""
    if current < limit and previous > 0:
        # still this minute: the previous minute's weight has to fade enough
        fraction = 1.0 - (limit - current) / previous
        at = minute * 60 + 60.0 * fraction
    else:
        # next minute, where this minute's count is the one fading out
        fraction = 1.0 - limit / current if current > 0 else 0.0
        at = (minute + 1) * 60 + 60.0 * max(0.0, fraction)
    return max(1, math.floor(at - now) + 1)  # the first whole second strictly after that moment
