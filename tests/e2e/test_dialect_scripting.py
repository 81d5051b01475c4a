"""Contract test of seed 002 (the scripting app at /scripting), written from the seed document, against a
live ``controlplane serve`` with real sandboxes.

Seed, line by line: /scripting/script/{scriptId}/run with POST, GET, PUT, DELETE, PATCH and any body and
content type; the answer's content and content type are the script's; custom status, 401, 404, 429 past 10
simultaneous executions per tenant, 500 could not start, 502 could not fully execute, 504 timeout.
/scripting/script/{scriptId}/background: 202 scheduled, 401, 404, 500; 14 minutes at most; headers up to
256 KB. /scripting/log/script/{scriptId}: {"filteredLogs": [{executionId, scriptId, executionDate,
statusCode}], "moreElements"}, 200, 401, 403, 404. /scripting/log/script/{scriptId}/execution/{executionId}:
the execution's content with its content type ("Hello John Smith!").
"""

from __future__ import annotations

import re
import secrets
import subprocess
import threading
import time
from typing import Any

import httpx
import pytest

from tests.support.e2e import BASE, Server

DATE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
IMAGE = "controlplane-sandbox-python:1"

# One script for most cases; ?mode= picks what it does. It answers through the image's helper module.
ECHO = r"""
import json, os, sys, time
from jetquery_response import request, respond, respond_json

req = request()
stdin = sys.stdin.buffer.read()
mode = req.query_params.get("mode", ["echo"])[0]
if mode == "binary":
    respond(bytes(range(256)) * 4, status=203, content_type="application/octet-stream")
elif mode == "hello":
    print("Hello %s!" % req.json()["name"])
elif mode == "fail":
    respond("an answer given before failing is not used")
    print("about to fail")
    sys.exit(3)
elif mode == "sleep":
    time.sleep(float(req.query_params["seconds"][0]))
    print("slept")
else:
    respond_json(
        {
            "method": req.method,
            "query": req.query,
            "headers": req.headers,
            "contentType": req.content_type,
            "body": stdin.decode("latin-1"),
            "sameAsInputFile": stdin == req.body,
            "env": {k: v for k, v in os.environ.items() if k.startswith("JETQUERY_REQUEST")},
        },
        status=201,
    )
"""

# The convention without the helper: three files, written by a shell script.
SHELL = """R="$JETQUERY_OUTPUTS/.response"
printf 202 > "$R/status"
printf 'text/csv; charset=utf-8' > "$R/content-type"
printf 'method;%s\\n' "$JETQUERY_REQUEST_METHOD" > "$R/body"
cat >> "$R/body"
"""


def envelope(r: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    doc: dict[str, Any] = r.json()
    assert set(doc) == {"errors", "traceId"} and doc["traceId"] == r.headers["x-request-id"]
    if code is not None:
        assert doc["errors"][0]["code"] == code, doc
    return doc


@pytest.fixture(scope="module")
def echo(server: Server) -> str:
    return server.automation("scripting-echo", ECHO, timeoutSeconds=60)


@pytest.mark.parametrize(
    ("method", "content_type", "body"),
    [
        ("POST", "application/json", b'{"name": "John Smith"}'),
        ("GET", None, b""),
        ("PUT", "text/plain; charset=utf-8", "Grüße\n".encode()),
        ("DELETE", "application/octet-stream", bytes([0, 255, 10, 13, 7])),
        ("PATCH", "application/xml", b"<name>John Smith</name>"),
    ],
)
def test_every_method_and_content_type_reaches_the_script(
    server: Server, echo: str, method: str, content_type: str | None, body: bytes
) -> None:
    headers = {"X-Custom": "yes", **({"Content-Type": content_type} if content_type else {})}
    r = server.client.request(
        method, f"/scripting/script/{echo}/run", params={"mode": "echo", "x": "1"}, content=body, headers=headers
    )
    assert r.status_code == 201, r.text
    assert r.headers["content-type"] == "application/json"
    seen = r.json()
    assert seen["method"] == method and seen["query"] == "mode=echo&x=1"
    assert seen["body"].encode("latin-1") == body and seen["sameAsInputFile"] is True
    assert seen["contentType"] == content_type and seen["headers"]["x-custom"] == "yes"
    assert "authorization" not in seen["headers"]
    assert seen["env"]["JETQUERY_REQUEST_METHOD"] == method
    assert seen["env"]["JETQUERY_REQUEST_QUERY"] == "mode=echo&x=1"
    # the same execution through the native API: one run, context api_sync, the answer kept with it
    run = server.get_run(echo, r.headers["x-execution-id"])
    assert run["context"] == "api_sync" and run["status"] == "finished" and run["exitCode"] == 0
    native = server.client.get(f"{BASE}/{echo}/runs/{run['id']}/response")
    assert native.status_code == 200 and native.content == r.content
    assert native.headers["x-script-status-code"] == "201" and native.headers["x-response-source"] == "script"


def test_a_binary_answer_with_its_own_status_and_type(server: Server, echo: str) -> None:
    r = server.client.post(f"/scripting/script/{echo}/run", params={"mode": "binary"})
    assert r.status_code == 203, r.text
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.content == bytes(range(256)) * 4


def test_stdout_is_the_answer_when_the_script_writes_none(server: Server, echo: str) -> None:
    """The seed's own example: POST {"name": "John Smith"}, the log's content is "Hello John Smith!"."""
    r = server.client.post(f"/scripting/script/{echo}/run?mode=hello", json={"name": "John Smith"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/plain; charset=utf-8" and r.text == "Hello John Smith!\n"
    execution = r.headers["x-execution-id"]
    log = server.client.get(f"/scripting/log/script/{echo}/execution/{execution}")
    assert log.status_code == 200 and log.text == "Hello John Smith!\n"
    assert log.headers["content-type"] == "text/plain; charset=utf-8" and log.headers["x-script-status-code"] == "200"
    assert server.logs(echo, execution) == b"Hello John Smith!\n"  # the same run's stdout, natively
    listed = server.client.get(f"/scripting/log/script/{echo}", params={"limit": 1000}).json()["filteredLogs"]
    assert {"executionId": execution, "scriptId": echo, "statusCode": 200} in [
        {k: e[k] for k in ("executionId", "scriptId", "statusCode")} for e in listed
    ]


def test_a_shell_script_answers_with_plain_files_and_the_log_pages(server: Server) -> None:
    sid = server.automation("scripting-shell", SHELL, runtime="shell")
    done = []
    for method in ("PUT", "POST", "GET"):
        r = server.client.request(method, f"/scripting/script/{sid}/run", content=b"a;b\n")
        assert r.status_code == 202, r.text
        assert r.headers["content-type"] == "text/csv; charset=utf-8"
        assert r.content == f"method;{method}\na;b\n".encode()
        done.append(r.headers["x-execution-id"])
    first = server.client.get(f"/scripting/log/script/{sid}", params={"limit": 2})
    assert first.status_code == 200
    page = first.json()
    assert set(page) == {"filteredLogs", "moreElements"} and page["moreElements"] is True
    rest = server.client.get(f"/scripting/log/script/{sid}", params={"limit": 2, "offset": 2}).json()
    assert rest["moreElements"] is False
    entries = page["filteredLogs"] + rest["filteredLogs"]
    assert [e["executionId"] for e in entries] == done[::-1]  # newest first
    for entry in entries:
        assert set(entry) == {"executionId", "scriptId", "executionDate", "statusCode"}
        assert entry["scriptId"] == sid and entry["statusCode"] == 202 and DATE.match(entry["executionDate"])
    content = server.client.get(f"/scripting/log/script/{sid}/execution/{done[0]}")
    assert content.status_code == 200 and content.content == b"method;PUT\na;b\n"
    assert content.headers["content-type"] == "text/csv; charset=utf-8"


def test_a_failing_script_is_502(server: Server, echo: str) -> None:
    r = server.client.post(f"/scripting/script/{echo}/run?mode=fail")
    doc = envelope(r, 502, "SCRIPT_FAILED")
    assert "NON_ZERO_EXIT" in [e["code"] for e in doc["errors"]]
    run = server.get_run(echo, r.headers["x-execution-id"])
    assert run["status"] == "failed" and run["exitCode"] == 3 and run["stdout"] == "about to fail\n"
    logs = server.client.get(f"/scripting/log/script/{echo}", params={"limit": 1}).json()["filteredLogs"]
    assert logs[0]["executionId"] == run["id"] and logs[0]["statusCode"] == 502


def test_a_script_past_its_timeout_is_504(server: Server) -> None:
    sid = server.automation("scripting-slow", ECHO, timeoutSeconds=2)
    started = time.monotonic()
    r = server.client.get(f"/scripting/script/{sid}/run", params={"mode": "sleep", "seconds": "60"})
    doc = envelope(r, 504, "SCRIPT_TIMEOUT")
    assert time.monotonic() - started < 20
    assert doc["errors"][1]["code"] == "RUN_TIMEOUT"
    execution = r.headers["x-execution-id"]
    assert server.get_run(sid, execution)["status"] == "exceeded limit"
    assert server.containers(execution) == []  # the sandbox is gone


def test_authentication_and_missing_scripts(server: Server, echo: str) -> None:
    paths = [f"/scripting/script/{echo}/run", f"/scripting/script/{echo}/background"]
    logs = [f"/scripting/log/script/{echo}", f"/scripting/log/script/{echo}/execution/{secrets.token_hex(4)}"]
    with httpx.Client(base_url=server.url, timeout=30) as anonymous:
        for path in paths + logs:
            envelope(anonymous.get(path), 401, "UNAUTHORIZED")
            envelope(anonymous.get(path, headers={"Authorization": "Bearer cp_wrong"}), 401, "UNAUTHORIZED")
    missing = "00000000-0000-0000-0000-000000000000"
    for path in paths:
        envelope(server.client.post(path.replace(echo, missing)), 404, "NOT_FOUND")
    for path in logs:
        envelope(server.client.get(path.replace(echo, missing)), 404, "NOT_FOUND")
    envelope(server.client.get(logs[1]), 404)  # no such execution
    stranger = server.user_token("admin", tenant=f"scripting-{secrets.token_hex(3)}")
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {stranger}"}, timeout=30) as theirs:
        for path in paths:
            doc = envelope(theirs.post(path), 404, "NOT_FOUND")  # another tenant's script does not exist
            assert doc["errors"][0]["detail"] == f"automation {echo} does not exist"
        envelope(theirs.get(logs[0]), 404, "NOT_FOUND")


def test_who_may_not_query_logs_gets_403(server: Server, echo: str) -> None:
    viewer = server.user_token("viewer")
    operator = server.user_token("operator")
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {viewer}"}, timeout=30) as as_viewer:
        envelope(as_viewer.get(f"/scripting/log/script/{echo}"), 403, "FORBIDDEN")
        envelope(as_viewer.get(f"/scripting/log/script/{echo}/execution/x"), 403, "FORBIDDEN")
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {operator}"}, timeout=30) as as_op:
        assert as_op.get(f"/scripting/log/script/{echo}").status_code == 200


def test_background_is_202_then_its_log_holds_the_answer(server: Server, echo: str) -> None:
    r = server.client.put(f"/scripting/script/{echo}/background?mode=hello", json={"name": "John Smith"})
    assert r.status_code == 202, r.text
    execution = r.json()["executionId"]
    assert r.json() == {"executionId": execution, "scriptId": echo} and r.headers["x-execution-id"] == execution
    location = r.headers["location"]
    assert location == f"{server.url}/scripting/log/script/{echo}/execution/{execution}"
    run = server.wait_run(echo, execution)
    assert run["context"] == "api_async" and run["timeoutSeconds"] == 60  # the script's own; 840 s at most
    log = server.client.get(location)
    assert log.status_code == 200 and log.text == "Hello John Smith!\n"


def test_request_headers_up_to_256_kb(server: Server, echo: str) -> None:
    r = server.client.post(f"/scripting/script/{echo}/background", headers={"X-Big": "x" * (256 * 1024)})
    envelope(r, 431, "HEADERS_TOO_LARGE")
    r = server.client.post(f"/scripting/script/{echo}/background?mode=binary", headers={"X-Big": "x" * 250_000})
    assert r.status_code == 202, r.text


def test_429_past_the_limit_and_500_when_the_script_cannot_start(make_server: Any) -> None:
    """A server with 2 synchronous slots per tenant (the default 10 is proven in tests/api) and its own tag
    of the sandbox image; removing that tag later makes every launch fail truthfully: could not start."""
    tag = f"cp-scripting-e2e:{secrets.token_hex(4)}"
    subprocess.run(["docker", "tag", IMAGE, tag], check=True, timeout=60)
    try:
        srv: Server = make_server(env={"CP_SYNC_CONCURRENCY_PER_TENANT": "2", "CP_SANDBOX_IMAGE": tag})
        sid = srv.automation("scripting-limits", ECHO, timeoutSeconds=60)
        results: list[int] = []

        def slow() -> None:
            with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {srv.token}"}, timeout=90) as c:
                results.append(c.post(f"/scripting/script/{sid}/run?mode=sleep&seconds=4").status_code)

        threads = [threading.Thread(target=slow) for _ in range(2)]
        for t in threads:
            t.start()
        end = time.monotonic() + 30
        while len(srv.client.get(f"{BASE}/{sid}/runs").json()["data"]) < 2 and time.monotonic() < end:
            time.sleep(0.05)
        r = srv.client.post(f"/scripting/script/{sid}/run?mode=hello", json={"name": "x"})
        envelope(r, 429, "SYNC_LIMIT")
        assert int(r.headers["retry-after"]) >= 1
        for t in threads:
            t.join(60)
        assert results == [200, 200]

        subprocess.run(["docker", "rmi", tag], check=True, timeout=60, capture_output=True)
        r = srv.client.post(f"/scripting/script/{sid}/run?mode=hello", json={"name": "x"})
        doc = envelope(r, 500, "SCRIPT_NOT_STARTED")
        assert "SANDBOX_IMAGE_MISSING" in [e["code"] for e in doc["errors"]]
        logs = srv.client.get(f"/scripting/log/script/{sid}", params={"limit": 1}).json()["filteredLogs"]
        assert logs[0]["executionId"] == r.headers["x-execution-id"] and logs[0]["statusCode"] == 500
    finally:
        subprocess.run(["docker", "rmi", tag], check=False, timeout=60, capture_output=True)
