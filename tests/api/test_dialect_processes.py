"""Seed 001's /api/v1/processes on the fake backend (SQLite and PostgreSQL): listing with $filter, metadata,
run-and-wait answers, jobs with notifications (a real SMTP server on loopback: aiosmtpd), the /jobs route
trap, and typed parameters on the native API and the dialect. Real sandboxes: tests/e2e/test_dialect_processes.py.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
from collections.abc import Iterator
from email import message_from_bytes
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller

from controlplane.services.platform import Platform
from tests.support.api import assert_envelope
from tests.support.platform import PlatformFactory, client_for, new_token

P = "/api/v1/processes"
BASE = "/api/v1/automations"
PARAMS: list[dict[str, Any]] = [
    {"name": "AD_Language", "type": "string", "mandatory": True, "description": "Language"},
    {"name": "Count", "type": "integer", "default": 3},
    {"name": "IsOnlyCentralizedData", "type": "boolean", "default": False},
    {"name": "DateFrom", "type": "date"},
]


async def make(api: httpx.AsyncClient, name: str, *, params: list[dict[str, Any]] | None = None, **fake: Any) -> str:
    files = {"main.py": "print('ignored by the fake backend')", "fake.json": json.dumps(fake)}
    body: dict[str, Any] = {"name": name, "files": files, "entrypoint": "main.py", "description": f"about {name}"}
    if params is not None:
        body["parameters"] = params
    r = await api.post(BASE, json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def eventually(check: Any, what: str) -> Any:
    for _ in range(200):
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


# --- typed parameters: native API ------------------------------------------------------------------


async def test_native_parameters_declared_validated_and_passed(platform: Platform, api: httpx.AsyncClient) -> None:
    aid = await make(api, "A300-params", params=PARAMS)
    a = (await api.get(f"{BASE}/{aid}")).json()
    assert [p["name"] for p in a["parameters"]] == ["AD_Language", "Count", "IsOnlyCentralizedData", "DateFrom"]
    assert a["parameters"][1] == {
        "name": "Count",
        "type": "integer",
        "mandatory": False,
        "default": 3,
        "description": "",
    }
    r = await api.post(f"{BASE}/{aid}/runs", json={"context": "api_sync", "input": {"Count": "x", "Colour": 1}})
    first = assert_envelope(r, 400, "INVALID_PARAMETERS")
    problems = {(e["parameter"], e["code"]) for e in r.json()["errors"][1:]}
    assert problems == {
        ("AD_Language", "PARAMETER_MISSING"),
        ("Count", "PARAMETER_TYPE"),
        ("Colour", "PARAMETER_UNKNOWN"),
    }
    assert "3 problem(s)" in str(first["detail"])
    assert_envelope(await api.post(f"{BASE}/{aid}/runs", json={"context": "api_sync", "input": [1]}), 400)
    r = await api.post(
        f"{BASE}/{aid}/runs",
        json={"context": "api_sync", "input": {"AD_Language": "es_CO", "IsOnlyCentralizedData": "Y"}},
    )
    assert r.status_code == 200, r.text
    spec = platform.backend.launched[-1]  # type: ignore[attr-defined]
    assert json.loads(spec.input) == {"AD_Language": "es_CO", "Count": 3, "IsOnlyCentralizedData": True}
    assert spec.env["JETQUERY_PARAM_AD_LANGUAGE"] == "es_CO" and spec.env["JETQUERY_PARAM_COUNT"] == "3"
    assert spec.env["JETQUERY_PARAM_ISONLYCENTRALIZEDDATA"] == "true" and "JETQUERY_PARAM_DATEFROM" not in spec.env
    # webhook runs are checked the same way
    hook = f"{BASE}/{aid}/actions/execute"
    token = {"X-Execution-Token": a["executionToken"]}
    r = await api.post(hook, json={"Count": 1}, headers=token)
    assert_envelope(r, 400, "INVALID_PARAMETERS")
    assert [e["parameter"] for e in r.json()["errors"][1:]] == ["AD_Language"]
    assert (await api.post(hook, json={"AD_Language": "de"}, headers=token)).status_code == 201
    # a parameters change is a new version; other edits keep the parameters
    v = a["version"]
    r = await api.put(f"{BASE}/{aid}", json={"name": "A300-params", "parameters": PARAMS[:1]})
    assert r.status_code == 200 and r.json()["version"] == v + 1 and len(r.json()["parameters"]) == 1
    r = await api.put(f"{BASE}/{aid}", json={"name": "A300-params", "description": "new"})
    assert r.json()["version"] == v + 1 and len(r.json()["parameters"]) == 1
    # bad declarations: 422
    bad = [{"name": "a", "type": "integer", "default": "x"}, {"name": "A"}]
    r = await api.post(BASE, json={"name": "A301-bad", "code": "print(1)", "parameters": bad})
    assert "declared twice" in str(assert_envelope(r, 422, "INVALID_PARAMETER_DECLARATION")["detail"])
    r = await api.post(
        BASE, json={"name": "A301-bad", "code": "print(1)", "parameters": [{"name": "x", "type": "blob"}]}
    )
    assert_envelope(r, 422)
    # an automation without parameters takes any input as before
    plain = await make(api, "A302-plain")
    r = await api.post(
        f"{BASE}/{plain}/runs",
        content=b"raw bytes",
        params={"context": "api_sync"},
        headers={"content-type": "text/plain"},
    )
    assert r.status_code == 200, r.text


# --- the dialect ------------------------------------------------------------------------------------


async def test_list_filter_and_metadata(api: httpx.AsyncClient) -> None:
    await make(api, "A310-Translation ImpExp", params=PARAMS)
    await make(api, "A311-other")
    r = await api.get(P)
    assert r.status_code == 200
    procs = r.json()["processes"]
    by_value = {p["Value"]: p for p in procs}
    assert set(by_value) == {"a310-translation-impexp", "a311-other"}
    rec = by_value["a310-translation-impexp"]
    assert rec["Name"] == "A310-Translation ImpExp" and rec["Description"] == "about A310-Translation ImpExp"
    assert rec["model-name"] == "ad_process" and rec["IsActive"] is True and "parameters" not in rec
    for text, expected in [
        ("Value eq 'a311-other'", ["a311-other"]),
        ("contains(Name,'impexp') or Name eq 'nope'", ["a310-translation-impexp"]),
        ("startswith(value,'a31') and not (description eq 'about A311-other')", ["a310-translation-impexp"]),
        ("contains(description, 'zzz')", []),
    ]:
        r = await api.get(P, params={"$filter": text})
        assert r.status_code == 200, r.text
        assert sorted(p["Value"] for p in r.json()["processes"]) == expected, text
    detail = assert_envelope(await api.get(P, params={"$filter": "Name gt 'x'"}), 400, "INVALID_FILTER")["detail"]
    assert "unsupported operator 'gt'" in str(detail)
    assert_envelope(await api.get(P, params={"$filter": "Owner eq 'x'"}), 400, "INVALID_FILTER")
    r = await api.get(f"{P}/a310-translation-impexp")
    assert r.status_code == 200
    one = r.json()
    assert one["Value"] == "a310-translation-impexp" and one["id"] == rec["id"]
    params = one["parameters"]
    assert [p["Name"] for p in params] == ["AD_Language", "Count", "IsOnlyCentralizedData", "DateFrom"]
    assert params[0]["IsMandatory"] is True and params[0]["AD_Reference_ID"]["identifier"] == "String"
    assert params[1]["DefaultValue"] == 3 and params[1]["SeqNo"] == 20 and params[2]["type"] == "boolean"
    assert (await api.get(f"{P}/A310-Translation ImpExp")).json()["id"] == rec["id"]  # the exact name too
    assert_envelope(await api.get(f"{P}/nope"), 404, "PROCESS_NOT_FOUND")


async def test_run_process_answers_the_seed_fields(platform: Platform, api: httpx.AsyncClient) -> None:
    pdf = b"%PDF-1.4 fake"
    await make(
        api,
        "A320-report",
        params=PARAMS,
        stdout="starting\n\nrow 1\nrow 2\n",
        artifacts={
            "process/summary.txt": "2 rows exported\n",
            "process/report/Storage_Detail.pdf": pdf.decode(),
            "process/export/rows.csv": "a,b\n1,2\n",
            "other.txt": "not a report",
        },
    )
    body = {
        "AD_Language": "es_CO",
        "IsOnlyCentralizedData": True,
        "is-summary": "Y",
        "record-id": 7,
        "model-name": "c_order",
    }
    r = await api.post(f"{P}/a320-report", json=body)
    assert r.status_code == 200, r.text
    d = r.json()
    assert set(d) == {
        "AD_PInstance_ID", "process", "summary", "isError", "nodeId", "logs",
        "reportFile", "reportFileName", "reportFileLength", "exportFile", "exportFileName", "exportFileLength",
    }  # fmt: skip
    assert d["process"] == "a320-report" and d["summary"] == "2 rows exported" and d["isError"] is False
    assert d["logs"] == ["starting", "row 1", "row 2"] and d["nodeId"] == platform.engine.replica_id
    assert base64.b64decode(d["reportFile"]) == pdf and d["reportFileName"] == "Storage_Detail.pdf"
    assert d["reportFileLength"] == len(pdf)
    assert base64.b64decode(d["exportFile"]) == b"a,b\n1,2\n" and d["exportFileName"] == "rows.csv"
    spec = platform.backend.launched[-1]  # type: ignore[attr-defined]
    assert spec.env["JETQUERY_REPORT_TYPE"] == "PDF" and spec.env["JETQUERY_IS_SUMMARY"] == "true"
    assert spec.env["JETQUERY_RECORD_ID"] == "7" and spec.env["JETQUERY_MODEL_NAME"] == "c_order"
    assert spec.env["JETQUERY_PARAM_AD_LANGUAGE"] == "es_CO"
    assert json.loads(spec.input)["report-type"] == "PDF"
    run = (await api.get(f"{BASE}/{spec.automation_id}/runs/{d['AD_PInstance_ID']}")).json()
    assert run["status"] == "finished"
    r = await api.post(
        f"{P}/a320-report", json={**body, "report-type": "html", "print-format-id": "9", "table-id": 259}
    )
    spec = platform.backend.launched[-1]  # type: ignore[attr-defined]
    assert r.status_code == 200 and spec.env["JETQUERY_REPORT_TYPE"] == "HTML"
    assert spec.env["JETQUERY_PRINT_FORMAT_ID"] == "9" and spec.env["JETQUERY_TABLE_ID"] == "259"
    # every problem at once
    r = await api.post(f"{P}/a320-report", json={"Count": "many", "report-type": "DOCX", "Colour": "red"})
    assert_envelope(r, 400, "INVALID_PARAMETERS")
    assert {e["parameter"] for e in r.json()["errors"][1:]} == {"AD_Language", "Count", "report-type", "Colour"}
    assert_envelope(await api.post(f"{P}/a320-report", content=b"{not json"), 400, "INVALID_PARAMETERS")
    # a failing process: isError, the run's error as summary, no report fields
    await make(api, "A321-fails", stdout="oops\n", exitCode=2)
    d = (await api.post(f"{P}/a321-fails")).json()
    assert d["isError"] is True and "exit code 2" in d["summary"] and d["logs"] == ["oops"]
    assert "reportFile" not in d and "exportFile" not in d
    # an undeclared process accepts any parameters and still gets the special ones
    d = (await api.post(f"{P}/a321-fails", json={"anything": 1, "report-type": "csv"})).json()
    assert json.loads(platform.backend.launched[-1].input) == {"anything": 1, "report-type": "CSV"}  # type: ignore[attr-defined]


async def test_errors_and_roles(platform: Platform, api: httpx.AsyncClient) -> None:
    aid = await make(api, "A330-roles")
    viewer = client_for(platform, await new_token(platform, role="viewer"))
    operator = client_for(platform, await new_token(platform, role="operator"))
    other = client_for(platform, await new_token(platform, role="admin", tenant="elsewhere"))
    async with viewer, operator, other:
        assert (await viewer.get(f"{P}/a330-roles")).status_code == 200
        assert_envelope(await viewer.post(f"{P}/a330-roles"), 403)
        assert_envelope(await viewer.post(f"{P}/jobs/a330-roles"), 403)
        assert (await operator.post(f"{P}/a330-roles")).status_code == 200
        assert_envelope(await other.get(f"{P}/a330-roles"), 404, "PROCESS_NOT_FOUND")
        assert (await other.get(P)).json() == {"processes": []}
        job = (await operator.post(f"{P}/jobs/a330-roles")).json()["id"]
        assert_envelope(await other.get(f"{P}/jobs/{job}"), 404, "JOB_NOT_FOUND")
    async with client_for(platform, None) as anon:
        for method, path in (("GET", P), ("GET", f"{P}/jobs"), ("POST", f"{P}/a330-roles"), ("POST", f"{P}/jobs")):
            assert_envelope(await anon.request(method, path), 401)
    assert (await api.post(f"{BASE}/{aid}/actions/disable")).status_code == 204
    assert_envelope(await api.post(f"{P}/a330-roles"), 409, "AUTOMATION_DISABLED")
    assert_envelope(await api.delete(f"{P}/a330-roles"), 405)
    assert_envelope(await api.get(f"{P}/jobs/no-such-job"), 404, "JOB_NOT_FOUND")
    await make(api, "a330 ROLES")  # another automation with the same slug
    assert_envelope(await api.get(f"{P}/a330-roles"), 409, "PROCESS_AMBIGUOUS")


async def test_jobs_and_the_route_trap(platform: Platform, api: httpx.AsyncClient) -> None:
    await make(api, "Jobs", stdout="job output\n", sleep=0.6, artifacts={"process/summary.txt": "jobs done"})
    r = await api.get(f"{P}/jobs")
    assert r.status_code == 200 and r.json() == {"jobs": []}  # the jobs resource, not the process "Jobs"
    assert_envelope(await api.post(f"{P}/jobs"), 405, "METHOD_NOT_ALLOWED")
    assert platform.backend.launched == []  # type: ignore[attr-defined]
    assert (await api.get(P, params={"$filter": "Value eq 'jobs'"})).json()["processes"][0]["Name"] == "Jobs"
    r = await api.post(f"{P}/jobs/jobs", json={})
    assert r.status_code == 200, r.text
    sched = r.json()
    assert sched["IsProcessing"] is True and sched["process"] == "jobs" and sched["model-name"] == "ad_pinstance"
    assert sched["AD_PInstance_ID"] == sched["id"] and sched["AD_Process_ID"]["identifier"] == "Jobs"
    assert sched["jobStatus"] == f"{P}/jobs/{sched['id']}" == r.headers["location"]
    assert sched["NotificationType"] is None and sched["status"] in ("queued", "starting", "running")
    running = (await api.get(f"{P}/jobs")).json()["jobs"]
    assert [j["id"] for j in running] == [sched["id"]] and running[0]["IsProcessing"] is True

    async def ended() -> dict[str, Any] | None:
        doc: dict[str, Any] = (await api.get(f"{P}/jobs/{sched['id']}")).json()
        return doc if not doc["IsProcessing"] else None

    done = await eventually(ended, "the job ends")
    assert done["Result"] == 1 and done["ErrorMsg"] == "" and done["summary"] == "jobs done"
    assert done["logs"] == ["job output"] and done["isError"] is False and done["status"] == "finished"
    assert (await api.get(f"{P}/jobs")).json() == {"jobs": []}
    r = await api.post(f"{P}/jobs/jobs", json={"notification-type": "X"})
    assert "notification-type" in str(assert_envelope(r, 400, "INVALID_PARAMETERS")["detail"])
    assert_envelope(await api.post(f"{P}/jobs/jobs", json={"notification-type": "E"}), 400, "EMAIL_NOT_CONFIGURED")
    assert_envelope(await api.post(f"{P}/jobs/nope"), 404, "PROCESS_NOT_FOUND")


# --- notifications ------------------------------------------------------------------------------------


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content)))
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


async def test_job_notifications_email_and_stored(
    make_platform: PlatformFactory, database_url: str, smtp: tuple[Inbox, int]
) -> None:
    inbox, port = smtp
    platform = await make_platform(database_url, smtp_host="127.0.0.1", smtp_port=port, smtp_from="cp@example.org")
    async with client_for(platform) as api:
        await make(api, "A340-report", stdout="line\n", sleep=0.2, artifacts={"process/report/r.pdf": "%PDF-x"})
        await make(api, "A341-fails", exitCode=1)
        ops_token = await new_token(platform, role="operator", user="ops@example.com")
        async with client_for(platform, ops_token) as ops:
            r = await ops.post(f"{P}/jobs/a340-report", json={"notification-type": "B"})
            assert r.status_code == 200, r.text
            job = r.json()
            assert job["NotificationType"] == "B"

            async def listed() -> list[dict[str, Any]]:
                data: list[dict[str, Any]] = (await ops.get("/api/v1/notifications")).json()["data"]
                return data

            items = await eventually(listed, "a stored notification")
            assert len(items) == 1 and items[0]["runId"] == job["id"] and items[0]["read"] is False
            assert items[0]["kind"] == "process.job" and "a340-report completed" in items[0]["title"]
            await eventually(lambda: _async(bool(inbox.messages)), "an e-mail")
            sender, rcpts, raw = inbox.messages[0]
            assert sender == "cp@example.org" and rcpts == ["ops@example.com"]
            mail = message_from_bytes(raw)
            assert "a340-report completed" in str(mail["Subject"])
            names = [part.get_filename() for part in mail.walk() if part.get_filename()]
            assert names == ["r.pdf"]

            async def email_sent() -> bool:
                doc = (await ops.get(f"{P}/jobs/{job['id']}")).json()
                return bool(doc["notification"]["email"] == "sent" and doc["notification"]["notifiedAt"])

            await eventually(email_sent, "the e-mail recorded as sent")
            # N only: stored, no e-mail; E only with an explicit address: e-mail, nothing stored
            await ops.post(f"{P}/jobs/a341-fails", json={"notification-type": "n"})
            items = await eventually(lambda: _len_at_least(ops, 2), "a second notification")
            assert "a341-fails failed" in items[0]["title"] and "exit code 1" in items[0]["body"]
            await api.post(
                f"{P}/jobs/a341-fails", json={"notification-type": "E", "notification-email": "boss@example.com"}
            )
            await eventually(lambda: _async(len(inbox.messages) >= 2), "the second e-mail")
            assert inbox.messages[1][1] == ["boss@example.com"] and len(inbox.messages) == 2
            assert (await api.get("/api/v1/notifications")).json() == {"data": []}  # the admin's own list
            # mark read
            assert (await ops.post(f"/api/v1/notifications/{items[0]['id']}/actions/read")).status_code == 204
            assert (await ops.post(f"/api/v1/notifications/{items[0]['id']}/actions/read")).status_code == 204
            unread = (await ops.get("/api/v1/notifications", params={"unread": "true"})).json()["data"]
            assert [n["id"] for n in unread] == [items[1]["id"]]
            assert_envelope(await api.post(f"/api/v1/notifications/{items[1]['id']}/actions/read"), 404)
            assert (await ops.post("/api/v1/notifications/actions/read-all")).status_code == 204
            assert (await ops.get("/api/v1/notifications", params={"unread": "true"})).json() == {"data": []}
        # the admin user is not named by an address: E needs notification-email
        assert_envelope(
            await api.post(f"{P}/jobs/a340-report", json={"notification-type": "B"}), 400, "NO_EMAIL_ADDRESS"
        )
    assert len(inbox.messages) == 2  # each job notified once


async def _async(value: Any) -> Any:
    return value


async def _len_at_least(client: httpx.AsyncClient, n: int) -> list[dict[str, Any]] | None:
    data: list[dict[str, Any]] = (await client.get("/api/v1/notifications")).json()["data"]
    return data if len(data) >= n else None
