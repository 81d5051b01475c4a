"""Runs through the native API on the fake backend: statuses, outputs, logs, artifacts, lastRun fields."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from controlplane.services.platform import Platform
from tests.support.api import assert_envelope
from tests.support.runs import BASE, make, run_sync


async def test_sync_run_returns_the_finished_run(api: httpx.AsyncClient) -> None:
    aid = await make(api, stdout="hello\n", exitCode=0)
    run = await run_sync(api, aid, args=["a", "b c"], input={"k": 1})
    assert run["status"] == "finished" and run["exitCode"] == 0
    assert run["stdout"] == "hello\n" and run["stderr"] == ""
    assert run["stdoutBytes"] == 6 and run["truncated"] is False
    assert run["context"] == "api_sync" and run["args"] == ["a", "b c"]
    assert run["startTime"] and run["stopTime"] and run["error"] == []
    a = (await api.get(f"{BASE}/{aid}")).json()
    assert a["lastRun"]["id"] == run["id"] and a["lastRunStatus"] == "finished" and a["lastRunAt"]


@pytest.mark.parametrize(
    ("behaviour", "status", "exit_code", "error_code"),
    [
        ({"stdout": "x", "stderr": "careful\n", "exitCode": 0}, "finished with warnings", 0, None),
        ({"stderr": "boom\n", "exitCode": 3}, "failed", 3, "NON_ZERO_EXIT"),
        ({"oom": True}, "exceeded limit", 137, "OUT_OF_MEMORY"),
    ],
)
async def test_outcomes_map_to_seed_statuses(
    api: httpx.AsyncClient, behaviour: dict[str, Any], status: str, exit_code: int, error_code: str | None
) -> None:
    run = await run_sync(api, await make(api, **behaviour))
    assert run["status"] == status and run["exitCode"] == exit_code
    codes = [e["code"] for e in run["error"]]
    assert (error_code in codes) if error_code else codes == []


async def test_deadline_is_exceeded_limit_with_run_timeout(api: httpx.AsyncClient) -> None:
    r = await api.post(
        BASE,
        json={
            "name": "slow",
            "timeoutSeconds": 1,
            "entrypoint": "main.py",
            "files": {"main.py": "", "fake.json": json.dumps({"sleep": 30})},
        },
    )
    run = await run_sync(api, r.json()["id"])
    assert run["status"] == "exceeded limit" and run["exitCode"] is None
    assert run["error"][0]["code"] == "RUN_TIMEOUT"


async def test_async_run_is_201_then_polled(api: httpx.AsyncClient) -> None:
    aid = await make(api, stdout="later\n", sleep=0.3)
    for context in ("api", "api_async"):
        r = await api.post(f"{BASE}/{aid}/runs", json={"context": context})
        assert r.status_code == 201, r.text
        assert r.json()["status"] in ("queued", "starting", "running") and r.json()["context"] == "api_async"
        run_id = r.json()["id"]
        for _ in range(100):
            run = (await api.get(f"{BASE}/{aid}/runs/{run_id}")).json()
            if run["status"] == "finished":
                break
            await asyncio.sleep(0.05)
        assert run["status"] == "finished" and run["stdout"] == "later\n"


async def test_raw_body_becomes_the_input(api: httpx.AsyncClient, platform: Platform) -> None:
    aid = await make(api)
    r = await api.post(
        f"{BASE}/{aid}/runs",
        params={"context": "api_sync", "args": ["x", "y z"]},
        content=b"plain text \x00 bytes",
        headers={"content-type": "application/octet-stream"},
    )
    assert r.status_code == 200, r.text
    spec = platform.backend.launched[-1]  # type: ignore[attr-defined]
    assert spec.input == b"plain text \x00 bytes" and spec.args == ("x", "y z")
    r = await api.post(f"{BASE}/{aid}/runs", json={"context": "api_sync", "input": {"a": [1, 2]}})
    assert json.loads(platform.backend.launched[-1].input) == {"a": [1, 2]}  # type: ignore[attr-defined]
    env = platform.backend.launched[-1].env  # type: ignore[attr-defined]
    assert env["JETQUERY_RUN_ID"] == r.json()["id"] and env["JETQUERY_TOKEN"].startswith("cp_")
    assert env["JETQUERY_INPUT_FILE"] == "/work/input" and env["JETQUERY_OUTPUTS"] == "/work/outputs"
    assert "://" not in env["JETQUERY_HOST"]


async def test_logs_inline_limit_and_truncation(make_platform, database_url: str) -> None:  # type: ignore[no-untyped-def]
    from tests.support.platform import client_for

    platform = await make_platform(database_url, log_max_bytes=1000, inline_output_bytes=100)
    async with client_for(platform) as api:
        aid = await make(api, stdout="A" * 600 + "B" * 5000 + "C" * 600, stderr="e" * 50)
        run = await run_sync(api, aid)
        assert run["stdoutBytes"] == 6200 and run["truncated"] is True
        assert run["stdout"] == "A" * 100 and run["stdoutInlineTruncated"] is True
        full = await api.get(f"{BASE}/{aid}/runs/{run['id']}/logs", params={"stream": "stdout"})
        assert full.headers["content-type"].startswith("text/plain")
        text = full.text
        assert text.startswith("A" * 500) and text.endswith("C" * 500) and "bytes truncated" in text
        err = await api.get(f"{BASE}/{aid}/runs/{run['id']}/logs", params={"stream": "stderr"})
        assert err.text == "e" * 50
        assert_envelope(await api.get(f"{BASE}/{aid}/runs/{run['id']}/logs", params={"stream": "x"}), 422)


async def test_artifacts_are_listed_and_downloadable(api: httpx.AsyncClient) -> None:
    aid = await make(api, artifacts={"report.csv": "a,b\n1,2\n", "sub/dir/n.txt": "nested"})
    run = await run_sync(api, aid)
    arts = {a["path"]: a for a in run["artifacts"]}
    assert set(arts) == {"report.csv", "sub/dir/n.txt"}
    assert arts["report.csv"]["contentType"] == "text/csv" and arts["report.csv"]["size"] == 8
    listed = (await api.get(f"{BASE}/{aid}/runs/{run['id']}/artifacts")).json()
    assert {a["path"] for a in listed} == set(arts)
    dl = await api.get(arts["sub/dir/n.txt"]["href"].replace("http://testserver", ""))
    assert dl.status_code == 200 and dl.content == b"nested"
    assert_envelope(await api.get(f"{BASE}/{aid}/runs/{run['id']}/artifacts/nope.txt"), 404)


async def test_list_runs_filter_sort_pages(api: httpx.AsyncClient) -> None:
    ok = await make(api, "ok")
    bad = await make(api, "bad", exitCode=1)
    for _ in range(3):
        await run_sync(api, ok)
    await run_sync(api, bad)
    runs = (await api.get(f"{BASE}/{ok}/runs", params={"limit": 2, "sort": "-createdAt"})).json()
    assert len(runs["data"]) == 2 and runs["links"]["next"]
    more = (await api.get(runs["links"]["next"]["href"])).json()
    assert len(more["data"]) == 1
    failed = (await api.get(f"{BASE}/{bad}/runs", params={"filter": 'status eq "failed"'})).json()
    assert len(failed["data"]) == 1 and failed["data"][0]["exitCode"] == 1
    none = (await api.get(f"{BASE}/{ok}/runs", params={"filter": 'status eq "failed"'})).json()
    assert none["data"] == []
    assert_envelope(await api.get(f"{BASE}/{ok}/runs/{failed['data'][0]['id']}"), 404)  # run of another automation


async def test_bad_run_requests(api: httpx.AsyncClient) -> None:
    aid = await make(api)
    assert_envelope(await api.post(f"{BASE}/{aid}/runs", json={"context": "psychic"}), 422)
    assert_envelope(await api.post(f"{BASE}/nope/runs", json={"context": "api_sync"}), 404)
    assert_envelope(await api.post(f"{BASE}/{aid}/runs", json={"context": "api", "args": "not-a-list"}), 422)


async def test_every_run_reaches_a_final_status_on_shutdown(make_platform, database_url: str) -> None:  # type: ignore[no-untyped-def]
    from tests.support.platform import client_for

    platform = await make_platform(database_url)
    async with client_for(platform) as api:
        aid = await make(api, sleep=60)
        run_id = (await api.post(f"{BASE}/{aid}/runs", json={"context": "api"})).json()["id"]
        for _ in range(100):
            if (await api.get(f"{BASE}/{aid}/runs/{run_id}")).json()["status"] == "running":
                break
            await asyncio.sleep(0.02)
        await platform.engine.shutdown()
        run = (await api.get(f"{BASE}/{aid}/runs/{run_id}")).json()
        assert run["status"] == "stopped" and run["error"][0]["code"] == "SERVER_SHUTDOWN"
        assert await platform.backend.list_sandboxes() == []
