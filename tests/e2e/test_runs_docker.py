"""Runs through a live `controlplane serve` on the real Docker engine: what a customer's script sees and
what the API reports back (streams, exit codes, argv, input, live logs, artifacts, lastRun, run tokens).

The happy path is proven on both databases: the tests taking ``any_server`` run once on the SQLite-backed
module server and once on the PostgreSQL-backed one.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from typing import Any

import httpx
import pytest
from pypdf import PdfReader

from tests.support.e2e import BASE, Server

pytestmark = pytest.mark.docker

NASTY = ["$(id); rm -rf / | & > x", "two words", "`uname -a`", "*", "'\"\\", "", "--flag=$HOME"]

ECHO_PY = """\
import json, os, sys
data = sys.stdin.read()
with open(os.environ["JETQUERY_INPUT_FILE"]) as fh:
    in_file = fh.read()
print(json.dumps({"argv": sys.argv[1:], "stdin": data, "file": in_file}))
print("this goes to stderr", file=sys.stderr)
sys.exit(3)
"""

ECHO_SH = """\
for a in "$@"; do printf '[%s]\\n' "$a"; done
printf 'stdin=%s\\n' "$(cat)"
printf 'file=%s\\n' "$(cat "$JETQUERY_INPUT_FILE")"
echo "a warning" >&2
exit 0
"""


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def any_server(request: pytest.FixtureRequest) -> Server:
    return request.getfixturevalue("server" if request.param == "sqlite" else "pg_server")  # type: ignore[no-any-return]


def codes(run: dict[str, Any]) -> list[str]:
    return [e["code"] for e in run["error"]]


def test_python_streams_exit_code_argv_and_input(any_server: Server) -> None:
    srv = any_server
    aid = srv.automation("echo-py", ECHO_PY)
    run = srv.run_sync(aid, args=NASTY, input={"k": [1, "é"], "s": "$(id)"})
    assert run["status"] == "failed" and run["exitCode"] == 3, run
    assert "NON_ZERO_EXIT" in codes(run)
    out = json.loads(run["stdout"])
    assert out["argv"] == NASTY
    assert json.loads(out["stdin"]) == {"k": [1, "é"], "s": "$(id)"}
    assert json.loads(out["file"]) == {"k": [1, "é"], "s": "$(id)"}
    assert run["stderr"] == "this goes to stderr\n" and "stderr" not in run["stdout"]
    assert run["stdoutBytes"] == len(run["stdout"].encode()) and run["truncated"] is False
    # measured usage: no network in mode none, CPU and memory from the engine's counters
    assert run["metrics"]["network"] == {"rxBytes": 0, "txBytes": 0}
    assert run["metrics"]["cpuSeconds"] > 0 and run["metrics"]["memoryPeakBytes"] > 1_000_000
    assert srv.containers(run["id"]) == []


def test_shell_runtime_warnings_and_verbatim_args(server: Server) -> None:
    aid = server.automation("echo-sh", ECHO_SH, runtime="shell")
    run = server.run_sync(aid, args=NASTY, input=[1, 2])
    assert run["status"] == "finished with warnings" and run["exitCode"] == 0, run
    assert codes(run) == []
    lines = run["stdout"].splitlines()
    assert lines[: len(NASTY)] == [f"[{a}]" for a in NASTY]
    assert lines[len(NASTY) :] == ["stdin=[1, 2]", "file=[1, 2]"]
    assert run["stderr"] == "a warning\n"


def test_raw_text_body_is_the_input(server: Server) -> None:
    code = "import os, sys\nprint(repr(sys.stdin.read()), repr(open(os.environ['JETQUERY_INPUT_FILE']).read()))\n"
    aid = server.automation("raw-input", code)
    body = "plain text, not JSON: {oops\n"
    r = server.client.post(
        f"{BASE}/{aid}/runs",
        params={"context": "api_sync", "args": ["x", "y z"]},
        content=body.encode(),
        headers={"content-type": "text/plain"},
    )
    assert r.status_code == 200, r.text
    run = r.json()
    assert run["status"] == "finished" and run["exitCode"] == 0, run
    assert run["stdout"] == f"{body!r} {body!r}\n" and run["args"] == ["x", "y z"]


def test_async_run_and_live_log_follow(any_server: Server) -> None:
    srv = any_server
    code = "import time\nprint('first line', flush=True)\ntime.sleep(1.5)\nprint('second line', flush=True)\n"
    aid = srv.automation("follow", code)
    created = srv.start_run(aid)
    assert created["status"] in ("queued", "starting", "running") and created["context"] == "api_async"
    run_id = created["id"]
    received = b""
    status_at_first_chunk = None
    url = f"{BASE}/{aid}/runs/{run_id}/logs"
    with srv.client.stream("GET", url, params={"follow": "true", "stream": "stdout"}) as resp:
        assert resp.status_code == 200
        for chunk in resp.iter_bytes():
            received += chunk
            if status_at_first_chunk is None and b"first line" in received:
                status_at_first_chunk = srv.get_run(aid, run_id)["status"]
                assert b"second line" not in received
    assert status_at_first_chunk == "running", "the first line did not arrive while the run was live"
    assert received == b"first line\nsecond line\n"
    run = srv.get_run(aid, run_id)
    assert run["status"] == "finished" and run["exitCode"] == 0
    assert srv.logs(aid, run_id) == received


def test_sales_report_artifacts(any_server: Server) -> None:
    srv = any_server
    aid = srv.automation_id("A010-sales-report")
    run = srv.run_sync(aid)
    assert run["status"] == "finished", run
    assert json.loads(run["stdout"]) == {"regions": 3, "total": 2480.65}
    arts = {a["path"]: a for a in run["artifacts"]}
    assert set(arts) == {"report.csv", "report.pdf"}
    listed = srv.client.get(f"{BASE}/{aid}/runs/{run['id']}/artifacts").json()
    assert {a["path"] for a in listed} == set(arts)

    got: dict[str, bytes] = {}
    for path, meta in arts.items():
        r = srv.client.get(meta["href"])
        assert r.status_code == 200, r.text
        assert len(r.content) == meta["size"] and hashlib.sha256(r.content).hexdigest() == meta["sha256"]
        assert r.headers["x-content-sha256"] == meta["sha256"]
        got[path] = r.content
    rows = list(csv.reader(io.StringIO(got["report.csv"].decode())))
    assert rows == [["region", "total"], ["North", "1510.50"], ["South", "870.25"], ["West", "99.90"]]
    pdf = got["report.pdf"]
    assert pdf.startswith(b"%PDF")
    reader = PdfReader(io.BytesIO(pdf))
    assert len(reader.pages) >= 1
    text = reader.pages[0].extract_text()
    assert "Weekly sales" in text and "North" in text


def test_last_run_fields_follow_the_latest_run(server: Server) -> None:
    aid = server.automation("last-run", "import sys\nsys.exit(int(sys.argv[1]))\n")
    first = server.run_sync(aid, args=["0"])
    a = server.client.get(f"{BASE}/{aid}").json()
    assert first["status"] == "finished"
    assert a["lastRun"]["id"] == first["id"] and a["lastRunStatus"] == "finished" and a["lastRunAt"]
    first_at = a["lastRunAt"]
    second = server.run_sync(aid, args=["4"])
    a = server.client.get(f"{BASE}/{aid}").json()
    assert second["status"] == "failed" and second["exitCode"] == 4
    assert a["lastRun"]["id"] == second["id"] and a["lastRunStatus"] == "failed"
    assert a["lastRun"]["exitCode"] == 4 and a["lastRunAt"] > first_at


TOKEN_PROBE = """\
import os, urllib.request
req = urllib.request.Request(
    "http://%s/api/v1/automations" % os.environ["JETQUERY_HOST"],
    headers={"Authorization": "Bearer " + os.environ["JETQUERY_TOKEN"]},
)
with urllib.request.urlopen(req, timeout=10) as resp:
    print("live", resp.status)
print("token", os.environ["JETQUERY_TOKEN"])
"""


def test_archive_cleanup_calls_back_and_run_tokens_die_with_the_run(any_server: Server) -> None:
    srv = any_server
    aid = srv.automation_id("A011-archive-cleanup")
    run = srv.run_sync(aid)
    assert run["status"] == "finished", (run, srv.log_text())
    assert run["stdout"].startswith("removed 0 archive file(s)")
    arts = {a["path"]: a for a in run["artifacts"]}
    assert "cleanup.json" in arts
    report = json.loads(srv.client.get(arts["cleanup.json"]["href"]).content)
    assert set(report) == {"archiveFilesRemoved", "failedRunsLastDay"}
    # the API calls it made are real traffic, counted by the kernel for the container's network
    net = run["metrics"]["network"]
    assert net["rxBytes"] > 1000 and net["txBytes"] > 500, run["metrics"]

    probe = srv.automation("token-probe", TOKEN_PROBE, network="api")
    run = srv.run_sync(probe)
    assert run["status"] == "finished", run
    lines = dict(line.split(" ", 1) for line in run["stdout"].splitlines())
    assert lines["live"] == "200"
    token = lines["token"]
    assert token and token != srv.token
    with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {token}"}) as as_run:
        r = as_run.get(BASE)
        assert r.status_code == 401, r.text
        assert as_run.get(f"{BASE}/{aid}").status_code == 401
