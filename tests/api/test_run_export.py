"""Run export and debug (seed 004): signed, time-limited links usable without a bearer token; the zip holds
the run's details, its whole logs and its artifacts, streamed; forged, altered or extended links are 403,
expired ones 410; the debug record carries the run's timeline."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import tracemalloc
import zipfile
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from controlplane.backends.fake import FakeBackend
from controlplane.services.platform import Platform
from tests.support.api import assert_envelope
from tests.support.clock import FakeClock
from tests.support.platform import PlatformFactory, client_for, new_token
from tests.support.runs import make, run_sync, until

BASE = "/api/v1/automations"


def anonymous(platform: Platform) -> httpx.AsyncClient:
    return client_for(platform, token=None)


def relative(url: str) -> str:
    parts = urlsplit(url)
    assert parts.scheme == "http" and parts.netloc == "testserver", url
    return f"{parts.path}?{parts.query}"


def with_query(url: str, **changes: str | None) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    for key, value in changes.items():
        if value is None:
            query.pop(key, None)
        else:
            query[key] = value
    return f"{parts.path}?{urlencode(query)}"


async def export_url(api: httpx.AsyncClient, aid: str, run_id: str, prefix: str = BASE) -> str:
    r = await api.post(f"{prefix}/{aid}/runs/{run_id}/actions/export")
    assert r.status_code == 200, r.text
    assert set(r.json()) == {"url"}
    return relative(r.json()["url"])


async def test_export_downloads_details_logs_and_artifacts_as_one_zip_without_a_token(
    platform: Platform, api: httpx.AsyncClient
) -> None:
    aid = await make(
        api,
        "exported",
        stdout="line one\nline two\n",
        stderr="a warning\n",
        artifacts={"report.csv": "a,b\n1,2\n", "deep/dir/notes.txt": "notes"},
    )
    run = await run_sync(api, aid, input={"k": 1})
    url = await export_url(api, aid, str(run["id"]))
    assert url.startswith(f"{BASE}/{aid}/runs/{run['id']}/export?expires=")
    async with anonymous(platform) as anon:
        r = await anon.get(url)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    assert f'filename="run-{run["id"]}.zip"' in r.headers["content-disposition"]
    archive = zipfile.ZipFile(io.BytesIO(r.content))
    assert archive.testzip() is None
    assert sorted(archive.namelist()) == [
        "artifacts/deep/dir/notes.txt",
        "artifacts/report.csv",
        "run.json",
        "stderr.log",
        "stdout.log",
    ]
    assert archive.read("stdout.log") == b"line one\nline two\n"
    assert archive.read("stderr.log") == b"a warning\n"
    assert archive.read("artifacts/report.csv") == b"a,b\n1,2\n"
    details = json.loads(archive.read("run.json"))
    assert details["run"]["id"] == run["id"] and details["run"]["status"] == "finished with warnings"
    assert details["automation"]["id"] == aid and details["automation"]["name"] == "exported"
    assert [e["event"] for e in details["timeline"]] == ["created", "queued", "claimed", "started", "ended"]
    listed = {f["path"]: f for f in details["files"]}
    assert listed["artifacts/report.csv"]["sha256"] == hashlib.sha256(b"a,b\n1,2\n").hexdigest()
    assert listed["stdout.log"]["size"] == 18


async def test_export_carries_the_scripts_own_answer(platform: Platform, api: httpx.AsyncClient) -> None:
    answer = {"status": "201", "contentType": "text/csv", "body": "name;n\nJohn Smith;1\n"}
    aid = await make(api, "answering", stdout="log line\n", response=answer)
    run = await run_sync(api, aid)
    async with anonymous(platform) as anon:
        r = await anon.get(await export_url(api, aid, str(run["id"])))
    archive = zipfile.ZipFile(io.BytesIO(r.content))
    assert archive.read("response/body") == b"name;n\nJohn Smith;1\n"
    assert archive.read("stdout.log") == b"log line\n"
    listed = {f["path"]: f for f in json.loads(archive.read("run.json"))["files"]}
    assert listed["response/body"] == {
        "path": "response/body",
        "size": 20,
        "statusCode": 201,
        "contentType": "text/csv",
        "error": None,
    }
    # a run that answered nothing has no response entry (its stdout is its answer)
    plain = await run_sync(api, await make(api, "silent", stdout="x\n"))
    async with anonymous(platform) as anon:
        r = await anon.get(await export_url(api, str(plain["automationId"]), str(plain["id"])))
    assert "response/body" not in zipfile.ZipFile(io.BytesIO(r.content)).namelist()


async def test_the_link_follows_the_prefix_it_was_asked_on(platform: Platform, api: httpx.AsyncClient) -> None:
    aid = await make(api, "prefixed")
    run = await run_sync(api, aid)
    url = await export_url(api, aid, str(run["id"]), prefix="/api/workflows/automations")
    assert url.startswith(f"/api/workflows/automations/{aid}/runs/{run['id']}/export?")
    async with anonymous(platform) as anon:
        assert (await anon.get(url)).status_code == 200


async def test_forged_altered_or_extended_links_are_403_and_expired_ones_410(
    make_platform: PlatformFactory, database_url: str
) -> None:
    platform = await make_platform(database_url, export_url_ttl_seconds=1)
    platform.exports.clock = clock = FakeClock()
    async with client_for(platform) as api, anonymous(platform) as anon:
        aid = await make(api, "guarded")
        first = str((await run_sync(api, aid))["id"])
        second = str((await run_sync(api, aid))["id"])
        url = await export_url(api, aid, first)
        query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        signature, expires = query["signature"], int(query["expires"])
        flipped = ("B" if signature[0] == "A" else "A") + signature[1:]
        tampered = [
            with_query(url, signature=flipped),  # forged
            with_query(url, expires=str(expires + 3600)),  # extended
            url.replace(first, second),  # another run of the same automation
            with_query(url, signature=None),  # unsigned
            with_query(url, expires=None),
            with_query(url, expires="soon"),
            url.replace("/export?", "/debug/log?"),  # an export link is not a debug link
        ]
        for bad in tampered:
            assert_envelope(await anon.get(bad), 403, "INVALID_SIGNATURE")
        assert (await anon.get(url)).status_code == 200
        clock.advance(2.1)
        assert_envelope(await anon.get(url), 410, "LINK_EXPIRED")
        assert_envelope(await anon.get(with_query(url, signature=flipped)), 403, "INVALID_SIGNATURE")


async def test_export_needs_read_access_and_hides_other_tenants_runs(
    platform: Platform, api: httpx.AsyncClient
) -> None:
    aid = await make(api, "private")
    run_id = str((await run_sync(api, aid))["id"])
    async with client_for(platform, token=None) as anon:
        assert_envelope(await anon.post(f"{BASE}/{aid}/runs/{run_id}/actions/export"), 401, "UNAUTHORIZED")
        assert_envelope(await anon.get(f"{BASE}/{aid}/runs/{run_id}/debug"), 401, "UNAUTHORIZED")
    # seed 004: export is for an editor or operator of the space (a POST, like stop and retry); debug is a read
    async with client_for(platform, await new_token(platform, role="viewer")) as viewer:
        assert_envelope(await viewer.post(f"{BASE}/{aid}/runs/{run_id}/actions/export"), 403, "FORBIDDEN")
        assert (await viewer.get(f"{BASE}/{aid}/runs/{run_id}/debug")).status_code == 200
    async with client_for(platform, await new_token(platform, role="operator")) as operator:
        assert (await operator.post(f"{BASE}/{aid}/runs/{run_id}/actions/export")).status_code == 200
    async with client_for(platform, await new_token(platform, role="admin", tenant="elsewhere")) as other:
        for r in (
            await other.post(f"{BASE}/{aid}/runs/{run_id}/actions/export"),
            await other.get(f"{BASE}/{aid}/runs/{run_id}/debug"),
        ):
            assert_envelope(r, 404, "NOT_FOUND")
    assert_envelope(await api.post(f"{BASE}/{aid}/runs/not-a-run/actions/export"), 404, "NOT_FOUND")


async def test_big_output_is_streamed_with_flat_memory(make_platform: PlatformFactory, database_url: str) -> None:
    mb = 1024 * 1024
    platform = await make_platform(
        database_url, log_max_bytes=16 * mb, code_max_bytes=64 * mb, max_body_bytes=64 * mb, input_max_bytes=0
    )
    stdout = base64.b64encode(os.urandom(6 * mb)).decode()  # ~8 MB that deflate cannot shrink much
    artifact = base64.b64encode(os.urandom(4 * mb)).decode()
    async with client_for(platform) as api:
        aid = await make(api, "big", stdout=stdout, artifacts={"big.bin": artifact})
        run = await run_sync(api, aid)
        assert run["stdoutBytes"] == len(stdout) and run["truncated"] is False
        url = await export_url(api, aid, str(run["id"]))
    signature = parse_qs(urlsplit(url).query)
    platform.exports.verify("export", aid, str(run["id"]), signature["expires"][0], signature["signature"][0])

    # memory: consume the stream keeping nothing but a hash
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        parts, biggest, digest = 0, 0, hashlib.sha256()
        async for part in await platform.exports.archive(aid, str(run["id"]), base_url="http://testserver"):
            parts += 1
            biggest = max(biggest, len(part))
            digest.update(part)
        peak = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()
    total = len(stdout) + len(artifact)
    assert parts > 20 and biggest < mb, (parts, biggest)
    assert peak < 4 * mb < total, f"peak {peak} bytes while streaming {total} bytes"

    # content: the same archive over HTTP holds all of it
    async with anonymous(platform) as anon:
        r = await anon.get(url)
    archive = zipfile.ZipFile(io.BytesIO(r.content))
    assert archive.read("stdout.log").decode() == stdout
    assert archive.read("artifacts/big.bin").decode() == artifact


async def test_debug_answers_the_url_of_the_runs_record_with_its_timeline(
    platform: Platform, api: httpx.AsyncClient
) -> None:
    aid = await make(api, "debugged", stdout="partial\n", sleep=60)
    run_id = str((await api.post(f"{BASE}/{aid}/runs", json={"context": "api"})).json()["id"])
    await until(api, aid, run_id, "running")
    assert (await api.post(f"{BASE}/{aid}/runs/{run_id}/actions/stop")).status_code == 204
    await until(api, aid, run_id, "stopped")

    r = await api.get(f"{BASE}/{aid}/runs/{run_id}/debug")  # seed 004: 200 text/plain, a string
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    url = relative(r.text)
    assert url.startswith(f"{BASE}/{aid}/runs/{run_id}/debug/log?expires=")
    as_json = await api.get(f"{BASE}/{aid}/runs/{run_id}/debug", headers={"Accept": "application/json"})
    assert as_json.headers["content-type"] == "application/json" and isinstance(as_json.json(), str)

    async with anonymous(platform) as anon:
        record = (await anon.get(url)).json()
        assert_envelope(await anon.get(url.replace("/debug/log?", "/export?")), 403, "INVALID_SIGNATURE")
    assert record["run"]["id"] == run_id and record["run"]["status"] == "stopped"
    assert record["run"]["error"][0]["code"] == "STOPPED_BY_USER"
    events = [(e["event"], e["status"]) for e in record["timeline"]]
    assert events == [
        ("created", "queued"),
        ("queued", "queued"),
        ("claimed", "starting"),
        ("started", "running"),
        ("stopping", "must stop"),
        ("ended", "stopped"),
    ]
    times = [e["at"] for e in record["timeline"]]
    assert times == sorted(times)
    assert record["timeline"][2]["replica"] == platform.replicas.id  # who claimed it
    assert record["timeline"][3]["at"].replace("Z", "+00:00")[:19] == record["run"]["startTime"][:19]
    phases = record["phases"]
    assert phases["runningSeconds"] is not None and phases["totalSeconds"] >= phases["runningSeconds"]


async def test_a_run_stopped_while_queued_has_no_start(make_platform: PlatformFactory, database_url: str) -> None:
    platform = await make_platform(database_url, background_concurrency_total=1, dispatch_poll_seconds=0.05)
    async with client_for(platform) as api:
        aid = await make(api, "busy", sleep=60)
        holder = (await api.post(f"{BASE}/{aid}/runs", json={"context": "api"})).json()["id"]
        await until(api, aid, holder, "running")
        queued = (await api.post(f"{BASE}/{aid}/runs", json={"context": "api"})).json()["id"]
        assert (await api.post(f"{BASE}/{aid}/runs/{queued}/actions/stop")).status_code == 204
        url = relative((await api.get(f"{BASE}/{aid}/runs/{queued}/debug")).text)
        await api.post(f"{BASE}/{aid}/runs/{holder}/actions/stop")
    async with anonymous(platform) as anon:
        record = (await anon.get(url)).json()
    assert [e["event"] for e in record["timeline"]] == ["created", "queued", "ended"]
    assert record["phases"]["runningSeconds"] is None and record["phases"]["queuedSeconds"] >= 0


async def test_total_api_calls_counts_requests_made_with_the_runs_own_token(
    platform: Platform, api: httpx.AsyncClient
) -> None:
    count = 3
    aid = await make(api, "caller", sleep=60)
    run_id = str((await api.post(f"{BASE}/{aid}/runs", json={"context": "api"})).json()["id"])
    await until(api, aid, run_id, "running")
    backend = platform.backend
    assert isinstance(backend, FakeBackend)
    spec = next(s for s in backend.launched if s.run_id == run_id)
    token = spec.env[platform.settings.sandbox_env_prefix + "TOKEN"]
    async with client_for(platform, token) as as_run:  # what the script would do with JETQUERY_TOKEN
        for _ in range(count):
            assert (await as_run.get(f"{BASE}/{aid}")).status_code == 200
        assert_envelope(await as_run.post("/api/v1/tokens", json={"user": "x"}), 403)  # refused, still a call
    for _ in range(5):  # the caller's own requests are not the run's
        await api.get(f"{BASE}/{aid}/runs/{run_id}")
    run = (await api.get(f"{BASE}/{aid}/runs/{run_id}")).json()
    assert run["metrics"]["totalApiCalls"] == count + 1
    assert set(run["metrics"]["network"]) == {"rxBytes", "txBytes"}
    await api.post(f"{BASE}/{aid}/runs/{run_id}/actions/stop")
    await until(api, aid, run_id, "stopped")
    async with client_for(platform, token) as as_run:  # the token dies with the run
        assert_envelope(await as_run.get(f"{BASE}/{aid}"), 401)
    assert (await api.get(f"{BASE}/{aid}/runs/{run_id}")).json()["metrics"]["totalApiCalls"] == count + 1
