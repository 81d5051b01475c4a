"""Tokens and roles: 401 without or with a bad token, 403 for a role that may not, 404 across tenants."""

from __future__ import annotations

import httpx
import pytest

from controlplane.services.platform import Platform
from tests.support.api import assert_envelope
from tests.support.platform import client_for, new_token
from tests.support.runs import make

BASE = "/api/v1/automations"


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer nope", "Basic abc", "bearer cp_x", "Token abc"])
async def test_missing_or_bad_token_is_401(platform: Platform, header: str | None) -> None:
    async with client_for(platform, token=None) as api:
        headers = {"Authorization": header} if header else {}
        r = await api.get(BASE, headers=headers)
        assert_envelope(r, 401, "UNAUTHORIZED")
        assert r.headers["www-authenticate"] == "Bearer"


async def test_role_matrix(platform: Platform, api: httpx.AsyncClient) -> None:
    aid = await make(api, "target")
    allowed = {
        "viewer": {"read"},
        "operator": {"read", "run"},
        "developer": {"read", "run", "write"},
        "admin": {"read", "run", "write", "admin"},
    }
    for role, grants in allowed.items():
        token = await new_token(platform, role=role)
        async with client_for(platform, token) as c:
            read = await c.get(f"{BASE}/{aid}")
            run = await c.post(f"{BASE}/{aid}/runs", json={"context": "api_sync"})
            write = await c.post(BASE, json={"name": f"by-{role}", "code": "x"})
            admin = await c.post("/api/v1/tokens", json={"user": f"u-{role}", "role": "viewer"})
            for action, resp, ok in (
                ("read", read, 200),
                ("run", run, 200),
                ("write", write, 201),
                ("admin", admin, 201),
            ):
                if action in grants:
                    assert resp.status_code == ok, (role, action, resp.text)
                else:
                    assert_envelope(resp, 403, "FORBIDDEN")


async def test_other_tenants_objects_are_404_and_identical_to_missing(
    platform: Platform, api: httpx.AsyncClient
) -> None:
    aid = await make(api, "mine")
    run_id = (await api.post(f"{BASE}/{aid}/runs", json={"context": "api_sync"})).json()["id"]
    token = await new_token(platform, role="admin", tenant="intruder")
    async with client_for(platform, token) as other:
        for path in (
            f"{BASE}/{aid}",
            f"{BASE}/{aid}/runs",
            f"{BASE}/{aid}/runs/{run_id}",
            f"{BASE}/{aid}/runs/{run_id}/logs",
            f"{BASE}/{aid}/runs/{run_id}/artifacts",
        ):
            theirs = await other.get(path)
            missing = await other.get(path.replace(aid, "00000000-0000-0000-0000-000000000000"))
            assert theirs.status_code == missing.status_code == 404
            a, b = theirs.json(), missing.json()
            a.pop("traceId"), b.pop("traceId")
            assert a["errors"][0]["code"] == b["errors"][0]["code"] == "NOT_FOUND"
            assert a["errors"][0]["title"] == b["errors"][0]["title"]
        assert_envelope(await other.put(f"{BASE}/{aid}", json={"name": "stolen"}), 404)
        assert_envelope(await other.delete(f"{BASE}/{aid}"), 404)
        assert_envelope(await other.post(f"{BASE}/{aid}/runs", json={"context": "api"}), 404)
        assert (await other.get(BASE)).json()["data"] == []


async def test_token_api_stays_in_the_admins_tenant(platform: Platform, api: httpx.AsyncClient) -> None:
    r = await api.post("/api/v1/tokens", json={"user": "bob", "role": "operator"})
    assert r.status_code == 201
    doc = r.json()
    async with client_for(platform, doc["token"]) as bob:
        assert (await bob.get(BASE)).status_code == 200
    assert_envelope(await api.post("/api/v1/tokens", json={"user": "bob", "role": "emperor"}), 422)


async def test_health_ready_and_metrics_need_no_token(platform: Platform) -> None:
    async with client_for(platform, token=None) as c:
        assert (await c.get("/healthz")).json() == {"status": "ok"}
        ready = await c.get("/readyz")
        assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok", "backend": "ok"}
        m = await c.get("/metrics")
        assert m.status_code == 200 and "controlplane_http_requests_total" in m.text


async def test_metrics_token_setting(make_platform, database_url: str) -> None:  # type: ignore[no-untyped-def]
    platform = await make_platform(database_url, metrics_token="scrape-secret")
    async with client_for(platform, token=None) as c:
        assert_envelope(await c.get("/metrics"), 401)
        assert (await c.get("/metrics", headers={"Authorization": "Bearer scrape-secret"})).status_code == 200


async def test_body_too_large_is_413(make_platform, database_url: str) -> None:  # type: ignore[no-untyped-def]
    platform = await make_platform(database_url, max_body_bytes=1000)
    async with client_for(platform) as c:
        r = await c.post(BASE, content=b"x" * 5000, headers={"content-type": "application/json"})
        assert_envelope(r, 413, "PAYLOAD_TOO_LARGE")
