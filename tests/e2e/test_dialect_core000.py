"""Seed 000's automations module (/api/core/automations) against a live server with real sandboxes, written
from the seed: job, exec, schedule, status and browse with GET and POST, the {"data": {...}} answers
(jobid, jobstatus, jobstate Pending|Running|Succeeded|Failed, exitCode as a string, stdout, stderr), both
forms of ``args``, A000-run-test and A002-tools-minimal (--status 0|1|2, --wait, --msg) as the seed
describes them, the JETQUERY_* environment (TOKEN usable against the API, HOST without a scheme, the
generated DSN, FILES, ARCHIVE, the tenant's variables and secrets), and every status code the dialect
documents (400, 401 incl. a token of another tenant's host, 403, 404, 405, 409, 413, 422, 429)."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx
import pytest

from tests.support.e2e import BASE, Server

CORE = "/api/core/automations"
FINAL_STATES = {"Succeeded", "Failed"}


@pytest.fixture(scope="module")
def configured(server: Server) -> Server:
    """The tenant's JETQUERY_* configuration: a variable, a secret, and the parts of a generated DSN."""
    for kind, name, value in (
        ("variables", "APP_NAME", "erp-app"),
        ("secrets", "API_KEY", "core000-api-key-5e3f"),
        ("variables", "DSN_SERVER", "192.1.1.1"),
        ("variables", "DSN_DATABASE", "ERP"),
        ("variables", "DSN_UID", "platforma"),
        ("secrets", "DSN_PWD", "pa55word-core000"),
    ):
        r = server.client.put(f"/api/v1/{kind}/{name}", json={"value": value})
        assert r.status_code in (200, 201), r.text
    return server


def data(resp: httpx.Response, status: int = 200) -> Any:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"data"}, body
    return body["data"]


def error(resp: httpx.Response, status: int, code: str | None = None) -> None:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"errors", "traceId"} and body["errors"], body
    if code is not None:
        assert body["errors"][0]["code"] == code, body


def check_job(d: dict[str, Any]) -> None:
    assert d["jobstatus"] == f"{CORE}/status/{d['jobid']}"
    assert d["jobstate"] in {"Pending", "Running", "Succeeded", "Failed"}
    assert isinstance(d["exitCode"], str) and isinstance(d["stdout"], str) and isinstance(d["stderr"], str)


def a000_variables(stdout: str) -> dict[str, str]:
    text = stdout[stdout.index("variables ") + len("variables ") :]
    return dict(json.loads(text))


def test_exec_a000_with_the_seeds_environment(configured: Server) -> None:
    server = configured
    d = data(server.client.get(f"{CORE}/exec/A000-run-test", params={"args": "arg1,arg2"}))
    check_job(d)
    assert d["jobstate"] == "Succeeded" and d["exitCode"] == "0" and d["stderr"] == ""
    assert "A000-run-test OK" in d["stdout"] and 'args ["arg1", "arg2"]' in d["stdout"]
    env = a000_variables(d["stdout"])
    assert env["JETQUERY_APP_NAME"] == "erp-app"
    assert env["JETQUERY_API_KEY"] == "***"  # a secret: masked wherever the run prints it
    assert env["JETQUERY_DSN"] == "SERVER=192.1.1.1;DATABASE=ERP;UID=platforma;PWD=***;Trusted_Connection=no;"
    assert env["JETQUERY_HOST"] == f"127.0.0.1:{server.port}" and "://" not in env["JETQUERY_HOST"]
    assert env["JETQUERY_FILES"] and env["JETQUERY_ARCHIVE"] and env["JETQUERY_TOKEN"] == "***"
    assert "core000-api-key-5e3f" not in json.dumps(d) and "pa55word-core000" not in json.dumps(d)

    posted = data(server.client.post(f"{CORE}/exec/A000-run-test", content=b'{"n": 1}'))
    assert posted["jobstate"] == "Succeeded" and 'input "{\\"n\\": 1}"' in posted["stdout"]
    status = data(server.client.get(posted["jobstatus"]))  # the relative status URL works as given
    assert {k: status[k] for k in ("jobid", "jobstate", "exitCode", "stdout")} == {
        k: posted[k] for k in ("jobid", "jobstate", "exitCode", "stdout")
    }
    # the same run through the native API
    run = server.get_run(server.automation_id("A000-run-test"), posted["jobid"])
    assert run["status"] == "finished" and run["stdout"] == posted["stdout"] and run["context"] == "api_sync"


@pytest.mark.parametrize(
    ("args", "state", "code", "stdout", "stderr"),
    [
        ("--status,0,--wait,0,--msg,fine", "Succeeded", "0", "fine\n", ""),
        ("--status 1 --wait 0 --msg x", "Failed", "1", "x\n", "error: general failure (--status 1)\n"),
        (
            "--status,2,--wait,0,--msg,y",
            "Failed",
            "2",
            "y\n",
            "error: incorrect usage or file not found (--status 2)\n",
        ),
        ('--wait 0 --msg "hello, world"', "Succeeded", "0", "hello, world\n", ""),
        ("--status 7", "Failed", "2", "", None),
    ],
)
def test_a002_status_and_msg(
    configured: Server, args: str, state: str, code: str, stdout: str, stderr: str | None
) -> None:
    d = data(configured.client.get(f"{CORE}/exec/A002-tools-minimal", params={"args": args}))
    check_job(d)
    assert (d["jobstate"], d["exitCode"], d["stdout"]) == (state, code, stdout), d
    if stderr is not None:
        assert d["stderr"] == stderr
    else:
        assert "usage: A002-tools-minimal" in d["stderr"]


def test_a002_default_message_and_wait_as_a_job(configured: Server) -> None:
    server = configured
    d = data(server.client.post(f"{CORE}/exec/A002-tools-minimal", params={"args": "--wait 0"}))
    printed = json.loads(d["stdout"])
    assert printed["args"] == ["--wait", "0"] and printed["env"]["JETQUERY_APP_NAME"] == "erp-app"
    assert printed["env"]["JETQUERY_API_KEY"] == "***" and printed["env"]["JETQUERY_TOKEN"] == "***"

    started = time.monotonic()
    job = data(server.client.get(f"{CORE}/job/A002-tools-minimal", params={"args": "--wait 3 --msg waited"}))
    assert set(job) >= {"jobid", "jobstatus"} and job["jobstatus"] == f"{CORE}/status/{job['jobid']}"
    seen = []
    while True:
        s = data(server.client.get(job["jobstatus"]))
        check_job(s)
        seen.append(s["jobstate"])
        if s["jobstate"] in FINAL_STATES or time.monotonic() - started > 60:
            break
        time.sleep(0.2)
    assert seen[-1] == "Succeeded" and "Running" in seen, seen
    assert s["exitCode"] == "0" and s["stdout"] == "waited\n" and time.monotonic() - started >= 3
    assert data(server.client.post(job["jobstatus"]))["jobstate"] == "Succeeded"  # status answers POST too


def test_schedule_and_browse(configured: Server) -> None:
    server = configured
    s = data(server.client.get(f"{CORE}/schedule/A000-run-test", params={"cron": "0 9 * * 1-5"}))
    assert s["jobstate"] == "Pending" and s["cron"] == "0 9 * * 1-5" and s["nextRunAt"]
    assert s["jobstatus"] == f"{CORE}/status/{s['jobid']}"
    again = data(server.client.post(f"{CORE}/job/A000-run-test", params={"cron": "0 9 * * 1-5"}))
    assert again["jobid"] == s["jobid"]
    status = data(server.client.get(s["jobstatus"]))
    assert status["jobstate"] == "Pending" and status["exitCode"] == "" and status["lastJobid"] is None
    native = server.client.get(f"{BASE}/{server.automation_id('A000-run-test')}").json()
    assert {"id": s["jobid"], "cron": "0 9 * * 1-5"}.items() <= native["schedules"][0].items()

    listing = data(server.client.get(f"{CORE}/browse"))
    names = {a["name"]: a for a in listing}
    assert {"A000-run-test", "A002-tools-minimal"} <= set(names)
    assert [x["jobid"] for x in names["A000-run-test"]["schedules"]] == [s["jobid"]]
    assert data(server.client.post(f"{CORE}/browse")) == data(server.client.get(f"{CORE}/browse"))
    operator = server.user_token("operator")
    error(server.client.get(f"{CORE}/browse", headers={"Authorization": f"Bearer {operator}"}), 403, "FORBIDDEN")
    error(
        server.client.get(
            f"{CORE}/schedule/A000-run-test",
            params={"cron": "* * * * *"},
            headers={"Authorization": f"Bearer {operator}"},
        ),
        403,
    )


CALLBACK = r"""
import os, sys, requests
host = os.environ["JETQUERY_HOST"]
assert "://" not in host, host
url = "http://" + host + "/api/core/automations/status/" + os.environ["JETQUERY_RUN_ID"]
r = requests.get(url, headers={"Authorization": "Bearer " + os.environ["JETQUERY_TOKEN"]}, timeout=10)
print("status", r.status_code, r.json()["data"]["jobstate"])
files, archive = os.environ["JETQUERY_FILES"], os.environ["JETQUERY_ARCHIVE"]
print("files", os.path.isdir(files), os.access(files, os.W_OK))
open(os.path.join(archive, "note.txt"), "w").write("kept")
print("archive", open(os.path.join(archive, "note.txt")).read())
print("dsn", os.environ["JETQUERY_DSN"].startswith("SERVER=192.1.1.1;"))
"""


def test_run_token_works_against_the_api_and_host_has_no_scheme(configured: Server) -> None:
    server = configured
    aid = server.automation("A050-callback", CALLBACK, network="api", timeoutSeconds=60)
    name = server.client.get(f"{BASE}/{aid}").json()["name"]
    d = data(server.client.get(f"{CORE}/exec/{name}"))
    assert d["jobstate"] == "Succeeded", d
    assert d["stdout"] == "status 200 Running\nfiles True False\narchive kept\ndsn True\n", d


def test_error_codes(configured: Server) -> None:
    server = configured
    url = server.url
    error(httpx.get(f"{url}{CORE}/browse"), 401, "UNAUTHORIZED")
    error(httpx.get(f"{url}{CORE}/exec/A000-run-test", headers={"Authorization": "Bearer nope"}), 401)
    other_admin = server.user_token("admin", tenant="core000-other")
    # a token of the tenant the Host names works; the default tenant's token sent to that host is refused
    assert (
        httpx.get(
            f"{url}{CORE}/browse", headers={"Authorization": f"Bearer {other_admin}", "Host": "core000-other"}
        ).status_code
        == 200
    )
    error(
        server.client.get(f"{CORE}/exec/A000-run-test", headers={"Host": "core000-other"}), 401, "TOKEN_HOST_MISMATCH"
    )
    error(server.client.get(f"{CORE}/exec/A999-missing"), 404, "AUTOMATION_NOT_FOUND")
    error(server.client.get(f"{CORE}/status/not-a-job"), 404, "JOB_NOT_FOUND")
    error(server.client.get(f"{CORE}/exec/A000-run-test", headers={"Authorization": f"Bearer {other_admin}"}), 404)
    viewer = server.user_token("viewer")
    error(server.client.get(f"{CORE}/job/A000-run-test", headers={"Authorization": f"Bearer {viewer}"}), 403)
    error(server.client.put(f"{CORE}/exec/A000-run-test"), 405)
    error(server.client.get(f"{CORE}/schedule/A000-run-test"), 400, "CRON_REQUIRED")
    error(server.client.get(f"{CORE}/job/A000-run-test", params={"cron": "* * * * *", "args": "x"}), 400)
    error(server.client.get(f"{CORE}/exec/A002-tools-minimal", params={"args": '--msg "open'}), 400, "INVALID_ARGS")
    error(server.client.get(f"{CORE}/schedule/A000-run-test", params={"cron": "every minute"}), 422)
    error(server.client.post(f"{CORE}/exec/A000-run-test", content=b"x" * (11 * 1024 * 1024)), 413)
    aid = server.automation("A051-disabled", "print('never')")
    name = server.client.get(f"{BASE}/{aid}").json()["name"]
    assert server.client.post(f"{BASE}/{aid}/actions/disable").status_code == 204
    error(server.client.get(f"{CORE}/exec/{name}"), 409, "AUTOMATION_DISABLED")


def test_too_many_synchronous_runs_is_429(configured: Server) -> None:
    """Seed 000's exec is synchronous: past CP_SYNC_CONCURRENCY_PER_TENANT (10) in flight, 429 + Retry-After."""
    server = configured
    token = server.user_token("admin", tenant="core000-busy")
    headers = {"Authorization": f"Bearer {token}"}
    r = server.client.post(
        BASE, headers=headers, json={"name": "A052-sleeper", "code": "import time; time.sleep(6)", "timeoutSeconds": 60}
    )
    assert r.status_code == 201, r.text
    aid = r.json()["id"]
    results: list[httpx.Response] = []

    def call() -> None:
        with httpx.Client(base_url=server.url, headers=headers, timeout=120) as c:
            results.append(c.get(f"{CORE}/exec/A052-sleeper"))

    threads = [threading.Thread(target=call) for _ in range(10)]
    for t in threads:
        t.start()
    end = time.monotonic() + 30
    while len(server.client.get(f"{BASE}/{aid}/runs", headers=headers, params={"limit": 20}).json()["data"]) < 10:
        assert time.monotonic() < end, "the ten runs were not admitted"
        time.sleep(0.1)
    over = server.client.get(f"{CORE}/exec/A052-sleeper", headers=headers)
    error(over, 429)
    assert int(over.headers["retry-after"]) >= 1
    for t in threads:
        t.join(120)
    assert [r.status_code for r in results] == [200] * 10
    assert {r.json()["data"]["jobstate"] for r in results} == {"Succeeded"}
