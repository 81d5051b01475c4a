"""Two `controlplane serve` replicas on one PostgreSQL database and one Docker engine.

They share the database, the admin token, the container name prefix (each sees the other's sandboxes) and
the network settings; each has its own port and data directory. Proven here: a run starts exactly once
whichever replica dispatches it, the per-tenant synchronous quota holds across replicas, and when one
replica is killed (-9) the other takes its run over and brings it to its end.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.e2e import BASE, Server, launch

pytestmark = pytest.mark.docker

DEAD_AFTER = 4.0
ENV = {
    "CP_SYNC_CONCURRENCY_PER_TENANT": "3",
    "CP_REPLICA_DEAD_AFTER_SECONDS": str(DEAD_AFTER),
    "CP_REPLICA_HEARTBEAT_SECONDS": "1",
    "CP_BACKGROUND_CONCURRENCY_TOTAL": "8",
}
WHOAMI = "import os\nprint(os.environ['JETQUERY_RUN_ID'])\n"
HOLD = "import sys, time\nprint('start', flush=True)\ntime.sleep(float(sys.argv[1]))\nprint('end', flush=True)\n"
STARTS = "controlplane_sandbox_start_seconds_count"


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server]]:
    a = launch(tmp_path_factory.mktemp("replica-a"), database="postgres", env=ENV)
    try:
        b = launch(tmp_path_factory.mktemp("replica-b"), share=a, env=ENV)
    except BaseException:
        a.destroy()
        raise
    try:
        yield a, b
    finally:
        try:
            b.destroy()
        finally:
            a.destroy()


def post(server: Server, path: str, body: dict[str, Any], *, timeout: float = 90) -> httpx.Response:
    """One request on a client of its own (for use from several threads at once)."""
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.token}"}) as client:
        return client.post(path, json=body, timeout=timeout)


def test_each_run_starts_exactly_once(pair: tuple[Server, Server]) -> None:
    a, b = pair
    aid = a.automation("whoami", WHOAMI, timeoutSeconds=60)
    before = {srv: srv.metric(STARTS) for srv in pair}
    ids = [(a if i % 2 == 0 else b).start_run(aid)["id"] for i in range(40)]
    runs = [a.wait_run(aid, rid, timeout=120) for rid in ids]
    for run in runs:
        assert run["status"] == "finished" and run["stdout"] == f"{run['id']}\n", json.dumps(run["error"])
    launched = {srv: srv.metric(STARTS) - before[srv] for srv in pair}
    assert sum(launched.values()) == 40, launched
    assert all(n > 0 for n in launched.values()), f"one replica dispatched everything: {launched}"
    assert a.containers(settle=10) == []


def test_sync_quota_holds_across_replicas(pair: tuple[Server, Server]) -> None:
    a, b = pair
    aid = a.automation("hold", HOLD, timeoutSeconds=60)
    url = f"{BASE}/{aid}/runs"
    answers: dict[int, httpx.Response] = {}

    def hold(i: int, srv: Server) -> None:
        answers[i] = post(srv, url, {"context": "api_sync", "args": ["6"]})

    threads = [threading.Thread(target=hold, args=(i, srv)) for i, srv in enumerate((a, b, a))]
    for t in threads:
        t.start()
    try:
        end = time.monotonic() + 30
        while True:
            listed = a.client.get(url, params={"limit": 100}).json()["data"]
            if len([r for r in listed if r["status"] == "running"]) == 3:
                break
            assert time.monotonic() < end, f"the three synchronous runs are not all running: {listed}"
            time.sleep(0.1)
        for srv in (b, a):
            r = post(srv, url, {"context": "api_sync", "args": ["0"]})
            assert r.status_code == 429, (srv.port, r.status_code, r.text)
            assert int(r.headers["Retry-After"]) >= 1, r.headers
            assert r.json()["errors"][0]["code"] == "SYNC_LIMIT", r.text
    finally:
        for t in threads:
            t.join(60)
    assert sorted(answers) == [0, 1, 2]
    for r in answers.values():
        assert r.status_code == 200 and r.json()["status"] == "finished", r.text
    assert b.run_sync(aid, args=["0"])["status"] == "finished"  # the slots are free again


def test_a_killed_replicas_run_is_taken_over(pair: tuple[Server, Server]) -> None:
    a, b = pair
    aid = a.automation("take-over", HOLD, timeoutSeconds=60)
    url = f"{BASE}/{aid}/runs"
    outcome: list[Any] = []

    def call() -> None:  # a synchronous run is supervised by the replica that accepted it: b
        try:
            outcome.append(post(b, url, {"context": "api_sync", "args": ["8"]}))
        except httpx.HTTPError as exc:
            outcome.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    try:
        end = time.monotonic() + 30
        while True:
            listed = a.client.get(url).json()["data"]
            if listed and listed[0]["status"] == "running" and a.logs(aid, listed[0]["id"]) == b"start\n":
                break
            assert time.monotonic() < end, listed
            time.sleep(0.1)
        run_id = listed[0]["id"]
        resumed = a.metric("controlplane_reconciled_runs_total", outcome="resumed")
        b.kill()
        killed = time.monotonic()
        while a.metric("controlplane_reconciled_runs_total", outcome="resumed") < resumed + 1:
            assert time.monotonic() - killed < DEAD_AFTER + 3, f"not taken over:\n{a.log_text()}"
            time.sleep(0.1)
        print(f"taken over {time.monotonic() - killed:.1f}s after kill -9")
        run = a.wait_run(aid, run_id, timeout=30)
    finally:
        caller.join(30)
    assert isinstance(outcome[0], httpx.HTTPError), outcome  # its caller lost the connection with b
    assert run["status"] == "finished" and run["exitCode"] == 0, run
    assert run["stdout"] == "start\nend\n", run
    assert a.containers(settle=10) == []
    b.start()  # so the module's clean-up stops it like the other one
