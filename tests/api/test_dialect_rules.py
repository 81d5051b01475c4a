"""Seed 003's App Offering Automation Rules API over HTTP: every field and its limits, read-only refusal,
CEL checked on write, fields/sort/filters, per_page/page with the Link header, HTML escaping, roles and
tenants. Fake backend; SQLite and PostgreSQL."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest

from controlplane.services.platform import Platform
from tests.support.api import assert_envelope
from tests.support.platform import client_for, new_token
from tests.support.runs import make

RULES = "/app_offering_automation_rules"
SEED_FIELDS = {"id", "app_offering", "rulable_type", "name", "trigger", "position", "created_at", "updated_at"}
ALL_FIELDS = SEED_FIELDS | {
    "description",
    "description_html",
    "expressions",
    "condition",
    "actions",
    "actions_html",
    "last_fired_at",
    "last_error",
    "last_error_at",
}


async def rule(api: httpx.AsyncClient, aid: str, **fields: Any) -> dict[str, Any]:
    body = {"app_offering": aid, "rulable_type": "runs", "name": "r", "trigger": "on run failed", **fields}
    r = await api.post(RULES, json=body)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def links(resp: httpx.Response) -> dict[str, str]:
    return {rel: url for url, rel in re.findall(r'<([^>]+)>; rel="(\w+)"', resp.headers["link"])}


async def test_create_get_update_delete_with_every_field(api: httpx.AsyncClient) -> None:
    aid = await make(api, "watched")
    body = {
        "app_offering": {"reference": "watched"},
        "rulable_type": "runs",
        "name": "Clean up after failures",
        "trigger": "on run failed",
        "position": 7,
        "description": "Starts **cleanup**",
        "expressions": "code: run.exitCode\nfailed_run: run.id",
        "condition": "code != 0",
        "actions": 'a1: notify "failed " + failed_run\na2: start {"automation": "watched", "args": [string(code)]}',
    }
    r = await api.post(RULES, json=body)
    assert r.status_code == 201, r.text
    doc = r.json()
    assert set(doc) == ALL_FIELDS
    assert doc["app_offering"] == {"reference": "watched", "id": aid}
    assert isinstance(doc["id"], int) and doc["position"] == 7 and doc["name"] == "Clean up after failures"
    assert doc["description_html"] == "<p>Starts <strong>cleanup</strong></p>\n"
    assert doc["actions_html"].startswith("<pre><code>a1: notify &quot;failed &quot;")
    assert doc["created_at"] == doc["updated_at"] and re.fullmatch(r"\d{4}-.*T.*[+-]\d\d:\d\d", doc["created_at"])
    assert doc["last_fired_at"] is None and doc["last_error"] is None
    got = await api.get(f"{RULES}/{doc['id']}")
    assert got.status_code == 200 and got.json() == doc
    patched = await api.patch(f"{RULES}/{doc['id']}", json={"name": "renamed", "condition": None})
    assert patched.status_code == 200, patched.text
    assert patched.json()["name"] == "renamed" and patched.json()["condition"] is None
    assert patched.json()["expressions"] == body["expressions"] and patched.json()["position"] == 7
    assert patched.json()["updated_at"] >= doc["updated_at"]
    other = await make(api, "other")
    moved = await api.patch(f"{RULES}/{doc['id']}", json={"app_offering_id": other})
    assert moved.json()["app_offering"] == {"reference": "other", "id": other}
    gone = await api.delete(f"{RULES}/{doc['id']}")
    assert gone.status_code == 204 and gone.content == b""
    assert_envelope(await api.get(f"{RULES}/{doc['id']}"), 404, "NOT_FOUND")
    assert_envelope(await api.delete(f"{RULES}/{doc['id']}"), 404)
    assert_envelope(await api.get(f"{RULES}/not-a-number"), 404)
    # the 4me base path works too
    assert (await api.get(f"/v1{RULES}")).status_code == 200


async def test_required_fields_limits_and_types(api: httpx.AsyncClient) -> None:
    aid = await make(api, "a")
    missing = assert_envelope(await api.post(RULES, json={}), 422, "MISSING_FIELD")
    doc = (await api.post(RULES, json={})).json()
    assert {e["detail"].split(":")[0] for e in doc["errors"]} == {"name", "app_offering", "rulable_type", "trigger"}
    assert missing
    base = {"app_offering": aid, "rulable_type": "runs", "name": "n", "trigger": "on run failed"}
    assert (await api.post(RULES, json={**base, "name": "x" * 128})).status_code == 201
    assert_envelope(await api.post(RULES, json={**base, "name": "x" * 129}), 422, "INVALID_FIELD")
    assert_envelope(await api.post(RULES, json={**base, "name": "  "}), 422, "INVALID_FIELD")
    assert_envelope(await api.post(RULES, json={**base, "position": "1"}), 422, "INVALID_FIELD")
    assert_envelope(await api.post(RULES, json={**base, "position": 2**40}), 422, "INVALID_FIELD")
    text = "# " + "x" * (64 * 1024 - 2)
    assert (await api.post(RULES, json={**base, "description": text})).status_code == 201
    for field in ("description", "expressions", "condition", "actions"):
        too_big = await api.post(RULES, json={**base, field: "#" + text})
        assert_envelope(too_big, 422, "INVALID_FIELD")
        assert field in too_big.json()["errors"][0]["detail"]
    bad_type = assert_envelope(await api.post(RULES, json={**base, "rulable_type": "Req"}), 422)
    assert "runs, automations" in str(bad_type["detail"])
    bad_trigger = assert_envelope(await api.post(RULES, json={**base, "trigger": "on note added"}), 422)
    assert "on run finished" in str(bad_trigger["detail"])
    wrong_kind = await api.post(RULES, json={**base, "trigger": "on automation created"})
    assert_envelope(wrong_kind, 422)  # a trigger of automations on a runs rule
    assert (await api.post(RULES, json={**base, "trigger": "  On Run   Finished "})).json()["trigger"] == (
        "on run finished"
    )
    assert_envelope(await api.post(RULES, json={**base, "app_offering": "nope"}), 422, "APP_OFFERING_NOT_FOUND")
    assert_envelope(await api.post(RULES, json={**base, "color": "red"}), 422, "UNKNOWN_FIELD")
    assert_envelope(await api.post(RULES, json=[base]), 422)
    r = await api.post(RULES, content=b"{nope", headers={"content-type": "application/json"})
    assert_envelope(r, 400, "INVALID_JSON")


@pytest.mark.parametrize(
    "field", ["id", "created_at", "updated_at", "actions_html", "description_html", "last_error", "last_fired_at"]
)
async def test_read_only_fields_are_refused(api: httpx.AsyncClient, field: str) -> None:
    aid = await make(api, "a")
    base = {"app_offering": aid, "rulable_type": "runs", "name": "n", "trigger": "on run failed"}
    err = assert_envelope(await api.post(RULES, json={**base, field: "x"}), 422, "READ_ONLY_FIELD")
    assert field in str(err["detail"])
    created = await rule(api, aid)
    assert_envelope(await api.patch(f"{RULES}/{created['id']}", json={field: "x"}), 422, "READ_ONLY_FIELD")


async def test_cel_is_compiled_on_write(api: httpx.AsyncClient) -> None:
    aid = await make(api, "a")
    base = {"app_offering": aid, "rulable_type": "runs", "name": "n", "trigger": "on run failed"}
    for fields, needle in (
        ({"condition": "run.exitCode =="}, "condition"),
        ({"expressions": "x: (1 +"}, "expressions"),
        ({"expressions": "not a line"}, "expressions"),
        ({"expressions": "run: 1"}, "reserved"),
        ({"expressions": "a: 1\na: 2"}, "twice"),
        ({"actions": "explode everything"}, "unknown action"),
        ({"actions": 'start "a" +'}, "actions"),
        ({"actions": "notify"}, "needs an argument"),
    ):
        err = assert_envelope(await api.post(RULES, json={**base, **fields}), 422, "INVALID_RULE_TEXT")
        assert needle in str(err["detail"]), err
    ok = await rule(api, aid, expressions="a: 1\n# comment\nb: a +\n  1", condition="b == 2", actions="stop")
    assert_envelope(await api.patch(f"{RULES}/{ok['id']}", json={"condition": "b =="}), 422, "INVALID_RULE_TEXT")
    assert_envelope(
        await api.patch(f"{RULES}/{ok['id']}", json={"rulable_type": "automations"}), 422
    )  # its trigger is one of runs
    switched = await api.patch(
        f"{RULES}/{ok['id']}", json={"rulable_type": "automations", "trigger": "on automation disabled"}
    )
    assert switched.status_code == 200, switched.text


async def test_html_fields_escape_raw_html(api: httpx.AsyncClient) -> None:
    aid = await make(api, "a")
    doc = await rule(
        api,
        aid,
        description="<script>alert(1)</script> <img src=x onerror=alert(1)> [x](javascript:alert(1))",
        actions="notify \"<b>hi</b>\" + '&'",
    )
    assert "<script>" not in doc["description_html"] and "&lt;script&gt;" in doc["description_html"]
    assert "<img" not in doc["description_html"] and 'href="javascript' not in doc["description_html"]
    assert doc["actions_html"] == "<pre><code>notify &quot;&lt;b&gt;hi&lt;/b&gt;&quot; + &#x27;&amp;&#x27;</code></pre>"
    empty = await rule(api, aid)
    assert empty["description_html"] is None and empty["actions_html"] is None


async def test_collection_fields_sort_filters_and_pagination(api: httpx.AsyncClient) -> None:
    a, b = await make(api, "alpha"), await make(api, "beta")
    made = [
        await rule(api, a, name=f"rule {i}", position=10 - i, trigger="on run failed" if i % 2 else "on run stopped")
        for i in range(5)
    ]
    made.append(await rule(api, b, name="on beta", rulable_type="automations", trigger="on automation updated"))
    listed = await api.get(RULES)
    assert listed.status_code == 200
    assert isinstance(listed.json(), list) and [x["id"] for x in listed.json()] == [x["id"] for x in made]
    assert all(set(x) == SEED_FIELDS for x in listed.json())
    assert listed.headers["x-pagination-total-entries"] == "6" and listed.headers["x-pagination-total-pages"] == "1"
    picked = (await api.get(RULES, params={"fields": "name,last_error"})).json()
    assert all(set(x) == {"id", "name", "last_error"} for x in picked)
    assert_envelope(await api.get(RULES, params={"fields": "name,colour"}), 400, "INVALID_FIELDS")
    by_position = (await api.get(RULES, params={"sort": "position"})).json()
    assert [x["position"] for x in by_position] == sorted(x["position"] for x in made)
    by_name_desc = (await api.get(RULES, params={"sort": "-name"})).json()
    assert [x["name"] for x in by_name_desc] == sorted((x["name"] for x in made), reverse=True)
    assert_envelope(await api.get(RULES, params={"sort": "colour"}), 400, "INVALID_SORT")
    assert [x["name"] for x in (await api.get(RULES, params={"name": "rule 2"})).json()] == ["rule 2"]
    assert len((await api.get(RULES, params={"name": "!rule 2"})).json()) == 5
    assert len((await api.get(RULES, params={"trigger": "on run failed"})).json()) == 2
    assert len((await api.get(RULES, params={"rulable_type": "automations"})).json()) == 1
    assert len((await api.get(RULES, params={"app_offering": "beta"})).json()) == 1
    assert len((await api.get(RULES, params={"app_offering": a})).json()) == 5
    ids = f"{made[0]['id']},{made[3]['id']}"
    assert {x["id"] for x in (await api.get(RULES, params={"id": ids})).json()} == {made[0]["id"], made[3]["id"]}
    assert len((await api.get(RULES, params={"position": ">=8"})).json()) == 4  # 10, 9, 8 and beta's 11
    assert len((await api.get(RULES, params={"position": ">6<10"})).json()) == 3
    assert len((await api.get(RULES, params={"created_at": ">=2000-01-01"})).json()) == 6
    assert (await api.get(RULES, params={"updated_at": "<2000-01-01T00:00:00Z"})).json() == []
    assert_envelope(await api.get(RULES, params={"created_at": ">yesterday"}), 400, "INVALID_FILTER")
    # pages of 2: first, next, last; then the middle page has prev too
    page1 = await api.get(RULES, params={"per_page": 2})
    assert [x["id"] for x in page1.json()] == [made[0]["id"], made[1]["id"]]
    rels = links(page1)
    assert set(rels) == {"first", "next", "last"} and "page=2" in rels["next"] and "page=3" in rels["last"]
    assert page1.headers["x-pagination-per-page"] == "2" and page1.headers["x-pagination-current-page"] == "1"
    page2 = await api.get(rels["next"])
    assert [x["id"] for x in page2.json()] == [made[2]["id"], made[3]["id"]]
    assert set(links(page2)) == {"first", "prev", "next", "last"} and "page=1" in links(page2)["prev"]
    page3 = await api.get(links(page2)["last"])
    assert [x["id"] for x in page3.json()] == [made[4]["id"], made[5]["id"]] and "next" not in links(page3)
    assert (await api.get(RULES, params={"page": 9, "per_page": 2})).json() == []
    assert_envelope(await api.get(RULES, params={"per_page": 101}), 422)
    assert_envelope(await api.get(RULES, params={"page": 0}), 422)


async def test_roles_spaces_and_tenants(platform: Platform, api: httpx.AsyncClient) -> None:
    aid = await make(api, "a")
    doc = await rule(api, aid)
    async with client_for(platform, token=None) as anonymous:
        assert_envelope(await anonymous.get(RULES), 401)
    async with client_for(platform, await new_token(platform, role="viewer")) as viewer:
        assert (await viewer.get(f"{RULES}/{doc['id']}")).status_code == 200
        assert_envelope(await viewer.patch(f"{RULES}/{doc['id']}", json={"name": "x"}), 403)
        assert_envelope(
            await viewer.post(
                RULES, json={"app_offering": aid, "rulable_type": "runs", "name": "n", "trigger": "on run failed"}
            ),
            403,
        )
        assert_envelope(await viewer.delete(f"{RULES}/{doc['id']}"), 403)
    async with client_for(platform, await new_token(platform, role="developer")) as dev:
        assert (await dev.patch(f"{RULES}/{doc['id']}", json={"name": "dev"})).status_code == 200
    other_tenant = await new_token(platform, role="admin", tenant=f"t-{uuid.uuid4().hex[:6]}")
    async with client_for(platform, other_tenant) as stranger:
        missing = await stranger.get(f"{RULES}/{doc['id']}")
        never = await stranger.get(f"{RULES}/99999999")
        assert_envelope(missing, 404) and assert_envelope(never, 404)
        assert missing.json()["errors"][0]["detail"].replace(str(doc["id"]), "N") == never.json()["errors"][0][
            "detail"
        ].replace("99999999", "N")
        assert (await stranger.get(RULES)).json() == []
        err = await stranger.post(
            RULES, json={"app_offering": aid, "rulable_type": "runs", "name": "n", "trigger": "on run failed"}
        )
        assert_envelope(err, 422, "APP_OFFERING_NOT_FOUND")
        assert_envelope(await stranger.delete(f"{RULES}/{doc['id']}"), 404)
