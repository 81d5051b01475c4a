"""One automation, three surfaces (seed 004 native, seed 000 /api/core/automations, seed 002 /scripting), real
sandboxes: a run started through any of them is the same run in the other two - same id, same state, same
exit code, same stdout and stderr - and a webhook run shows up the same way. No surface keeps its own copy."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.e2e import BASE, Server

CORE = "/api/core/automations"

# Prints where it was started from (its argv or the request's method), echoes its input, warns on stderr;
# exits 0 unless asked to fail.
SCRIPT = r"""
import os, sys
data = sys.stdin.buffer.read()
print("argv=%s" % ",".join(sys.argv[1:]))
print("input=%s" % data.decode("utf-8", "replace"))
print("method=%s" % os.environ.get("JETQUERY_REQUEST_METHOD", "-"))
print("a warning", file=sys.stderr)
sys.exit(4 if b"fail" in data or "fail" in sys.argv else 0)
"""


def name_of(server: Server, aid: str) -> str:
    r = server.client.get(f"{BASE}/{aid}")
    assert r.status_code == 200, r.text
    return str(r.json()["name"])


def seen_everywhere(server: Server, aid: str, name: str, run_id: str) -> dict[str, Any]:
    """The run as each surface shows it, checked to agree; returns the native run."""
    run = server.wait_run(aid, run_id)
    stdout, stderr = server.logs(aid, run_id), server.logs(aid, run_id, "stderr")
    assert stderr == b"a warning\n"

    core = server.client.get(f"{CORE}/status/{run_id}")
    assert core.status_code == 200, core.text
    job = core.json()["data"]
    assert job["jobid"] == run_id and job["jobstatus"] == f"{CORE}/status/{run_id}"
    assert job["exitCode"] == str(run["exitCode"]) and job["stdout"].encode() == stdout
    assert job["stderr"].encode() == stderr
    assert job["jobstate"] == {"finished with warnings": "Succeeded", "finished": "Succeeded"}.get(
        run["status"], "Failed"
    )

    listing = server.client.get(f"/scripting/log/script/{aid}", params={"limit": 100})
    assert listing.status_code == 200, listing.text
    entries = {e["executionId"]: e for e in listing.json()["filteredLogs"]}
    assert entries[run_id]["scriptId"] == aid
    execution = server.client.get(f"/scripting/log/script/{aid}/execution/{run_id}")
    if run["exitCode"] == 0:  # nothing answered through outputs/.response: stdout is the answer
        assert entries[run_id]["statusCode"] == 200
        assert execution.status_code == 200 and execution.content == stdout
        assert execution.headers["content-type"].startswith("text/plain")
        assert execution.headers["x-script-status-code"] == "200"
    else:  # a failed script did not fully execute: seed 002's 502, the same as /run answered
        assert entries[run_id]["statusCode"] == 502 and execution.status_code == 200
        assert execution.headers["x-script-status-code"] == "502"
        assert execution.json()["errors"][0]["code"] == "SCRIPT_FAILED"

    in_list = server.client.get(f"{BASE}/{aid}/runs", params={"limit": 100})
    assert in_list.status_code == 200, in_list.text
    listed = [r for r in in_list.json()["data"] if r["id"] == run_id]
    assert len(listed) == 1 and listed[0]["status"] == run["status"] and listed[0]["exitCode"] == run["exitCode"]
    return run


def test_one_run_whichever_surface_started_it(server: Server) -> None:
    aid = server.automation("cross-surface", SCRIPT, timeoutSeconds=60)
    name = name_of(server, aid)

    native = server.run_sync(aid, args=["native"], input="from native")
    run = seen_everywhere(server, aid, name, native["id"])
    assert run["context"] == "api_sync" and server.logs(aid, native["id"]).startswith(b"argv=native\n")

    r = server.client.post(f"{CORE}/exec/{name}", params={"args": "core,000"}, content=b"from core")
    assert r.status_code == 200, r.text
    core = r.json()["data"]
    run = seen_everywhere(server, aid, name, core["jobid"])
    assert run["args"] == ["core", "000"] and core["stdout"].startswith("argv=core,000\ninput=from core\n")

    r = server.client.post(f"{CORE}/job/{name}", params={"args": "fail"})
    assert r.status_code == 200 and r.json()["data"]["jobstate"] == "Pending", r.text
    run = seen_everywhere(server, aid, name, r.json()["data"]["jobid"])
    assert run["status"] == "failed" and run["exitCode"] == 4 and run["context"] == "api_async"

    r = server.client.put(
        f"/scripting/script/{aid}/run", content=b"from scripting", headers={"Content-Type": "text/plain"}
    )
    assert r.status_code == 200, r.text
    run = seen_everywhere(server, aid, name, r.headers["x-execution-id"])
    assert r.content == server.logs(aid, run["id"]) and b"method=PUT\n" in r.content

    r = server.client.post(f"/scripting/script/{aid}/background", content=b"fail in background")
    assert r.status_code == 202, r.text
    background = r.headers["x-execution-id"]
    run = seen_everywhere(server, aid, name, background)
    assert run["status"] == "failed" and run["exitCode"] == 4

    token = server.client.get(f"{BASE}/{aid}").json()["executionToken"]
    hook = httpx.post(
        f"{server.url}{BASE}/{aid}/actions/execute", params={"X-Execution-Token": token}, content=b"from a webhook"
    )
    assert hook.status_code in (200, 201), hook.text
    run = seen_everywhere(server, aid, name, hook.json()["id"])
    assert run["context"] == "webhook" and b"input=from a webhook\n" in server.logs(aid, run["id"])

    # the automation's own record agrees with the last run whichever surface started it
    automation = server.client.get(f"{BASE}/{aid}").json()
    assert automation["lastRun"]["id"] == run["id"]
    browsed = {a["name"]: a for a in server.client.get(f"{CORE}/browse").json()["data"]}
    assert browsed[name]["lastJobid"] == run["id"] and browsed[name]["lastJobstate"] == "Succeeded"
