"""The scheduler across two `controlplane serve` replicas on one PostgreSQL: each tick of a schedule fires
once, whichever replica holds the lease, and when the holder is killed (-9) the other one takes the lease
over within seconds and goes on with the same series (at most one catch-up run for the ticks missed).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.support.e2e import BASE, Server

pytestmark = pytest.mark.docker

LEASE = 3.0
POLL = 0.5
INTERVAL = 2
ENV = {
    "CP_SCHEDULER_LEASE_SECONDS": str(LEASE),
    "CP_SCHEDULER_POLL_SECONDS": str(POLL),
    "CP_REPLICA_DEAD_AFTER_SECONDS": "4",
    "CP_REPLICA_HEARTBEAT_SECONDS": "1",
}
FIRES = "controlplane_schedule_fires_total"


def when(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def scheduled_runs(srv: Server, aid: str) -> list[dict[str, Any]]:
    r = srv.client.get(f"{BASE}/{aid}/runs", params={"limit": 100, "sort": "+createdAt"})
    assert r.status_code == 200, r.text
    return [run for run in r.json()["data"] if run["context"] == "scheduled"]


def ticks(srv: Server, aid: str) -> list[datetime]:
    return sorted(when(run["scheduledStartTime"]) for run in scheduled_runs(srv, aid))


def test_one_fire_per_tick_and_lease_taken_over_after_kill_9(make_server: Callable[..., Server]) -> None:
    a = make_server(database="postgres", env=ENV)
    b = make_server(share=a, env=ENV)
    created = a.client.post(
        BASE,
        json={"name": "every-2s", "code": "print('tick')\n", "timeoutSeconds": 30, "schedules": [{"interval": 2}]},
    )
    assert created.status_code == 201, created.text
    aid = created.json()["id"]

    time.sleep(5 * INTERVAL + 1)
    fired = {srv: srv.metric(FIRES) for srv in (a, b)}
    holders = [srv for srv, n in fired.items() if n > 0]
    assert len(holders) == 1, f"fires per replica: {[fired[a], fired[b]]} (one lease holder expected)"
    holder, other = (a, b) if holders[0] is a else (b, a)
    before = ticks(a, aid)
    assert len(before) >= 4, before

    holder.kill()
    killed = datetime.now(UTC)
    end = time.monotonic() + LEASE + POLL + INTERVAL + 10
    while other.metric(FIRES) == 0:
        assert time.monotonic() < end, f"the lease was not taken over:\n{other.log_text()}"
        time.sleep(0.1)
    took_over = datetime.now(UTC)
    print(f"the other replica fired {(took_over - killed).total_seconds():.1f}s after kill -9 of the holder")
    assert took_over - killed < timedelta(seconds=LEASE + POLL + INTERVAL + 3)
    time.sleep(3 * INTERVAL + 1)

    fired_at = ticks(other, aid)
    assert len(fired_at) == len(set(fired_at)), f"a tick fired twice: {fired_at}"
    assert fired_at[: len(before)] == before
    assert len(fired_at) >= len(before) + 3, fired_at
    steps = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(fired_at)]
    # one series: every step a whole number of intervals; one longer step where the ticks missed during the
    # take-over became a single catch-up run, no burst
    assert all(s > 0 and s % INTERVAL == 0 for s in steps), steps
    assert sum(1 for s in steps if s > INTERVAL) <= 1, steps
    assert other.metric(FIRES, catch_up="true") <= 1

    # every scheduled run ends, including one the killed replica was supervising (taken over)
    deadline = time.monotonic() + 40
    while True:
        runs = scheduled_runs(other, aid)
        if all(run["status"] in ("finished", "failed") for run in runs):
            break
        assert time.monotonic() < deadline, [(r["id"], r["status"]) for r in runs]
        time.sleep(0.2)
    assert [r for r in runs if r["status"] != "finished"] == [], runs
    schedule = other.client.get(f"{BASE}/{aid}").json()["schedules"][0]
    assert when(schedule["lastStartedAt"]) >= took_over - timedelta(seconds=INTERVAL + 1), schedule
    assert when(schedule["nextRunAt"]) > when(schedule["lastStartedAt"]), schedule
    other.client.post(f"{BASE}/{aid}/actions/disable")
    holder.start()  # so the fixture's clean-up stops it like the other one
