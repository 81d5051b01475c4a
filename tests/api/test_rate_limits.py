"""Per-user rate limits over HTTP: seed 004's tiers by default, 429 with the envelope, Retry-After and
X-RateLimit-* past them, keyed by user (not address), shared by replicas, never on health endpoints."""

from __future__ import annotations

import time

import httpx

from controlplane.services.platform import Platform
from controlplane.services.tenancy import tenants as tenancy
from tests.support.api import assert_envelope
from tests.support.clock import FakeClock
from tests.support.platform import ADMIN_TOKEN, PlatformFactory, client_for, new_token

BASE = "/api/v1/automations"
LIMIT_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")


def steady_minute(*platforms: Platform) -> FakeClock:
    """The limit is a sliding minute: a burst must not be split by a boundary, so the platforms' limiters
    get one clock (replicas agree on the time) standing 10 s into the next minute."""
    clock = FakeClock((time.time() // 60 + 1) * 60 + 10)
    for platform in platforms:
        platform.ratelimiter.clock = clock
    return clock


async def test_seed_tiers_by_default_on_every_authenticated_response(api: httpx.AsyncClient) -> None:
    r = await api.get(BASE)
    assert r.status_code == 200
    assert r.headers["x-ratelimit-limit"] == "1000" and int(r.headers["x-ratelimit-remaining"]) <= 999
    assert int(r.headers["x-ratelimit-reset"]) > time.time()
    w = await api.post(BASE, json={"name": "tiers", "code": "print(1)"})
    assert w.status_code == 201 and w.headers["x-ratelimit-limit"] == "100"
    missing = await api.get(f"{BASE}/no-such-automation")  # errors carry them too
    assert_envelope(missing, 404)
    assert missing.headers["x-ratelimit-limit"] == "1000"


async def test_past_the_limit_is_429_with_retry_after_and_limit_headers(
    make_platform: PlatformFactory, database_url: str
) -> None:
    platform = await make_platform(database_url, rate_limit_reads_per_minute=5, rate_limit_writes_per_minute=3)
    steady_minute(platform)
    async with client_for(platform) as api:
        remaining = []
        for _ in range(5):
            r = await api.get(BASE)
            assert r.status_code == 200, r.text
            assert r.headers["x-ratelimit-limit"] == "5"
            remaining.append(int(r.headers["x-ratelimit-remaining"]))
        assert remaining == [4, 3, 2, 1, 0]
        r = await api.get(BASE)
        first = assert_envelope(r, 429, "RATE_LIMITED")
        assert "5 reads per minute" in str(first["detail"])
        assert 1 <= int(r.headers["retry-after"]) <= 61
        assert r.headers["x-ratelimit-limit"] == "5" and r.headers["x-ratelimit-remaining"] == "0"
        assert int(r.headers["x-ratelimit-reset"]) >= int(time.time()) + int(r.headers["retry-after"]) - 1
        # writes are the other tier, with their own budget
        statuses = [(await api.post(BASE, json={"name": f"w{i}", "code": "x"})).status_code for i in range(4)]
        assert statuses == [201, 201, 201, 429]


async def test_keyed_by_user_not_by_address_or_token(make_platform: PlatformFactory, database_url: str) -> None:
    platform = await make_platform(database_url, rate_limit_reads_per_minute=3)
    steady_minute(platform)
    tenant = platform.settings.bootstrap_tenant
    second_admin_token, *_ = await tenancy.issue_token(platform.sessions, tenant=tenant, user="admin", role="admin")
    other = await new_token(platform, role="viewer")
    async with (
        client_for(platform) as admin,
        client_for(platform, second_admin_token) as same_user,
        client_for(platform, other) as someone_else,
    ):
        assert [(await admin.get(BASE)).status_code for _ in range(2)] == [200, 200]
        # another token of the same user draws on the same budget
        assert [(await same_user.get(BASE)).status_code for _ in range(2)] == [200, 429]
        assert (await admin.get(BASE)).status_code == 429
        # another user on the same address is not affected
        r = await someone_else.get(BASE)
        assert r.status_code == 200 and r.headers["x-ratelimit-remaining"] == "2"


async def test_limits_hold_across_replicas(make_platform: PlatformFactory, database_url: str) -> None:
    one = await make_platform(database_url, rate_limit_reads_per_minute=5)
    two = await make_platform(database_url, rate_limit_reads_per_minute=5)
    steady_minute(one, two)
    async with client_for(one) as a, client_for(two) as b:
        codes = [(await (a if i % 2 else b).get(BASE)).status_code for i in range(8)]
    assert codes == [200] * 5 + [429] * 3


async def test_health_endpoints_and_unauthenticated_requests_are_not_limited(
    make_platform: PlatformFactory, database_url: str
) -> None:
    platform = await make_platform(database_url, rate_limit_reads_per_minute=2)
    async with client_for(platform, token=None) as anon:
        for path in ("/healthz", "/readyz", "/metrics"):
            for _ in range(6):
                r = await anon.get(path)
                assert r.status_code == 200, (path, r.text)
                assert not any(h in r.headers for h in LIMIT_HEADERS), path
        for _ in range(4):
            r = await anon.get(BASE)
            assert_envelope(r, 401, "UNAUTHORIZED")
            assert "x-ratelimit-limit" not in r.headers


async def test_zero_turns_a_tier_off(make_platform: PlatformFactory, database_url: str) -> None:
    platform = await make_platform(database_url, rate_limit_reads_per_minute=0, rate_limit_writes_per_minute=2)
    async with client_for(platform, ADMIN_TOKEN) as api:
        for _ in range(12):
            r = await api.get(BASE)
            assert r.status_code == 200 and "x-ratelimit-limit" not in r.headers
        w = await api.post(BASE, json={"name": "off", "code": "x"})
        assert w.status_code == 201 and w.headers["x-ratelimit-limit"] == "2"
