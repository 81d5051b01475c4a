"""Faults around a live `controlplane serve` on the real Docker engine: the control plane killed mid-run,
the Docker engine stopped and started again, the database cut off and given back.

Each test builds its own servers (``make_server``) because each breaks something on purpose. Nothing is
mocked: kill -9 is a real SIGKILL, the engine outage is the real dockerd stopped with SIGTERM (docker
20.10 without live-restore kills its containers then), and the database outage is a TCP proxy between
the server and PostgreSQL that the test cuts (tests/support/pgproxy.py).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import docker
import httpx
import pytest

from tests.support.e2e import BASE, Server, docker_names
from tests.support.pg import postgres_url
from tests.support.pgproxy import TcpProxy

pytestmark = pytest.mark.docker

UNFINISHED = {"queued", "starting", "running", "must stop"}

BEFORE_AFTER = """\
import sys, time
print("before", flush=True)
time.sleep(float(sys.argv[1]))
print("after", flush=True)
"""
SLEEPER = "import time\nprint('sleeping', flush=True)\ntime.sleep(600)\n"
EXIT3 = """\
import sys, time
print("b-begin", flush=True)
time.sleep(float(sys.argv[1]))
print("b-out", flush=True)
print("b-err", file=sys.stderr, flush=True)
sys.exit(3)
"""
QUICK = "print('quick done')\n"
# prints once while the control plane is up, once while it is down (before its deadline), then overstays
LATE = """\
import time
print("early", flush=True)
time.sleep(3)
print("late", flush=True)
time.sleep(600)
"""


def when(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def codes(run: dict[str, Any]) -> list[str]:
    return [e["code"] for e in run["error"]]


def wait_for(what: str, check: Callable[[], Any], timeout: float, *, every: float = 0.1) -> Any:
    end = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > end:
            pytest.fail(f"{what}: not within {timeout:.0f}s")
        time.sleep(every)


def engine_log(name: str) -> str:
    proc = subprocess.run(["docker", "logs", name], capture_output=True, text=True, timeout=30, check=False)
    return proc.stdout


def ready(srv: Server) -> bool:
    return httpx.get(f"{srv.url}/readyz", timeout=30).status_code == 200


def unfinished_runs(srv: Server, automation_ids: list[str]) -> list[tuple[str, str]]:
    left = []
    for aid in automation_ids:
        r = srv.client.get(f"{BASE}/{aid}/runs", params={"limit": 100})
        assert r.status_code == 200, r.text
        left += [(run["id"], run["status"]) for run in r.json()["data"] if run["status"] in UNFINISHED]
    return left


# --- 1. the control plane killed mid-run ----------------------------------------------------------------


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_kill_9_and_restart_reconciles_every_run(make_server: Callable[..., Server], database: str) -> None:
    srv = make_server(database=database, env={"CP_BACKGROUND_CONCURRENCY_TOTAL": "7"})
    resume = srv.automation("resume", BEFORE_AFTER, timeoutSeconds=60)
    short = srv.automation("deadline-4", SLEEPER, timeoutSeconds=4)
    longer = srv.automation("deadline-14", SLEEPER, timeoutSeconds=14)
    exits = srv.automation("exit-3", EXIT3, timeoutSeconds=60)
    doomed = srv.automation("lost", SLEEPER, timeoutSeconds=60)
    quick = srv.automation("quick", QUICK, timeoutSeconds=60)
    late = srv.automation("late", LATE, timeoutSeconds=6)
    everything = [resume, short, longer, exits, doomed, quick, late]

    a1 = srv.start_run(resume, args=["14"])["id"]
    a2 = srv.start_run(resume, args=["14"])["id"]
    t4 = srv.start_run(short)["id"]
    t14 = srv.start_run(longer)["id"]
    b = srv.start_run(exits, args=["5"])["id"]
    c = srv.start_run(doomed)["id"]
    d = srv.start_run(late)["id"]
    live = {a1: resume, a2: resume, t4: short, t14: longer, b: exits, c: doomed, d: late}
    for rid, aid in live.items():
        srv.wait_run(aid, rid, timeout=30, until={"running"})
    queued = [srv.start_run(quick)["id"] for _ in range(2)]  # the seven in flight hold every slot
    # what the scripts printed before the crash is stored; the resumed run must not store it twice
    for rid, aid, first in ((a1, resume, b"before\n"), (a2, resume, b"before\n"), (b, exits, b"b-begin\n")):

        def printed(rid: str = rid, aid: str = aid, first: bytes = first) -> bool:
            return bool(srv.logs(aid, rid) == first)

        wait_for(f"first line of {rid}", printed, 10)
    started = {rid: srv.get_run(aid, rid) for rid, aid in live.items()}
    assert all(r["status"] == "running" for r in started.values()), started
    assert [srv.get_run(quick, q)["status"] for q in queued] == ["queued", "queued"]
    assert "\nx " not in "\n" + engine_log(srv.prefix + b), "run b ended before the crash; the test is too slow"
    assert srv.logs(late, d) == b"early\n", "run d printed its second line before the crash; the test is too slow"

    srv.kill()
    # while the control plane is down: b's script exits 3, c's sandbox disappears, a stray sandbox appears
    subprocess.run(["docker", "rm", "-f", srv.prefix + c], capture_output=True, timeout=30, check=True)
    stray = f"{srv.prefix}{uuid.uuid4()}"
    client = docker.from_env()
    try:
        client.containers.run(
            "controlplane-sandbox-python:1",
            ["/usr/bin/python3", "-c", "import time; time.sleep(600)"],
            name=stray,
            labels={"io.controlplane.managed": "true", "io.controlplane.run-id": stray.removeprefix(srv.prefix)},
            network_mode="none",
            detach=True,
        )
    finally:
        client.close()
    wait_for("run b's exit frame in the engine's log", lambda: "\nx " in "\n" + engine_log(srv.prefix + b), 15)
    assert srv.prefix + a1 in docker_names(srv.prefix)

    restarted_at = datetime.now(UTC)
    srv.start()
    ready_at = datetime.now(UTC)
    final = {rid: srv.wait_run(aid, rid, timeout=25) for rid, aid in live.items()}
    final |= {q: srv.wait_run(quick, q, timeout=25) for q in queued}
    log = srv.log_text()

    # (a) resumed: they finish normally under the new process, their output stored exactly once
    for rid in (a1, a2):
        run = final[rid]
        assert run["status"] == "finished" and run["exitCode"] == 0, (run, log)
        assert run["stdout"] == "before\nafter\n", run["stdout"]
        assert srv.logs(resume, rid) == b"before\nafter\n"
        assert when(run["startTime"]) == when(started[rid]["startTime"])
    # deadlines count from the original start: one passed while the server was down, one after restart
    run = final[t4]
    assert run["status"] == "exceeded limit" and "RUN_TIMEOUT" in codes(run), run
    deadline = when(run["startTime"]) + timedelta(seconds=4)
    assert deadline < ready_at
    assert restarted_at < when(run["stopTime"]) < ready_at + timedelta(seconds=3), (run, restarted_at, ready_at)
    run = final[t14]
    assert run["status"] == "exceeded limit" and "RUN_TIMEOUT" in codes(run), run
    deadline = when(run["startTime"]) + timedelta(seconds=14)
    assert deadline > ready_at, "the restart took too long to test a deadline passing after it"
    # the deadline runs from the sandbox's launch, a little before the script's startTime; not from the restart
    overshoot = (when(run["stopTime"]) - deadline).total_seconds()
    assert -3.0 < overshoot < 2.0, (overshoot, run)
    assert when(run["stopTime"]) < restarted_at + timedelta(seconds=12), (run, restarted_at)
    # (b) its exit code and output came from the engine after the restart
    run = final[b]
    assert run["status"] == "failed" and run["exitCode"] == 3 and "NON_ZERO_EXIT" in codes(run), run
    assert run["stdout"] == "b-begin\nb-out\n" and run["stderr"] == "b-err\n", run
    # (d') its deadline passed while the server was down: over its limit, with what it printed meanwhile kept
    run = final[d]
    assert run["status"] == "exceeded limit" and "RUN_TIMEOUT" in codes(run), run
    assert run["stdout"] == "early\nlate\n", run
    assert when(run["startTime"]) + timedelta(seconds=6) < ready_at, "its deadline must pass while the server is down"
    # (c) its sandbox was gone: lost
    run = final[c]
    assert run["status"] == "failed" and codes(run) == ["RUN_LOST"] and run["exitCode"] is None, run
    # (d) the queued runs started once slots freed, and finished
    for q in queued:
        run = final[q]
        assert run["status"] == "finished" and run["stdout"] == "quick done\n", run
        assert when(run["startTime"]) > restarted_at
    # (e) the stray sandbox was removed; nothing of this server is left on the engine or unfinished
    assert srv.containers(settle=10) == [], log
    assert unfinished_runs(srv, everything) == []
    assert srv.metric("controlplane_reconciled_runs_total", outcome="resumed") == 6
    assert srv.metric("controlplane_reconciled_runs_total", outcome="lost") == 1
    assert srv.metric("controlplane_orphan_sandboxes_removed_total") >= 1


# --- 2. the Docker engine stopped and started again ------------------------------------------------------


def dockerd_pid() -> int | None:
    proc = subprocess.run(["pgrep", "-x", "dockerd"], capture_output=True, text=True, check=False)
    pids = [int(p) for p in proc.stdout.split()]
    return pids[0] if pids else None


def engine_answers() -> bool:
    return subprocess.run(["docker", "info"], capture_output=True, timeout=30, check=False).returncode == 0


def start_dockerd(timeout: float = 60.0) -> None:
    """Start dockerd the way this machine runs it (detached, logging to /var/log/dockerd.log); wait for it."""
    if dockerd_pid() is None:
        subprocess.run(["bash", "-c", "nohup setsid dockerd >>/var/log/dockerd.log 2>&1 &"], check=True, timeout=30)
    wait_for("dockerd answering again", engine_answers, timeout, every=0.2)


@pytest.fixture
def engine_outage() -> Iterator[Callable[[], None]]:
    """``stop()`` SIGTERMs dockerd and waits for it to exit; dockerd is always running again afterwards."""
    stopped = []

    def stop() -> None:
        pid = dockerd_pid()
        assert pid is not None, "dockerd is not running"
        os.kill(pid, signal.SIGTERM)
        stopped.append(pid)
        wait_for("dockerd to exit after SIGTERM", lambda: dockerd_pid() is None, 60, every=0.1)

    try:
        yield stop
    finally:
        if stopped or not engine_answers():
            start_dockerd()


API_PROBE = """\
import json, os, socket, sys, urllib.request
host = os.environ["JETQUERY_HOST"]
req = urllib.request.Request(
    "http://%s/api/v1/automations" % host, headers={"Authorization": "Bearer " + os.environ["JETQUERY_TOKEN"]}
)
with urllib.request.urlopen(req, timeout=10) as resp:
    api = resp.status
gateway = host.rsplit(":", 1)[0]
other = {}
for port in map(int, sys.argv[1:]):
    try:
        socket.create_connection((gateway, port), timeout=2).close()
        other[port] = "connected"
    except OSError as exc:
        other[port] = type(exc).__name__
print(json.dumps({"api": api, "other": other}))
"""


def firewall_in_place(srv: Server) -> list[str]:
    """What is missing of the server's sandbox firewall (chains, their rules, the jumps to them)."""
    from controlplane.backends.docker.network import NetworkManager

    client = docker.from_env()
    try:
        manager = NetworkManager(client, srv.settings())
    finally:
        client.close()
    missing = []
    for chain, target in (("INPUT", manager.input_chain), ("DOCKER-USER", manager.forward_chain)):
        rules = subprocess.run(["iptables", "-w", "-S", chain], capture_output=True, text=True, check=True).stdout
        first = [line for line in rules.splitlines() if line.startswith("-A ")][:1]
        if first != [f"-A {chain} -j {target}"]:
            missing.append(f"{chain} does not jump to {target} first: {first}")
    want = [line for line in manager.rules_v4().splitlines() if line.startswith("-A ")]
    for chain in (manager.input_chain, manager.forward_chain):
        proc = subprocess.run(["iptables", "-w", "-S", chain], capture_output=True, text=True, check=False)
        have = [line for line in proc.stdout.splitlines() if line.startswith("-A ")]
        expected = [line for line in want if line.split()[1] == chain]
        if have != expected:
            missing.append(f"chain {chain} is {have}, want {expected}")
    return missing


def test_docker_engine_stopped_and_started_again(
    make_server: Callable[..., Server], engine_outage: Callable[[], None]
) -> None:
    srv = make_server()
    sleeper = srv.automation("in-flight", SLEEPER, timeoutSeconds=120)
    quick = srv.automation("quick", QUICK, timeoutSeconds=30)
    probe = srv.automation("api-probe", API_PROBE, network="api", timeoutSeconds=60)
    assert firewall_in_place(srv) == []
    in_flight = srv.start_run(sleeper)["id"]
    srv.wait_run(sleeper, in_flight, timeout=30, until={"running"})

    engine_outage()
    t0 = time.monotonic()
    r = httpx.get(f"{srv.url}/readyz", timeout=30)
    took = time.monotonic() - t0
    assert r.status_code == 503 and took < 5.0, (r.status_code, took, r.text)
    checks = r.json()["checks"]
    assert checks["database"] == "ok" and checks["backend"] != "ok", checks

    # a new run fails cleanly: an answer in bounded time, the run failed with BACKEND_UNAVAILABLE
    t0 = time.monotonic()
    r = srv.client.post(f"{BASE}/{quick}/runs", json={"context": "api_sync"}, timeout=60)
    took = time.monotonic() - t0
    assert r.status_code == 200 and took < 20.0, (r.status_code, took, r.text)
    run = r.json()
    assert run["status"] == "failed" and codes(run) == ["BACKEND_UNAVAILABLE"], run
    assert "Traceback" not in r.text
    background = srv.start_run(quick)["id"]
    run = srv.wait_run(quick, background, timeout=30)
    assert run["status"] == "failed" and codes(run) == ["BACKEND_UNAVAILABLE"], run
    # the run in flight when the engine went away ends failed, its cause named
    run = srv.wait_run(sleeper, in_flight, timeout=30)
    assert run["status"] == "failed" and codes(run)[:1] in (["BACKEND_UNAVAILABLE"], ["RUN_LOST"]), run

    start_dockerd()
    t0 = time.monotonic()
    wait_for(
        "GET /readyz 200 after the engine came back", lambda: httpx.get(f"{srv.url}/readyz").status_code == 200, 30
    )
    print(f"ready {time.monotonic() - t0:.1f}s after the engine answered")
    run = srv.run_sync(quick)
    assert run["status"] == "finished" and run["stdout"] == "quick done\n", run

    # network modes still confine runs: the firewall is whole, an api run reaches the API and nothing else
    assert firewall_in_place(srv) == []
    with socket.socket() as other:
        other.bind(("0.0.0.0", 0))
        other.listen()
        ports = [str(other.getsockname()[1]), "5432", str(srv.port + 1)]
        run = srv.run_sync(probe, args=ports)
    assert run["status"] == "finished", run
    seen = json.loads(run["stdout"])
    assert seen["api"] == 200, seen
    assert set(seen["other"].values()) == {"TimeoutError"}, seen  # dropped, not even refused
    assert srv.containers(settle=10) == []


# --- 3. the database cut off and given back --------------------------------------------------------------

DB_TIMEOUT = 2.0


@pytest.fixture
def pg_proxy() -> Iterator[TcpProxy]:
    from sqlalchemy.engine import make_url

    url = make_url(postgres_url())
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432).start()
    try:
        yield proxy
    finally:
        proxy.close()


def assert_unavailable(r: httpx.Response, took: float) -> None:
    assert r.status_code == 503, (r.status_code, r.text)
    assert took < DB_TIMEOUT + 2, f"answered after {took:.1f}s"
    body = r.json()
    assert body["traceId"] and body["errors"][0]["code"] == "STORAGE_UNAVAILABLE", body
    assert "Traceback" not in r.text


def test_database_outage_is_503_and_heals_without_a_restart(
    make_server: Callable[..., Server], pg_proxy: TcpProxy
) -> None:
    srv = make_server(
        database="postgres", database_port=pg_proxy.port, env={"CP_DATABASE_TIMEOUT_SECONDS": str(DB_TIMEOUT)}
    )
    quick = srv.automation("quick", QUICK, timeoutSeconds=30)
    assert srv.run_sync(quick)["status"] == "finished"

    for mode in ("blackhole", "refuse"):
        pg_proxy.cut(mode)
        requests = [
            ("GET", BASE, None),
            ("GET", f"{BASE}/{quick}/runs", None),
            ("POST", f"{BASE}/{quick}/runs", {"context": "api_sync"}),
            ("POST", f"{BASE}/{quick}/runs", {"context": "api"}),
            ("POST", BASE, {"name": f"during-outage-{mode}", "code": QUICK}),
        ]
        for method, path, body in requests:
            t0 = time.monotonic()
            r = srv.client.request(method, path, json=body, timeout=30)
            assert_unavailable(r, time.monotonic() - t0)
        t0 = time.monotonic()
        r = httpx.get(f"{srv.url}/readyz", timeout=30)
        took = time.monotonic() - t0
        assert r.status_code == 503 and took < DB_TIMEOUT + 2, (r.status_code, took, r.text)
        checks = r.json()["checks"]
        assert checks["database"] != "ok" and checks["backend"] == "ok", checks
        assert docker_names(srv.prefix) == [], "a sandbox was started for a run the database never recorded"

        pg_proxy.restore()
        wait_for(
            "GET /readyz 200 once the database is back", lambda: httpx.get(f"{srv.url}/readyz").status_code == 200, 15
        )
        run = srv.run_sync(quick)
        assert run["status"] == "finished" and run["stdout"] == "quick done\n", run

    runs = srv.client.get(f"{BASE}/{quick}/runs", params={"limit": 100}).json()["data"]
    assert len(runs) == 3 and {r["status"] for r in runs} == {"finished"}, runs  # none from the outages
    names = [a["name"] for a in srv.client.get(BASE, params={"limit": 100}).json()["data"]]
    assert not [n for n in names if n.startswith("during-outage")]
    assert srv.containers(settle=10) == []
