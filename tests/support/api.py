"""Assertions about the HTTP API's answers."""

from __future__ import annotations

import httpx

PREFIXES = ["/api/v1/automations", "/api/workflows/automations"]


def assert_envelope(resp: httpx.Response, status: int, code: str | None = None) -> dict[str, object]:
    assert resp.status_code == status, resp.text
    doc = resp.json()
    assert set(doc) == {"errors", "traceId"}
    assert doc["traceId"] == resp.headers["x-request-id"]
    first: dict[str, object] = doc["errors"][0]
    assert {"code", "title"} <= set(first)
    if code:
        assert first["code"] == code, first
    return first
