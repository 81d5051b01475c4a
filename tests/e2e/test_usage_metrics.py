"""Live server, real sandboxes: a run's bandwidth and API calls are measured, not estimated - they reach the
run's metrics, the usage API and its export archive."""

from __future__ import annotations

import io
import json
import zipfile

import httpx

from tests.support.e2e import BASE, Server

# Calls the API back with its own token (network "api"): three reads of a ~60 KB automation, and one
# refused write carrying a ~150 KB body. Prints what it received and sent at the HTTP level.
CALLER = """\
import json, os, urllib.error, urllib.request
host, token = os.environ["JETQUERY_HOST"], os.environ["JETQUERY_TOKEN"]
target = json.load(open(os.environ["JETQUERY_INPUT_FILE"]))["target"]
auth = {"Authorization": "Bearer " + token}
received = sent = 0
for _ in range(3):
    req = urllib.request.Request("http://%s/api/v1/automations/%s" % (host, target), headers=auth)
    with urllib.request.urlopen(req, timeout=30) as resp:
        received += len(resp.read())
body = json.dumps({"user": "u" * 150000}).encode()
req = urllib.request.Request("http://%s/api/v1/tokens" % host, data=body, method="POST",
                             headers={**auth, "Content-Type": "application/json"})
try:
    urllib.request.urlopen(req, timeout=30)
except urllib.error.HTTPError as exc:
    print("refused", exc.code)
sent += len(body)
print(json.dumps({"received": received, "sent": sent}))
"""


def test_bandwidth_and_api_calls_are_real_and_reach_usage_and_export(server: Server) -> None:
    target = server.automation("payload", "print(1)", description="d" * 60000)
    caller = server.automation("caller", CALLER, network="api", timeoutSeconds=60)
    run = server.run_sync(caller, input={"target": target})
    assert run["status"] == "finished", (run, server.log_text())
    lines = run["stdout"].splitlines()
    assert lines[0] in ("refused 403", "refused 422"), lines
    moved = json.loads(lines[-1])
    assert moved["received"] > 3 * 60000 and moved["sent"] > 150000

    metrics = run["metrics"]
    assert metrics["totalApiCalls"] == 4, metrics  # every request made with the run's own token
    net = metrics["network"]
    assert net["rxBytes"] >= moved["received"] and net["txBytes"] >= moved["sent"], (net, moved)
    assert net["rxBytes"] < 20 * moved["received"] and net["txBytes"] < 20 * moved["sent"], (net, moved)

    # the usage API reports the same measurements for that automation and day
    day = run["stopTime"][:10]
    r = server.client.get(
        f"{BASE}/usage",
        params={"filter": f'date eq "{day}"', "breakdownBy": "automation"},
    )
    assert r.status_code == 200, r.text
    mine = {e["name"]: e["value"] for e in r.json()["data"] if e["automation"]["guid"] == caller}
    assert mine["runs"] == 1
    assert mine["bandwidthIn"] == net["rxBytes"] and mine["bandwidthOut"] == net["txBytes"]
    assert abs(mine["duration"] - run["durationMs"] / 1000) <= 1

    # the export link works without a token and carries the same record, logs included
    r = server.client.post(f"{BASE}/{caller}/runs/{run['id']}/actions/export")
    assert r.status_code == 200, r.text
    url = r.json()["url"]
    assert url.startswith(f"{server.url}{BASE}/{caller}/runs/{run['id']}/export?")
    download = httpx.get(url, timeout=30)
    assert download.status_code == 200 and download.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(download.content))
    assert archive.read("stdout.log").decode().splitlines() == lines
    details = json.loads(archive.read("run.json"))
    assert details["run"]["metrics"]["totalApiCalls"] == 4
    assert [e["event"] for e in details["timeline"]] == ["created", "queued", "claimed", "started", "ended"]


def test_archive_cleanup_counts_its_calls(server: Server) -> None:
    aid = server.automation_id("A011-archive-cleanup")
    run = server.run_sync(aid)
    assert run["status"] == "finished", (run, server.log_text())
    # one list of automations, then one list of failed runs per automation it saw (the four shipped at least)
    assert run["metrics"]["totalApiCalls"] >= 5, run["metrics"]
    assert run["metrics"]["network"]["rxBytes"] > 1000
