"""The `controlplane` command line against a live server: tokens, automations sync, run, config-table, and
Ctrl-C on `serve` while a run is live (the run is recorded as stopped and its container removed), with a
second control plane on the same engine whose live run must not be touched by ours starting or stopping."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.e2e import BASE, Server

pytestmark = pytest.mark.docker


def test_tokens_create_prints_a_working_token_once(server: Server) -> None:
    proc = server.cli("tokens", "create", "--tenant", "default", "--user", "carol", "--role", "developer")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("cp_"), proc.stdout
    token = lines[0]
    assert token not in proc.stderr
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as carol:
        assert carol.get(BASE).status_code == 200

    proc = server.cli("tokens", "create", "--tenant", "nosuch", "--user", "mallory", "--role", "admin")
    assert proc.returncode != 0
    assert proc.stdout == ""
    assert "tenant 'nosuch' does not exist" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_automations_sync_reports_and_is_idempotent(server: Server, tmp_path: Path) -> None:
    good = tmp_path / "A123-Synced"
    good.mkdir()
    (good / "automation.json").write_text('{"description": "synced by the CLI", "runtime": "python"}')
    (good / "main.py").write_text("print('synced ok')\n")
    bad = tmp_path / "not-a-good-name"
    bad.mkdir()
    (bad / "automation.json").write_text("{}")

    first = server.cli("automations", "sync", "--dir", str(tmp_path))
    assert first.returncode == 1, first
    assert first.stdout.startswith("1 created, 0 updated, 0 unchanged, 1 rejected"), first.stdout
    assert "not-a-good-name: folder name must look like A001-YourAutomationName" in first.stdout

    second = server.cli("automations", "sync", "--dir", str(tmp_path))
    assert second.returncode == 1, second
    assert second.stdout.startswith("0 created, 0 updated, 1 unchanged, 1 rejected"), second.stdout

    run = server.run_sync(server.automation_id("A123-Synced"))
    assert run["status"] == "finished" and run["stdout"] == "synced ok\n"


def test_run_command_exit_codes_output_and_progress(server: Server) -> None:
    env = {"CP_URL": server.url, "CP_TOKEN": server.token}
    failing = server.cli("run", "A002-tools-minimal", "--status", "2", "--wait", "0", env=env)
    assert failing.returncode == 2, failing
    assert "error: incorrect usage or file not found (--status 2)" in failing.stderr
    progress = [line for line in failing.stderr.splitlines() if line.startswith("run ")]
    assert any(line.endswith(" queued") for line in progress), failing.stderr
    assert progress[-1].endswith("failed exitCode=2"), failing.stderr
    assert '"--wait",\n    "0"' in failing.stdout, "the script's own --wait must reach it"

    ok = server.cli("run", "A002-tools-minimal", "--status", "0", "--wait", "0", "--msg", "hello", env=env)
    assert ok.returncode == 0, ok
    assert ok.stdout == "hello\n"
    assert ok.stderr.splitlines()[-1].endswith("finished exitCode=0"), ok.stderr

    missing = server.cli("run", "A999-nothing", env=env)
    assert missing.returncode != 0 and "no automation named 'A999-nothing'" in missing.stderr


def test_config_table(server: Server) -> None:
    proc = server.cli("config-table")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("| Variable | Default | Description |")
    assert "| `CP_PORT` | `8080` |" in proc.stdout


def test_ctrl_c_stops_live_runs_and_leaves_no_container(server: Server, make_server: Any) -> None:
    # another control plane on the same engine, with a live run: starting ours must leave it alone
    other_aid = server.automation("neighbour", "import time\ntime.sleep(6)\nprint('undisturbed')\n")
    other = server.start_run(other_aid)
    server.wait_run(other_aid, other["id"], timeout=30, until={"running"})

    srv: Server = make_server()
    aid = srv.automation("sleeper", "import time\nprint('sleeping', flush=True)\ntime.sleep(60)\n")
    run = srv.start_run(aid)
    srv.wait_run(aid, run["id"], timeout=30, until={"running"})
    assert srv.containers(run["id"]), "the run has no container while running"

    t0 = time.monotonic()
    assert srv.stop(timeout=20) == 0, srv.log_text()
    assert time.monotonic() - t0 < 20
    assert srv.containers() == [], "a container outlived the server"

    srv.start()  # the same data directory and database: what did the last process record?
    stopped = srv.get_run(aid, run["id"])
    assert stopped["status"] == "stopped", stopped
    assert stopped["error"][0]["code"] == "SERVER_SHUTDOWN", stopped["error"]
    assert stopped["stopTime"] is not None and stopped["stdout"] == "sleeping\n"
    assert srv.containers() == []

    neighbour = server.wait_run(other_aid, other["id"], timeout=30)
    assert neighbour["status"] == "finished" and neighbour["stdout"] == "undisturbed\n", neighbour
