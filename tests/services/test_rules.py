"""The rules engine (services/rules/engine.py) end to end over HTTP on the fake backend: every trigger and
action type, position order, failure isolation, the loop cut, and one evaluation per event with two
replicas on one database. SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from controlplane.services.events import hooks as run_hooks
from controlplane.services.platform import Platform
from tests.support.platform import PlatformFactory, client_for, new_token
from tests.support.runs import finished, launched_input, make, run_sync

RULES = "/app_offering_automation_rules"
BASE = "/api/v1/automations"


async def rule(api: httpx.AsyncClient, aid: str, trigger: str, **fields: Any) -> int:
    kind = "runs" if trigger.startswith("on run") else "automations"
    body = {"app_offering": aid, "rulable_type": kind, "name": trigger, "trigger": trigger, **fields}
    r = await api.post(RULES, json=body)
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


async def evaluations(api: httpx.AsyncClient, rule_id: int, count: int = 1) -> list[dict[str, Any]]:
    """The rule's evaluations, oldest first, once there are ``count`` of them."""
    for _ in range(600):
        await run_hooks.drain()
        items = (await api.get(f"{RULES}/{rule_id}/evaluations", params={"per_page": 100})).json()
        if len(items) >= count:
            return list(reversed(items))
        await asyncio.sleep(0.02)
    raise AssertionError(f"rule {rule_id} has {len(items)} evaluation(s), not {count}")


async def runs_of(api: httpx.AsyncClient, aid: str) -> list[dict[str, Any]]:
    return (await api.get(f"{BASE}/{aid}/runs", params={"sort": "+createdAt"})).json()["data"]  # type: ignore[no-any-return]


async def test_a_failed_run_starts_a_cleanup_with_args_and_input_from_expressions(
    platform: Platform, api: httpx.AsyncClient
) -> None:
    job = await make(api, "nightly", exitCode=3, stderr="boom\n")
    cleanup = await make(api, "cleanup", stdout="cleaned\n")
    rid = await rule(
        api,
        job,
        "on run failed",
        expressions="code: run.exitCode\nwho: run.automationName + '#' + string(code)",
        condition='code == 3 && "NON_ZERO_EXIT" in run.errorCodes',
        actions='a1: notify "failed: " + who\n'
        'a2: start {"automation": "cleanup", "args": ["--run", run.id, code], "input": {"who": who, "code": code}}',
    )
    failed = await run_sync(api, job)
    assert failed["status"] == "failed"  # the rule does not change the run's own outcome
    [ev] = await evaluations(api, rid)
    assert ev["outcome"] == "fired" and ev["error"] is None and ev["run_id"] == failed["id"] and ev["depth"] == 0
    assert ev["event"] == "run.failed" and ev["notifications"][0]["message"] == "failed: nightly#3"
    notify, start = ev["actions"]
    assert notify == {"label": "a1", "verb": "notify", "message": "failed: nightly#3", "ok": True}
    assert start["label"] == "a2" and start["ok"] and start["automationId"] == cleanup
    run = await finished(api, cleanup, start["runId"])
    assert run["status"] == "finished" and run["context"] == "triggered"
    assert run["args"] == ["--run", failed["id"], "3"]
    assert json.loads(launched_input(platform, start["runId"])) == {"who": "nightly#3", "code": 3}
    shown = (await api.get(f"{RULES}/{rid}")).json()
    assert shown["last_fired_at"] and shown["last_error"] is None
    mine = (await api.get("/api/v1/notifications")).json()["data"]  # the rule's author is notified too
    assert [(n["kind"], n["title"], n["body"], n["runId"]) for n in mine] == [
        ("rule", "Rule on run failed", "failed: nightly#3", failed["id"])
    ]
    # a finished run does not fire "on run failed"; a condition that is false records nothing
    ok = await make(api, "fine")
    quiet = await rule(api, ok, "on run failed", condition="run.exitCode == 99", actions='notify "never"')
    await run_sync(api, ok)
    await run_sync(api, await make(api, "fails", exitCode=1))
    await run_hooks.drain()
    assert (await api.get(f"{RULES}/{quiet}/evaluations")).json() == []
    assert len(await runs_of(api, cleanup)) == 1


async def test_each_run_trigger(api: httpx.AsyncClient) -> None:
    aid = await make(api, "w", sleep=30)
    ok = await make(api, "ok")
    slow = (
        await api.post(
            BASE,
            json={
                "name": "slow",
                "timeoutSeconds": 1,
                "entrypoint": "m.py",
                "files": {"m.py": "", "fake.json": json.dumps({"sleep": 30})},
            },
        )
    ).json()["id"]
    watch = {
        "on run finished": ok,
        "on run exceeded limit": slow,
        "on run stopped": aid,
    }
    ids = {t: await rule(api, target, t, actions="notify run.status") for t, target in watch.items()}
    ended = await rule(api, slow, "on run ended", actions="notify event.kind")
    await run_sync(api, ok)
    await run_sync(api, slow)
    background = (await api.post(f"{BASE}/{aid}/runs", json={"context": "api"})).json()["id"]
    await asyncio.sleep(0.2)
    assert (await api.post(f"{BASE}/{aid}/runs/{background}/actions/stop")).status_code == 204
    expected = {"on run finished": "finished", "on run exceeded limit": "exceeded limit", "on run stopped": "stopped"}
    for trigger, status in expected.items():
        [ev] = await evaluations(api, ids[trigger])
        assert ev["outcome"] == "fired" and ev["notifications"][0]["message"] == status, (trigger, ev)
    [ev] = await evaluations(api, ended)
    assert ev["notifications"][0]["message"] == "run.exceeded_limit"


async def test_each_automation_trigger_and_the_enable_disable_actions(
    platform: Platform, api: httpx.AsyncClient
) -> None:
    aid = await make(api, "target", sleep=30)
    other = await make(api, "other")
    created = await rule(api, aid, "on automation created", actions="notify automation.name")
    updated = await rule(api, aid, "on automation updated", actions="a1: notify automation.name\na2: disable")
    disabled = await rule(api, aid, "on automation disabled", actions='notify automation.state\nenable "target"')
    enabled = await rule(api, aid, "on automation enabled", actions="notify automation.state")
    webhook = await rule(
        api, aid, "on webhook arrived", expressions="order: webhook.json.order", actions="notify string(order)\nstop"
    )
    await make(api, "newcomer")  # created: watches every automation of the tenant
    [ev] = await evaluations(api, created)
    assert ev["notifications"][0]["message"] == "newcomer" and ev["automation_id"] != aid
    put = await api.put(f"{BASE}/{aid}", json={"name": "target", "description": "changed"})
    assert put.status_code == 200, put.text
    [ev] = await evaluations(api, updated)
    assert ev["outcome"] == "fired" and [a["verb"] for a in ev["actions"]] == ["notify", "disable"]
    [ev] = await evaluations(api, disabled)  # fired by the rule's disable, one rule deeper
    assert ev["notifications"][0]["message"] == "disabled" and ev["depth"] == 1
    [ev] = await evaluations(api, enabled)  # and the disabled rule enabled it again: two deep
    assert ev["notifications"][0]["message"] == "available" and ev["depth"] == 2
    assert (await api.get(f"{BASE}/{aid}")).json()["state"] == "available"
    token = (await api.get(f"{BASE}/{aid}")).json()["executionToken"]
    async with client_for(platform, token=None) as anonymous:
        hooked = await anonymous.post(
            f"{BASE}/{aid}/actions/execute", params={"X-Execution-Token": token}, json={"order": 42}
        )
    assert hooked.status_code == 201
    [ev] = await evaluations(api, webhook)
    assert ev["notifications"][0]["message"] == "42" and ev["actions"][1] == {
        "label": "a2",
        "verb": "stop",
        "runId": hooked.json()["id"],
        "ok": True,
    }
    run = await finished(api, aid, hooked.json()["id"])
    assert run["status"] == "stopped"
    await run_sync(api, other)  # a run of another automation fires none of these
    await run_hooks.drain()
    assert len((await api.get(f"{RULES}/{created}/evaluations")).json()) == 1


async def test_rules_run_in_position_order_and_a_failure_stops_only_its_rule(api: httpx.AsyncClient) -> None:
    job = await make(api, "job", exitCode=1)
    helper = await make(api, "helper")
    third = await rule(api, job, "on run failed", position=30, actions='start "helper"')
    first = await rule(api, job, "on run failed", position=10, expressions="x: run.nope", actions='notify "x"')
    second = await rule(
        api, job, "on run failed", position=20, actions='a1: notify "before"\na2: start "missing"\na3: notify "after"'
    )
    bad_condition = await rule(api, job, "on run failed", position=25, condition="run.exitCode")
    run = await run_sync(api, job)
    assert run["status"] == "failed"
    [ev1], [ev2], [ev25], [ev3] = [await evaluations(api, r) for r in (first, second, bad_condition, third)]
    assert ev1["id"] < ev2["id"] < ev25["id"] < ev3["id"]  # evaluated one after the other, by position
    assert ev1["outcome"] == "failed" and "expression 'x'" in ev1["error"] and ev1["actions"] == []
    assert ev2["outcome"] == "failed" and "no automation 'missing'" in ev2["error"]
    assert [(a["label"], a["ok"]) for a in ev2["actions"]] == [("a1", True), ("a2", False)]  # a3 never ran
    assert ev2["notifications"] == [{"message": "before", "at": ev2["notifications"][0]["at"]}]
    assert ev25["outcome"] == "failed" and "must be true or false" in ev25["error"]
    assert ev3["outcome"] == "fired" and len(await runs_of(api, helper)) == 1
    shown = (await api.get(f"{RULES}/{second}")).json()
    assert (
        "no automation 'missing'" in shown["last_error"] and shown["last_error_at"] and shown["last_fired_at"] is None
    )


async def test_a_loop_is_cut_at_the_max_depth(make_platform: PlatformFactory, database_url: str) -> None:
    platform = await make_platform(database_url, rules_max_depth=2)
    async with client_for(platform) as api:
        loop = await make(api, "loop")
        rid = await rule(api, loop, "on run finished", actions='start "loop"')
        await run_sync(api, loop)
        evs = await evaluations(api, rid, 3)
        assert [(e["outcome"], e["depth"]) for e in evs] == [("fired", 0), ("fired", 1), ("cut", 2)]
        assert "RULE_LOOP_CUT" in evs[2]["error"] and "CP_RULES_MAX_DEPTH=2" in evs[2]["error"]
        for _ in range(100):
            runs = await runs_of(api, loop)
            if all(r["status"] == "finished" for r in runs):
                break
            await asyncio.sleep(0.05)
        await run_hooks.drain()
        runs = await runs_of(api, loop)
        assert [r["context"] for r in runs] == ["api_sync", "triggered", "triggered"]
        assert len(await evaluations(api, rid, 3)) == 3


async def test_two_replicas_on_one_database_fire_a_rule_once(make_platform: PlatformFactory, database_url: str) -> None:
    first = await make_platform(database_url)
    second = await make_platform(database_url)
    async with client_for(first) as api, client_for(second) as api2:
        job = await make(api, "job", exitCode=2)
        cleanup = await make(api, "cleanup")
        rid = await rule(api2, job, "on run failed", actions='start "cleanup"')
        await run_sync(api, job)
        await run_sync(api2, job)
        evs = await evaluations(api, rid, 2)
        await asyncio.sleep(0.2)
        await run_hooks.drain()
        assert len((await api.get(f"{RULES}/{rid}/evaluations")).json()) == 2 == len(evs)
        assert len(await runs_of(api, cleanup)) == 2


async def test_created_fires_only_for_automations_the_rules_author_sees(
    platform: Platform, api: httpx.AsyncClient
) -> None:
    space = await api.post("/api/v1/spaces", json={"name": "private"})
    assert space.status_code == 201, space.text
    async with client_for(platform, await new_token(platform, role="developer")) as dev:
        mine = await make(dev, "mine")
        rid = await rule(dev, mine, "on automation created", actions="notify automation.name")
        hidden = await api.post(BASE, json={"name": "hidden", "code": "print(1)", "spaceId": space.json()["id"]})
        assert hidden.status_code == 201, hidden.text
        await make(api, "shown")  # the default space: every user of the tenant sees it
        [ev] = await evaluations(dev, rid)
        await run_hooks.drain()
        assert ev["notifications"][0]["message"] == "shown"
        assert len((await dev.get(f"{RULES}/{rid}/evaluations")).json()) == 1
        # deleting the automation deletes its rules (and their evaluations)
        assert (await dev.delete(f"{BASE}/{mine}")).status_code == 204
        assert (await dev.get(f"{RULES}/{rid}")).status_code == 404


async def test_a_raising_subscriber_breaks_neither_the_run_nor_the_rules(api: httpx.AsyncClient) -> None:
    calls: list[str] = []

    async def broken(event: run_hooks.Event) -> None:
        calls.append(event.kind.value)
        raise RuntimeError("subscriber bug")

    run_hooks.subscribe(broken)
    try:
        job = await make(api, "job", exitCode=1)
        rid = await rule(api, job, "on run failed", actions='notify "still here"')
        run = await run_sync(api, job)
        assert run["status"] == "failed"
        [ev] = await evaluations(api, rid)
        assert ev["outcome"] == "fired" and "run.failed" in calls
    finally:
        run_hooks.unsubscribe(broken)
