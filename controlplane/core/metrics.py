"""Every Prometheus metric the control plane exports, declared once (names ``controlplane_*``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

# no *_created series: they double the exposition and no dashboard uses them
disable_created_metrics()  # type: ignore[no-untyped-call]

REGISTRY = CollectorRegistry(auto_describe=True)

_RUN_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 900)
_START_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 2, 5, 10)
_HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

RUNS = Counter(
    "controlplane_runs_total",
    "Runs that reached a final status.",
    ["tenant", "status", "context"],
    registry=REGISTRY,
)
RUNS_CREATED = Counter(
    "controlplane_runs_accepted_total", "Runs accepted (recorded as queued).", ["tenant", "context"], registry=REGISTRY
)
RUN_DURATION = Histogram(
    "controlplane_run_duration_seconds",
    "Time from a run's sandbox start to its end.",
    ["context"],
    buckets=_RUN_BUCKETS,
    registry=REGISTRY,
)
RUNS_IN_FLIGHT = Gauge(
    "controlplane_runs_in_flight",
    "Runs this process is supervising (until their sandbox is removed), by kind (sync or background).",
    ["kind"],
    registry=REGISTRY,
)
SANDBOX_START = Histogram(
    "controlplane_sandbox_start_seconds",
    "Time from asking the engine for a sandbox to the script starting inside it.",
    ["backend"],
    buckets=_START_BUCKETS,
    registry=REGISTRY,
)
BACKEND_ERRORS = Counter(
    "controlplane_backend_errors_total", "Errors from the sandbox engine.", ["operation"], registry=REGISTRY
)
OUTPUT_BYTES = Counter(
    "controlplane_run_output_bytes_total", "Bytes runs wrote to stdout/stderr.", ["stream"], registry=REGISTRY
)
NETWORK_BYTES = Counter(
    "controlplane_run_network_bytes_total",
    "Bytes runs received (rx) and sent (tx), from the engine's counters.",
    ["tenant", "direction"],
    registry=REGISTRY,
)
HTTP_REQUESTS = Counter(
    "controlplane_http_requests_total",
    "HTTP requests answered, by route template and status code.",
    ["method", "route", "status"],
    registry=REGISTRY,
)
HTTP_LATENCY = Histogram(
    "controlplane_http_request_duration_seconds",
    "HTTP request latency by route template.",
    ["method", "route"],
    buckets=_HTTP_BUCKETS,
    registry=REGISTRY,
)
