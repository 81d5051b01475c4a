"""GET /metrics of a live server after real runs: parseable, the series SREs' dashboards use, promtool-clean."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections import defaultdict

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.e2e import BASE, Server

pytestmark = pytest.mark.docker

PROMTOOL = "/usr/bin/promtool"


def scrape(server: Server) -> tuple[str, dict[str, list[tuple[str, dict[str, str], float]]]]:
    r = server.client.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    families: dict[str, list[tuple[str, dict[str, str], float]]] = defaultdict(list)
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            families[family.name].append((sample.name, dict(sample.labels), sample.value))
    return r.text, families


def total(samples: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    return sum(v for n, lab, v in samples if n == name and all(lab.get(k) == w for k, w in labels.items()))


def test_metrics_after_runs(server: Server) -> None:
    _, before = scrape(server)
    count_name = "controlplane_run_duration_seconds_count"
    durations_before = total(before.get("controlplane_run_duration_seconds", []), count_name, context="api_sync")

    aid = server.automation("metered", "import sys\nprint('x')\nsys.exit(int(sys.argv[1]))\n")
    assert server.run_sync(aid, args=["0"])["status"] == "finished"
    assert server.run_sync(aid, args=["1"])["status"] == "failed"
    assert server.run_sync(aid, args=["0"])["status"] == "finished"
    assert server.client.get(f"{BASE}/{aid}/runs").status_code == 200

    text, after = scrape(server)
    runs = after["controlplane_runs"]
    statuses = {lab["status"] for n, lab, _ in runs if n == "controlplane_runs_total"}
    assert {"finished", "failed"} <= statuses, runs
    assert total(runs, "controlplane_runs_total", status="finished", context="api_sync", tenant="default") >= 2
    assert total(runs, "controlplane_runs_total", status="failed", context="api_sync", tenant="default") >= 1

    durations = after["controlplane_run_duration_seconds"]
    assert total(durations, count_name, context="api_sync") >= durations_before + 3
    assert any(n == "controlplane_run_duration_seconds_bucket" and lab.get("le") == "+Inf" for n, lab, _ in durations)

    starts = after["controlplane_sandbox_start_seconds"]
    assert total(starts, "controlplane_sandbox_start_seconds_count", backend="docker") >= 3

    http = after["controlplane_http_requests"]
    routes = {lab["route"] for n, lab, _ in http if n == "controlplane_http_requests_total"}
    assert "/api/v1/automations/{id}/runs" in routes, routes
    assert not any(aid in route for route in routes), "raw ids in the route label explode its cardinality"
    assert total(http, "controlplane_http_requests_total", method="POST", route="/api/v1/automations/{id}/runs") >= 3

    # a supervisor counts until its sandbox is removed, which follows the answer by a few tens of ms
    deadline = time.monotonic() + 5
    in_flight = after["controlplane_runs_in_flight"]
    while any(v for _, _, v in in_flight) and time.monotonic() < deadline:
        time.sleep(0.05)
        in_flight = scrape(server)[1]["controlplane_runs_in_flight"]
    assert in_flight and all(v == 0 for _, _, v in in_flight), in_flight

    if not shutil.which(PROMTOOL) and not shutil.which("promtool"):
        pytest.fail("promtool is missing: install Debian's prometheus package (apt-get install prometheus)")
    proc = subprocess.run(
        [shutil.which("promtool") or PROMTOOL, "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, f"promtool check metrics:\n{proc.stdout}{proc.stderr}"
