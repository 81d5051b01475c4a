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

# --- run engine (queue, quotas, schedules, recovery) ------------------------------------------------
QUEUE_DEPTH = Gauge(
    "controlplane_queue_depth",
    "Background runs waiting (queued), per tenant; refreshed by the dispatcher.",
    ["tenant"],
    registry=REGISTRY,
)
QUEUE_WAIT = Histogram(
    "controlplane_queue_wait_seconds",
    "Time a run spent queued before its sandbox was asked for.",
    ["kind"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
    registry=REGISTRY,
)
QUOTA_REJECTIONS = Counter(
    "controlplane_quota_rejections_total",
    "Runs refused with 429, by the limit that refused them.",
    ["kind"],  # sync_tenant | automation | queue_full
    registry=REGISTRY,
)
SCHEDULE_FIRES = Counter(
    "controlplane_schedule_fires_total",
    "Runs started by schedules; catch_up=true for the one run a schedule gets after missed ticks.",
    ["catch_up"],
    registry=REGISTRY,
)
RECONCILED = Counter(
    "controlplane_reconciled_runs_total",
    "Unfinished runs found at start or taken over from a dead replica, by what became of them.",
    ["outcome"],  # resumed | finished | lost | requeued
    registry=REGISTRY,
)
ORPHANS_REMOVED = Counter(
    "controlplane_orphan_sandboxes_removed_total",
    "Sandboxes carrying our labels with no unfinished run, removed.",
    registry=REGISTRY,
)
RETENTION_DELETED = Counter(
    "controlplane_retention_deleted_runs_total", "Runs deleted by the retention job.", registry=REGISTRY
)

# --- dashboards and alerts (charts/controlplane, monitoring/) ---------------------------------------
CONCURRENCY_LIMIT = Gauge(
    "controlplane_concurrency_limit",
    "Configured run limits, to draw next to controlplane_runs_in_flight and the queue depth.",
    ["kind"],  # sync_per_tenant | background_total | queue_per_tenant
    registry=REGISTRY,
)
RUN_SECONDS = Counter(
    "controlplane_run_seconds_total",
    "Sandbox seconds used by finished runs (start to end), per tenant.",
    ["tenant"],
    registry=REGISTRY,
)
RUNS_OVERDUE = Gauge(
    "controlplane_runs_overdue",
    "Unfinished runs more than a minute past their deadline (stuck); refreshed by the dispatcher.",
    registry=REGISTRY,
)
BACKEND_UP = Gauge(
    "controlplane_backend_up",
    "1 when the sandbox engine answered the last readiness check (GET /readyz), else 0.",
    registry=REGISTRY,
)

# --- automation rules (seed 003) -----------------------------------------------------------------------
RULE_EVALUATIONS = Counter(
    "controlplane_rule_evaluations_total",
    "Automation rule evaluations by outcome: fired, not_met (condition false), failed, cut (loop depth).",
    ["outcome"],
    registry=REGISTRY,
)
