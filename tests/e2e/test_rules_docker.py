"""Seed 003's rules on a live server with real sandboxes: when one automation fails, a rule starts a clean-up
automation with args and input built from CEL expressions over the failed run; a rule before it that fails
is recorded and does not stop it."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.support.e2e import BASE, Server

pytestmark = pytest.mark.docker
RULES = "/app_offering_automation_rules"

FAILING = "import sys\nprint('half done')\nsys.exit(3)\n"
CLEANUP = "import json, sys\nprint(json.dumps({'argv': sys.argv[1:], 'stdin': json.load(sys.stdin)}))\n"


def evaluations(server: Server, rule_id: int, *, timeout: float = 60.0) -> list[dict[str, Any]]:
    end = time.monotonic() + timeout
    while True:
        r = server.client.get(f"{RULES}/{rule_id}/evaluations")
        assert r.status_code == 200, r.text
        if r.json():
            return r.json()  # type: ignore[no-any-return]
        if time.monotonic() > end:
            pytest.fail(f"rule {rule_id} was never evaluated:\n{server.log_text()}")
        time.sleep(0.2)


def test_a_failed_automation_starts_its_cleanup(server: Server) -> None:
    job = server.automation("nightly", FAILING)
    cleanup = server.automation("cleanup", CLEANUP)
    cleanup_name = server.client.get(f"{BASE}/{cleanup}").json()["name"]
    broken = server.client.post(
        RULES,
        json={
            "app_offering": job,
            "rulable_type": "runs",
            "name": "broken first",
            "trigger": "on run failed",
            "position": 1,
            "actions": 'start "no-such-automation"',
        },
    )
    assert broken.status_code == 201, broken.text
    r = server.client.post(
        RULES,
        json={
            "app_offering": job,
            "rulable_type": "runs",
            "name": "clean up after a failure",
            "trigger": "on run failed",
            "position": 2,
            "expressions": "code: run.exitCode\nwho: run.automationName",
            "condition": "code != 0",
            "actions": f'a1: start {{"automation": "{cleanup_name}", "args": ["--failed-run", run.id], '
            '"input": {"exitCode": code, "automation": who}}',
        },
    )
    assert r.status_code == 201, r.text
    rule = r.json()
    failed = server.run_sync(job)
    assert failed["status"] == "failed" and failed["exitCode"] == 3, failed
    [ev] = evaluations(server, rule["id"])
    assert ev["outcome"] == "fired" and ev["run_id"] == failed["id"], ev
    started = ev["actions"][0]
    assert started["ok"] and started["automationId"] == cleanup
    run = server.wait_run(cleanup, started["runId"])
    assert run["status"] == "finished" and run["context"] == "triggered", run
    job_name = server.client.get(f"{BASE}/{job}").json()["name"]
    assert json.loads(run["stdout"]) == {
        "argv": ["--failed-run", failed["id"]],
        "stdin": {"exitCode": 3, "automation": job_name},
    }
    [bad] = evaluations(server, broken.json()["id"])
    assert bad["outcome"] == "failed" and "no-such-automation" in bad["error"]
    assert bad["id"] < ev["id"]  # position order
    shown = server.client.get(f"{RULES}/{rule['id']}").json()
    assert shown["last_fired_at"] and shown["last_error"] is None
    # the clean-up run finished: it fires no rule of its own, and only one clean-up ran
    assert len(server.client.get(f"{BASE}/{cleanup}/runs").json()["data"]) == 1
