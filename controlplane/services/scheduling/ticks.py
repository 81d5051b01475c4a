"""Schedule arithmetic: validating cron/interval schedules and computing their next fire time.

Cron expressions are parsed by croniter (5 fields, as seed 000 shows them); interval schedules follow seed
004 (interval seconds from startAt, until stopAt). Both are evaluated in the schedule's own time zone, so a
daily 09:00 stays 09:00 local across DST changes.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

from controlplane.core.errors import Code, ValidationFailed


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a directory ("Europe") or an overlong name
        raise ValidationFailed(f"unknown time zone {name!r}", code=Code.INVALID_SCHEDULE) from None


# croniter's "R" picks a new random value on every evaluation, so the next fire time would change each time
_RANDOM = re.compile(r"\bR\b", re.IGNORECASE)


def check_cron(expr: str) -> None:
    if len(expr.split()) != 5 or _RANDOM.search(expr) or not croniter.is_valid(expr):
        raise ValidationFailed(
            f"{expr!r} is not a 5-field cron expression (minute hour day-of-month month day-of-week)",
            code=Code.INVALID_SCHEDULE,
        )
    try:
        croniter(expr, datetime.now(UTC)).get_next(datetime)
    except CroniterBadDateError:  # valid fields that never match together, e.g. "0 0 31 2 *"
        raise ValidationFailed(f"{expr!r} never fires", code=Code.INVALID_SCHEDULE) from None


def next_fire(
    *,
    cron: str | None,
    interval: int | None,
    tz: str,
    start_at: datetime | None,
    stop_at: datetime | None,
    after: datetime,
) -> datetime | None:
    """First fire time strictly after ``after`` (aware UTC), or None when the schedule has ended."""
    tzinfo = zone(tz)
    begin = max(after, start_at) if start_at and start_at > after else after
    if cron is not None:
        local = begin.astimezone(tzinfo)
        nxt: datetime = croniter(cron, local).get_next(datetime)
        result = nxt.astimezone(UTC)
    elif interval is not None:
        # in UTC: aware arithmetic in a local zone is wall-clock and would slip an hour across DST
        anchor = (start_at or after).astimezone(UTC)
        if anchor > after:
            result = anchor
        else:
            steps = int((after - anchor).total_seconds() // interval) + 1
            result = anchor + timedelta(seconds=steps * interval)
    else:
        return None
    if stop_at is not None and result > stop_at:
        return None
    return result
