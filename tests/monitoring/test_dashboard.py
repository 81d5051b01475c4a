"""The Grafana dashboard (monitoring/grafana/controlplane-dashboard.json): well formed, every panel the
issue asks for is there, and every query names only metrics controlplane/core/metrics.py declares (the live
check against a real scrape is in test_live_prometheus.py)."""

from __future__ import annotations

from prometheus_client import generate_latest

from controlplane.core.metrics import REGISTRY
from tests.monitoring.promql import (
    dashboard,
    dashboard_exprs,
    exported,
    is_exported,
    metric_names,
    panels,
    rule_exprs,
)


def test_metric_name_extraction() -> None:
    expr = (
        "histogram_quantile(0.95, sum by (le, route) "
        '(rate(controlplane_http_request_duration_seconds_bucket{route=~"a|b"}[$__rate_interval])))'
        " / on () group_left sum(controlplane_x_total offset 5m) > bool 0 and up"
    )
    assert metric_names(expr) == {"controlplane_http_request_duration_seconds_bucket", "controlplane_x_total", "up"}
    assert metric_names("label_values(controlplane_runs_total, tenant)") == {"controlplane_runs_total"}
    assert metric_names("deriv(controlplane:queue_depth:sum[15m]) > 0") == {"controlplane:queue_depth:sum"}


def test_dashboard_is_well_formed() -> None:
    dash = dashboard()
    assert dash["uid"] and dash["title"] and dash["schemaVersion"] >= 36
    ids = [p["id"] for p in panels(dash)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    variables = {v["name"] for v in dash["templating"]["list"]}
    assert {"datasource", "tenant"} <= variables
    for panel in panels(dash):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, panel["title"]


def test_panels_the_issue_lists() -> None:
    titles = " | ".join(p["title"].lower() for p in panels(dashboard()))
    for wanted in (
        "runs per second by status",
        "runs per second by tenant",
        "failure ratio",
        "run duration p50 / p95 / p99",
        "queue depth",
        "queue wait",
        "quota rejections",
        "runs in flight vs limits",
        "container / job start latency",
        "backend errors",
        "api latency",
        "api error rate",
        "sandbox seconds per tenant",
        "network bandwidth per tenant",
    ):
        assert wanted in titles, wanted


def test_every_query_uses_declared_metrics() -> None:
    families, samples = exported(generate_latest(REGISTRY).decode())
    for where, expr in dashboard_exprs() + [(w, e) for w, e in rule_exprs() if ":" not in w]:
        names = metric_names(expr)
        assert names, f"{where}: no metric in {expr!r}"
        for name in names:
            if ":" in name:  # a recording rule of ours
                assert name in {w for w, _ in rule_exprs()}, f"{where}: unknown recording rule {name}"
                continue
            assert name.startswith("controlplane_"), f"{where}: {name} is not one of ours"
            assert is_exported(name, families, samples), f"{where}: {name} is not declared in core/metrics.py"
