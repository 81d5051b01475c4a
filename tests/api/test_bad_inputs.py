"""Bad input gets a 4xx with the error envelope, never a 500 (issue 14 finding 5, found by schemathesis and
by hand)."""

from __future__ import annotations

import httpx
import pytest

BASE = "/api/v1/automations"


async def _automation(api: httpx.AsyncClient) -> str:
    r = await api.post(BASE, json={"name": "bad-inputs", "code": "print(1)"})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _client_error(r: httpx.Response) -> None:
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    assert r.json()["errors"][0]["code"], r.text


@pytest.mark.parametrize("content_type", ["application/json", None])
async def test_a_run_body_of_invalid_utf8(api: httpx.AsyncClient, content_type: str | None) -> None:
    aid = await _automation(api)
    headers = {"Content-Type": content_type} if content_type else {}
    _client_error(await api.post(f"{BASE}/{aid}/runs", content=b'{"input": "\xff\xfe"}', headers=headers))


async def test_json_nested_deeper_than_any_body_needs(api: httpx.AsyncClient) -> None:
    aid = await _automation(api)
    deep = b"[" * 100_000 + b"]" * 100_000
    r = await api.post(
        f"{BASE}/{aid}/runs", content=b'{"input": ' + deep + b"}", headers={"Content-Type": "application/json"}
    )
    _client_error(r)
    _client_error(await api.post(BASE, content=deep, headers={"Content-Type": "application/json"}))


async def test_a_filter_number_too_large_for_a_column(api: httpx.AsyncClient) -> None:
    aid = await _automation(api)
    _client_error(await api.get(f"{BASE}/{aid}/runs", params={"filter": "exitCode eq 99999999999999999999999"}))


async def test_a_scripting_log_offset_beyond_any_page(api: httpx.AsyncClient) -> None:
    aid = await _automation(api)
    _client_error(await api.get(f"/scripting/log/script/{aid}", params={"offset": "99999999999999999999"}))


async def test_a_rule_id_of_superscript_digits(api: httpx.AsyncClient) -> None:
    r = await api.get("/app_offering_automation_rules/%C2%B2")
    assert r.status_code == 404, r.text


async def test_an_automation_without_a_timeout_matches_its_schema(api: httpx.AsyncClient) -> None:
    aid = await _automation(api)
    body = (await api.get(f"{BASE}/{aid}")).json()
    schema = (await api.get("/openapi.json")).json()["components"]["schemas"]["AutomationPublic"]
    missing = [name for name in schema.get("required", []) if name not in body]
    assert missing == []


@pytest.mark.parametrize(
    "body",
    [
        {"args": ["ok", "nul\x00inside"]},
        {"env": {"GREETING": "nul\x00inside"}},
        {"args": ["x" * (128 * 1024)]},
        {"args": ["y" * 100_000] * 11},
    ],
    ids=["nul-arg", "nul-env", "arg-over-128k", "total-over-1m"],
)
async def test_what_execve_would_refuse_is_refused_at_create(api: httpx.AsyncClient, body: dict[str, object]) -> None:
    r = await api.post(BASE, json={"name": "execve", "code": "print(1)", **body})
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["code"] == "VALIDATION_FAILED"


async def test_run_args_and_variables_are_held_to_the_same(api: httpx.AsyncClient) -> None:
    aid = await _automation(api)
    r = await api.post(f"{BASE}/{aid}/runs", json={"args": ["a\x00b"]})
    assert r.status_code == 422, r.text
    r = await api.put("/api/v1/variables/GREETING", json={"value": "a\x00b"})  # its own check, services/tenancy
    assert r.status_code == 422 and r.json()["errors"][0]["code"] == "INVALID_VALUE", r.text
    r = await api.get("/api/core/automations/job/bad-inputs", params={"args": "a\x00b,c"})
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "INVALID_ARGS", r.text
