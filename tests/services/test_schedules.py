"""Schedule arithmetic: seed 000's cron examples, time zones across DST, and seed 004's interval schedules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controlplane.core.errors import ValidationFailed
from controlplane.services.scheduling.ticks import check_cron, next_fire, zone

STOCKHOLM = ZoneInfo("Europe/Stockholm")
FRIDAY_5PM = datetime(2026, 11, 20, 17, 0, tzinfo=UTC)
SEED_000 = ["* * * * *", "0 * * * *", "0 0 * * *", "*/5 * * * *", "0 9 * * 1-5"]


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def cron_next(
    expr: str,
    after: datetime,
    tz: str = "UTC",
    *,
    start_at: datetime | None = None,
    stop_at: datetime | None = None,
) -> datetime | None:
    return next_fire(cron=expr, interval=None, tz=tz, start_at=start_at, stop_at=stop_at, after=after)


def every(
    seconds: int,
    after: datetime,
    *,
    tz: str = "UTC",
    start_at: datetime | None = None,
    stop_at: datetime | None = None,
) -> datetime | None:
    return next_fire(cron=None, interval=seconds, tz=tz, start_at=start_at, stop_at=stop_at, after=after)


def assert_utc(value: datetime | None) -> datetime:
    assert value is not None
    assert value.utcoffset() == timedelta(0)
    return value


# --- cron: validation --------------------------------------------------------------------------------


@pytest.mark.parametrize("expr", [*SEED_000, "0  9 * * 1-5", "15 3 1 * *", "0 0 * JAN-MAR MON", "0 0 29 2 *"])
def test_valid_cron_expressions_pass(expr: str) -> None:
    check_cron(expr)


@pytest.mark.parametrize(
    "expr",
    [
        "* * * * * *",  # 6 fields (seconds)
        "0 9 * * 1-5 2026",  # 6 fields (year)
        "* * * *",
        "",
        "   ",
        "junk",
        "every day at nine",
        "@daily",
        "@hourly",
        "60 * * * *",
        "* 24 * * *",
        "0 0 0 * *",
        "0 0 * 13 *",
        "0 0 * * 8",
        "*/0 * * * *",
        "a b c d e",
        "0 0 31 2 *",  # never fires
        "0 0 31 4 *",  # never fires
        "R * * * *",  # croniter's random minute: a different next fire on every evaluation
        "r(0-9) * * * *",
        "H * * * *",
    ],
)
def test_malformed_cron_raises_validation_failed(expr: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        check_cron(expr)
    assert info.value.code == "INVALID_SCHEDULE"


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.text(max_size=40),
        st.lists(
            st.sampled_from(["*", "0", "5", "*/5", "1-5", "1,2", "L", "W", "#", "?", "-", "/", "R", "60", "MON", "1W"]),
            min_size=1,
            max_size=7,
        ).map(" ".join),
    )
)
def test_check_cron_raises_only_validation_failed(expr: str) -> None:
    try:
        check_cron(expr)
    except ValidationFailed:
        return
    # whatever passes validation can be evaluated
    assert_utc(cron_next(expr, FRIDAY_5PM))


# --- cron: seed 000's examples from fixed instants ---------------------------------------------------


def test_reference_instant_is_a_friday() -> None:
    assert FRIDAY_5PM.weekday() == 4
    assert utc(2026, 11, 23).weekday() == 0


@pytest.mark.parametrize(
    ("expr", "after", "expected"),
    [
        ("* * * * *", FRIDAY_5PM, utc(2026, 11, 20, 17, 1)),
        ("* * * * *", utc(2026, 11, 20, 17, 0, 30), utc(2026, 11, 20, 17, 1)),
        ("* * * * *", utc(2026, 12, 31, 23, 59, 59), utc(2027, 1, 1, 0, 0)),
        ("0 * * * *", FRIDAY_5PM, utc(2026, 11, 20, 18, 0)),
        ("0 * * * *", utc(2026, 11, 20, 17, 59, 59), utc(2026, 11, 20, 18, 0)),
        ("0 * * * *", utc(2026, 11, 20, 23, 30), utc(2026, 11, 21, 0, 0)),
        ("0 0 * * *", FRIDAY_5PM, utc(2026, 11, 21, 0, 0)),
        ("0 0 * * *", utc(2026, 11, 30, 0, 0), utc(2026, 12, 1, 0, 0)),
        ("*/5 * * * *", FRIDAY_5PM, utc(2026, 11, 20, 17, 5)),
        ("*/5 * * * *", utc(2026, 11, 20, 17, 3, 59), utc(2026, 11, 20, 17, 5)),
        ("*/5 * * * *", utc(2026, 11, 20, 17, 55), utc(2026, 11, 20, 18, 0)),
        ("0 9 * * 1-5", FRIDAY_5PM, utc(2026, 11, 23, 9, 0)),  # Friday evening -> Monday morning
        ("0 9 * * 1-5", utc(2026, 11, 21, 12, 0), utc(2026, 11, 23, 9, 0)),  # Saturday -> Monday
        ("0 9 * * 1-5", utc(2026, 11, 23, 8, 59), utc(2026, 11, 23, 9, 0)),
        ("0 9 * * 1-5", utc(2026, 11, 23, 9, 0), utc(2026, 11, 24, 9, 0)),  # strictly after
        ("0 9 * * 1-5", utc(2026, 11, 19, 9, 0), utc(2026, 11, 20, 9, 0)),  # Thursday -> Friday
    ],
)
def test_seed_000_examples(expr: str, after: datetime, expected: datetime) -> None:
    assert assert_utc(cron_next(expr, after)) == expected


@pytest.mark.parametrize(("expr", "step"), [("* * * * *", 60), ("0 * * * *", 3600), ("*/5 * * * *", 300)])
def test_regular_crons_step_evenly(expr: str, step: int) -> None:
    t = assert_utc(cron_next(expr, FRIDAY_5PM))
    for _ in range(50):
        nxt = assert_utc(cron_next(expr, t))
        assert (nxt - t).total_seconds() == step
        t = nxt


def test_weekday_cron_walks_a_fortnight() -> None:
    t, fires = FRIDAY_5PM, []
    for _ in range(10):
        t = assert_utc(cron_next("0 9 * * 1-5", t))
        fires.append(t)
    assert [f.day for f in fires] == [23, 24, 25, 26, 27, 30, 1, 2, 3, 4]
    assert all(f.hour == 9 and f.minute == 0 and f.weekday() < 5 for f in fires)


def test_aware_after_in_another_zone_is_the_same_instant() -> None:
    after = FRIDAY_5PM.astimezone(ZoneInfo("Asia/Tokyo"))
    assert cron_next("0 9 * * 1-5", after) == utc(2026, 11, 23, 9, 0)


# --- cron: time zones --------------------------------------------------------------------------------


def test_daily_nine_in_stockholm_is_eight_utc_in_winter() -> None:
    assert cron_next("0 9 * * *", utc(2026, 1, 15, 12), tz="Europe/Stockholm") == utc(2026, 1, 16, 8)
    assert cron_next("0 9 * * *", utc(2026, 12, 1, 7, 59), tz="Europe/Stockholm") == utc(2026, 12, 1, 8)


def test_daily_nine_in_stockholm_is_seven_utc_in_summer() -> None:
    assert cron_next("0 9 * * *", utc(2026, 7, 15, 12), tz="Europe/Stockholm") == utc(2026, 7, 16, 7)
    assert cron_next("0 9 * * *", utc(2026, 7, 15, 6, 59), tz="Europe/Stockholm") == utc(2026, 7, 15, 7)


def test_weekday_cron_in_stockholm() -> None:
    assert cron_next("0 9 * * 1-5", FRIDAY_5PM, tz="Europe/Stockholm") == utc(2026, 11, 23, 8)


@pytest.mark.parametrize(
    ("start", "change", "before_hour", "after_hour"),
    [
        (utc(2026, 3, 25, 12), utc(2026, 3, 29), 8, 7),  # spring forward on Sunday 29 March 2026
        (utc(2026, 10, 21, 12), utc(2026, 10, 25), 7, 8),  # fall back on Sunday 25 October 2026
    ],
)
def test_daily_nine_stays_nine_local_across_dst(
    start: datetime, change: datetime, before_hour: int, after_hour: int
) -> None:
    t = start
    for _ in range(8):
        t = assert_utc(cron_next("0 9 * * *", t, tz="Europe/Stockholm"))
        local = t.astimezone(STOCKHOLM)
        assert (local.hour, local.minute) == (9, 0), local
        assert t.hour == (before_hour if t < change else after_hour), t


@pytest.mark.parametrize("start", [utc(2026, 3, 28, 22), utc(2026, 10, 24, 22)])
def test_hourly_cron_in_stockholm_fires_every_real_hour_across_dst(start: datetime) -> None:
    t = start
    for _ in range(8):
        nxt = assert_utc(cron_next("0 * * * *", t, tz="Europe/Stockholm"))
        assert nxt - t == timedelta(hours=1)
        t = nxt


@settings(max_examples=200, deadline=None)
@given(
    expr=st.sampled_from([*SEED_000, "0 9 * * *", "30 2 * * *", "0 3 * * 0"]),
    tz=st.sampled_from(["UTC", "Europe/Stockholm", "America/New_York", "Australia/Sydney", "Asia/Kolkata"]),
    after=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 1, 1)).map(
        lambda d: d.replace(tzinfo=UTC)
    ),
)
def test_cron_next_is_always_strictly_later_and_utc(expr: str, tz: str, after: datetime) -> None:
    nxt = assert_utc(cron_next(expr, after, tz=tz))
    assert after < nxt <= after + timedelta(days=8)
    if expr in ("0 9 * * *", "0 9 * * 1-5"):
        local = nxt.astimezone(ZoneInfo(tz))
        assert (local.hour, local.minute) == (9, 0)


def test_cron_respects_start_and_stop() -> None:
    start = utc(2026, 12, 1, 10, 30)
    assert cron_next("0 * * * *", FRIDAY_5PM, start_at=start) == utc(2026, 12, 1, 11)
    stop = utc(2026, 11, 20, 17, 30)
    assert cron_next("*/5 * * * *", utc(2026, 11, 20, 17, 20), stop_at=stop) == utc(2026, 11, 20, 17, 25)
    assert cron_next("*/5 * * * *", utc(2026, 11, 20, 17, 25), stop_at=stop) == stop  # the stop instant itself
    assert cron_next("*/5 * * * *", utc(2026, 11, 20, 17, 30), stop_at=stop) is None
    assert cron_next("0 9 * * 1-5", FRIDAY_5PM, stop_at=utc(2026, 11, 22)) is None


# --- interval schedules ------------------------------------------------------------------------------

START = utc(2026, 1, 1, 0, 0)


def test_interval_steps_from_start() -> None:
    assert every(30, utc(2026, 1, 1, 0, 0, 45), start_at=START) == utc(2026, 1, 1, 0, 1)
    assert every(30, utc(2026, 1, 1, 0, 1, 0), start_at=START) == utc(2026, 1, 1, 0, 1, 30)  # strictly after
    assert every(30, START, start_at=START) == utc(2026, 1, 1, 0, 0, 30)
    assert every(3600, utc(2026, 11, 20, 17, 0, 1), start_at=START) == utc(2026, 11, 20, 18)
    assert every(7, utc(2026, 1, 1, 0, 1), start_at=START) == START + timedelta(seconds=63)


def test_walking_an_interval_visits_every_step() -> None:
    t, fires = START - timedelta(hours=1), []
    for _ in range(20):
        t = assert_utc(every(45, t, start_at=START))
        fires.append(t)
    assert fires == [START + timedelta(seconds=45 * k) for k in range(20)]


def test_future_start_is_the_first_fire() -> None:
    start = utc(2026, 12, 24, 18)
    assert assert_utc(every(30, FRIDAY_5PM, start_at=start)) == start
    assert every(86_400, start - timedelta(microseconds=1), start_at=start) == start


def test_interval_without_start_counts_from_now() -> None:
    assert every(90, FRIDAY_5PM) == FRIDAY_5PM + timedelta(seconds=90)


def test_interval_respects_stop() -> None:
    stop = utc(2026, 1, 1, 0, 2)
    assert every(30, utc(2026, 1, 1, 0, 1, 10), start_at=START, stop_at=stop) == utc(2026, 1, 1, 0, 1, 30)
    assert every(30, utc(2026, 1, 1, 0, 1, 30), start_at=START, stop_at=stop) == stop  # inclusive
    assert every(30, stop, start_at=START, stop_at=stop) is None
    assert every(30, utc(2026, 1, 1, 0, 1, 45), start_at=START, stop_at=utc(2026, 1, 1, 0, 1, 59)) is None
    assert every(30, FRIDAY_5PM, start_at=START, stop_at=stop) is None
    # a future start after the stop never fires
    assert every(30, START, start_at=utc(2026, 2, 1), stop_at=utc(2026, 1, 15)) is None


def test_local_start_in_stockholm_steps_in_real_seconds_across_dst() -> None:
    """Seed 004 gives startAt in the schedule's time zone; the steps are real seconds, results are UTC."""
    start = datetime(2026, 3, 28, 12, 0, tzinfo=STOCKHOLM)  # 11:00 UTC, the day before spring forward
    after = utc(2026, 3, 29, 12, 30)  # after the change
    nxt = assert_utc(every(3600, after, start_at=start, tz="Europe/Stockholm"))
    assert nxt > after
    assert nxt == utc(2026, 3, 29, 13, 0)
    assert (nxt - start).total_seconds() % 3600 == 0
    fall_start = datetime(2026, 10, 24, 12, 0, tzinfo=STOCKHOLM)  # 10:00 UTC
    nxt = assert_utc(every(86_400, utc(2026, 10, 26), start_at=fall_start, tz="Europe/Stockholm"))
    assert nxt == utc(2026, 10, 26, 10, 0)  # 86,400 real seconds apart, so 11:00 local after the change


def test_future_local_start_is_returned_in_utc() -> None:
    start = datetime(2027, 1, 1, 0, 0, tzinfo=STOCKHOLM)
    assert assert_utc(every(60, FRIDAY_5PM, start_at=start, tz="Europe/Stockholm")) == utc(2026, 12, 31, 23)


@settings(max_examples=300, deadline=None)
@given(
    interval=st.integers(min_value=1, max_value=10 * 86_400),
    start_offset=st.integers(min_value=-400 * 86_400, max_value=30 * 86_400),
    tz=st.sampled_from(["UTC", "Europe/Stockholm", "America/New_York"]),
)
def test_interval_properties(interval: int, start_offset: int, tz: str) -> None:
    after = FRIDAY_5PM
    start = (after + timedelta(seconds=start_offset)).astimezone(ZoneInfo(tz))
    nxt = assert_utc(every(interval, after, start_at=start, tz=tz))
    assert nxt > after
    if start > after:
        assert nxt == start
    else:
        steps = (nxt - start).total_seconds() / interval
        assert steps == int(steps) >= 1
        assert nxt - timedelta(seconds=interval) <= after


def test_no_cron_and_no_interval_never_fires() -> None:
    assert next_fire(cron=None, interval=None, tz="UTC", start_at=None, stop_at=None, after=FRIDAY_5PM) is None


# --- time zones --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["UTC", "Europe/Stockholm", "America/New_York", "Asia/Kolkata"])
def test_known_zones(name: str) -> None:
    assert zone(name) == ZoneInfo(name)


@pytest.mark.parametrize(
    "name",
    [
        "Nowhere/City",
        "Mars/Olympus_Mons",
        "",
        "Europe",  # a directory of the zone database
        "Europe/",
        "../../etc/passwd",
        "/etc/localtime",
        "Europe/Stockholm\x00",
        "x" * 300,  # longer than a file name may be
        "zone.tab",
    ],
)
def test_unknown_zone_raises_validation_failed(name: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        zone(name)
    assert info.value.code == "INVALID_SCHEDULE"
    with pytest.raises(ValidationFailed):
        cron_next("0 9 * * *", FRIDAY_5PM, tz=name)
    with pytest.raises(ValidationFailed):
        every(60, FRIDAY_5PM, tz=name)
