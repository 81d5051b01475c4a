"""Against a live control plane (``controlplane serve`` on the Docker engine, after real runs): every
metric the dashboard and the alert rules query is in its /metrics, and a real Prometheus (Debian's
package) on loopback scrapes it, loads our rules and answers queries with the runs this test started."""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml

from tests.monitoring.promql import (
    RULES,
    dashboard_exprs,
    exported,
    grafana_to_promql,
    is_exported,
    metric_names,
    rule_exprs,
)
from tests.support.e2e import BASE, Server

pytestmark = pytest.mark.docker

# must carry samples (not only be declared) once a few runs went through
SAMPLED = {
    "controlplane_runs_total",
    "controlplane_runs_accepted_total",
    "controlplane_run_duration_seconds_bucket",
    "controlplane_sandbox_start_seconds_bucket",
    "controlplane_http_requests_total",
    "controlplane_http_request_duration_seconds_bucket",
    "controlplane_runs_in_flight",
    "controlplane_concurrency_limit",
    "controlplane_run_seconds_total",
    "controlplane_runs_overdue",
    "controlplane_backend_up",
    "controlplane_queue_wait_seconds_bucket",
}
CODE = "import sys\nprint('metered')\nsys.exit(int(sys.argv[1]))\n"


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def tenant(server: Server) -> Iterator[tuple[str, httpx.Client]]:
    """A tenant of its own (so its series hold exactly this module's runs) and an admin client for it."""
    name = f"prom-{secrets.token_hex(3)}"
    token = server.user_token("admin", tenant=name)
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=90) as client:
        yield name, client


@pytest.fixture(scope="module")
def started(tenant: tuple[str, httpx.Client], server: Server) -> dict[str, int]:
    """Runs in the module's tenant: two that finish, one that fails, one in the background. By status."""
    _, client = tenant
    r = client.post(BASE, json={"name": f"metered-{secrets.token_hex(3)}", "runtime": "python", "code": CODE})
    assert r.status_code == 201, r.text
    aid = r.json()["id"]
    statuses: dict[str, int] = {}
    for code in ("0", "1", "0"):
        r = client.post(f"{BASE}/{aid}/runs", json={"context": "api_sync", "args": [code]})
        assert r.status_code == 200, r.text
        statuses[r.json()["status"]] = statuses.get(r.json()["status"], 0) + 1
    r = client.post(f"{BASE}/{aid}/runs", json={"context": "api", "args": ["0"]})
    assert r.status_code == 201, r.text
    run_id = r.json()["id"]
    end = time.monotonic() + 60
    while (run := client.get(f"{BASE}/{aid}/runs/{run_id}").json())["status"] not in {"finished", "failed"}:
        assert time.monotonic() < end, f"background run still {run['status']}:\n{server.log_text()}"
        time.sleep(0.2)
    statuses[run["status"]] = statuses.get(run["status"], 0) + 1
    assert statuses == {"finished": 3, "failed": 1}, statuses
    return statuses


def test_every_queried_metric_is_in_a_live_scrape(server: Server, started: dict[str, int]) -> None:
    assert server.client.get("/readyz").status_code == 200  # the readiness check sets controlplane_backend_up
    r = httpx.get(f"{server.url}/metrics", timeout=10)
    assert r.status_code == 200, r.text
    families, samples = exported(r.text)
    missing_samples = SAMPLED - samples
    assert not missing_samples, f"no samples after real runs for {sorted(missing_samples)}"
    recorded = {where for where, _ in rule_exprs() if ":" in where}
    for where, expr in dashboard_exprs() + rule_exprs():
        for name in metric_names(expr) - recorded:
            assert is_exported(name, families, samples), f"{where}: {name} is not in the live /metrics"


@pytest.fixture(scope="module")
def prometheus(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prometheus on loopback, scraping the server every second and evaluating our rules."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is missing: install Debian's prometheus package (apt-get install prometheus)")
    work = tmp_path_factory.mktemp("prometheus")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {"job_name": "controlplane", "static_configs": [{"targets": [server.url.removeprefix("http://")]}]}
        ],
    }
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = _port()
    url = f"http://127.0.0.1:{port}"
    log = (work / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        end = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"prometheus exited {proc.returncode}:\n{(work / 'prometheus.log').read_text()}"
            try:
                if httpx.get(f"{url}/-/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < end, f"prometheus not ready:\n{(work / 'prometheus.log').read_text()}"
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


def query(url: str, expr: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=10)
    body = r.json()
    assert r.status_code == 200 and body["status"] == "success", f"{expr}: {r.status_code} {body}"
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def test_prometheus_scrapes_our_runs(
    prometheus: str, tenant: tuple[str, httpx.Client], started: dict[str, int]
) -> None:
    name, _ = tenant
    expr = f'sum by (status) (controlplane_runs_total{{tenant="{name}"}})'
    end = time.monotonic() + 60
    while True:
        got = {s["metric"]["status"]: int(float(s["value"][1])) for s in query(prometheus, expr)}
        if got == started or time.monotonic() > end:
            break
        time.sleep(0.5)
    assert got == started, f"Prometheus has {got}, the test ran {started}"
    targets = httpx.get(f"{prometheus}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
    assert [t["health"] for t in targets] == ["up"], targets
    (up,) = query(prometheus, 'up{job="controlplane"}')
    assert up["value"][1] == "1"
    accepted = query(prometheus, f'sum(controlplane_runs_accepted_total{{tenant="{name}"}})')
    assert int(float(accepted[0]["value"][1])) == sum(started.values())
    seconds = query(prometheus, f'sum(controlplane_run_seconds_total{{tenant="{name}"}})')
    assert float(seconds[0]["value"][1]) > 0


def test_prometheus_runs_every_dashboard_query_and_rule(prometheus: str, started: dict[str, int]) -> None:
    for where, expr in dashboard_exprs():
        if expr.startswith("label_values("):
            names = metric_names(expr)
            assert query(prometheus, f"count by (tenant) ({names.pop()})"), where
            continue
        query(prometheus, grafana_to_promql(expr))  # parses and evaluates, or the helper fails
    # the runs-per-status panel shows this module's runs
    (panel_expr,) = [e for w, e in dashboard_exprs() if w == "Runs per second by status"]
    assert panel_expr.count("controlplane_runs_total") == 1
    # our rule groups loaded and evaluated without error
    end = time.monotonic() + 30
    while True:
        groups = httpx.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        if rules and all(r.get("lastEvaluation", "").startswith("2") and r["health"] == "ok" for r in rules):
            break
        assert time.monotonic() < end, groups
        time.sleep(0.5)
    assert {g["name"] for g in groups} == {"controlplane.recording", "controlplane.alerts"}
    assert {r["name"] for r in rules} == {where for where, _ in rule_exprs()}
    # nothing is wrong with this control plane: no alert fires
    firing = [a for a in httpx.get(f"{prometheus}/api/v1/alerts", timeout=10).json()["data"]["alerts"]]
    assert not [a for a in firing if a["state"] == "firing"], firing
