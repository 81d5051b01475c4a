"""A webhook run through a live server on the real Docker engine: no bearer token, the executionToken in
the query, the request body on the script's stdin, the run visible to the owner with context webhook."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.support.e2e import BASE, Server

pytestmark = pytest.mark.docker

ECHO = """\
import json, os, sys
print(json.dumps({"stdin": json.load(sys.stdin), "run": os.environ["JETQUERY_RUN_ID"]}))
"""


def test_webhook_run_in_a_real_sandbox(server: Server) -> None:
    aid = server.automation("webhook-echo", ECHO)
    token = server.client.get(f"{BASE}/{aid}").json()["executionToken"]
    with httpx.Client(base_url=server.url, timeout=60) as anonymous:
        refused = anonymous.post(f"{BASE}/{aid}/actions/execute", params={"X-Execution-Token": "nope"})
        assert refused.status_code == 401 and refused.json()["errors"][0]["code"] == "INVALID_EXECUTION_TOKEN"
        r = anonymous.post(f"{BASE}/{aid}/actions/execute", params={"X-Execution-Token": token}, json={"event": "push"})
    assert r.status_code == 201, r.text
    run = server.wait_run(aid, r.json()["id"])
    assert run["status"] == "finished" and run["context"] == "webhook", run
    out = json.loads(run["stdout"])
    assert out == {"stdin": {"event": "push"}, "run": run["id"]}
    assert token not in server.log_text(tail=200000)  # the query string never reaches the server's log
