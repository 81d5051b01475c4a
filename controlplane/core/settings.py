"""Every setting of the control plane, read once from ``CP_*`` environment variables.

One class, grouped by the ``group`` tag in each field's schema extra; the README's configuration table is
generated from this class (``controlplane config-table``) and a test checks the two agree.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _f(default: Any, group: str, description: str, **kw: Any) -> Any:
    return Field(default, description=description, json_schema_extra={"group": group}, **kw)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CP_", extra="ignore", validate_default=True)

    # --- server -------------------------------------------------------------------------------------
    host: str = _f("127.0.0.1", "server", "Address the API listens on.")
    port: int = _f(8080, "server", "Port the API listens on.", ge=1, le=65535)
    public_url: str | None = _f(
        None, "server", "Base URL clients use to reach the API (for links); defaults to http://HOST:PORT."
    )
    log_level: str = _f("info", "server", "Log level of the server (debug, info, warning, error).")
    max_body_bytes: int = _f(10 * 1024 * 1024, "server", "Largest request body accepted; larger is 413.")
    max_header_bytes: int = _f(256 * 1024, "server", "Largest total request header size; larger is 431.")
    metrics_token: str | None = _f(
        None, "server", "When set, GET /metrics requires 'Authorization: Bearer <this value>'."
    )
    metrics_port: int | None = _f(
        None, "server", "When set, /metrics is served on this port (same host) instead of the API port."
    )

    # --- storage ------------------------------------------------------------------------------------
    data_dir: Path = _f(Path("./data"), "storage", "Directory for the SQLite database and local state.")
    database_url: str = _f(
        "sqlite+aiosqlite:///./data/controlplane.db",
        "storage",
        "SQLAlchemy URL. SQLite by default; postgresql+psycopg://user:pass@host/db for production.",
    )
    database_pool_size: int = _f(10, "storage", "Connections kept per process (PostgreSQL).", ge=1)
    database_timeout_seconds: float = _f(
        5.0, "storage", "How long a request waits for the database before answering 503.", gt=0
    )
    run_retention_days: int = _f(
        30,
        "storage",
        "Runs, their logs and artifacts older than this are deleted (a tenant's runRetentionDays wins).",
        ge=1,
    )
    retention_batch_size: int = _f(500, "storage", "Runs deleted per retention batch (one transaction each).", ge=1)

    # --- auth ---------------------------------------------------------------------------------------
    bootstrap_tenant: str = _f("default", "auth", "Tenant created on start if missing; automations/ loads into it.")
    bootstrap_user: str = _f("admin", "auth", "Admin user of the bootstrap tenant.")
    bootstrap_token: str | None = _f(
        None,
        "auth",
        "Admin token of the bootstrap tenant. When unset a token is generated on first start and printed once.",
    )

    # --- backend ------------------------------------------------------------------------------------
    backend: Literal["docker", "kubernetes", "fake"] = _f(
        "docker", "backend", "Sandbox engine: docker (one machine) or kubernetes (a cluster); fake for tests."
    )
    docker_url: str | None = _f(None, "backend", "Docker engine URL; defaults to DOCKER_HOST or the local socket.")
    docker_timeout_seconds: float = _f(30.0, "backend", "HTTP timeout of one Docker engine call.", gt=0)
    sandbox_image: str = _f("controlplane-sandbox-python:1", "backend", "Image every run starts from.")
    sandbox_user: str = _f("10001:10001", "backend", "uid:gid the script runs as inside the sandbox (never 0).")
    sandbox_env_prefix: str = _f(
        "JETQUERY_", "backend", "Prefix of the variables a run receives (TOKEN, HOST, RUN_ID, FILES, ...)."
    )
    container_prefix: str = _f("cp-run-", "backend", "Name prefix of run containers (name = prefix + run id).")
    api_network: str = _f(
        "cp-api", "backend", "Docker network for runs with network=api (only the control plane reachable)."
    )
    api_network_subnet: str = _f("10.213.0.0/24", "backend", "Subnet of the api network.")
    egress_network: str = _f(
        "cp-egress", "backend", "Docker network for runs with network=egress (internet, not host/metadata)."
    )
    egress_network_subnet: str = _f("10.213.1.0/24", "backend", "Subnet of the egress network.")
    egress_blocked_cidrs: list[str] = _f(
        ["169.254.0.0/16", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "127.0.0.0/8"],
        "backend",
        "Destinations egress runs may never reach (cloud metadata, private ranges). JSON list.",
    )
    manage_firewall: bool = _f(
        True,
        "backend",
        "Install the iptables rules that confine api/egress networks (needs root); without them those "
        "network modes are refused.",
    )
    # --- kubernetes (CP_BACKEND=kubernetes: one batch/v1 Job per run) --------------------------------
    k8s_kubeconfig: Path | None = _f(
        None, "kubernetes", "Kubeconfig file; unset: in-cluster service account, else $KUBECONFIG / ~/.kube/config."
    )
    k8s_context: str | None = _f(None, "kubernetes", "Kubeconfig context to use (default: the current one).")
    k8s_namespace: str = _f("controlplane-runs", "kubernetes", "Namespace run Jobs are created in.")
    k8s_namespace_per_tenant: bool = _f(
        False, "kubernetes", "Create each tenant's runs in '<k8s_namespace>-<tenant>' (namespaces must exist)."
    )
    k8s_runtime_class: str | None = _f(None, "kubernetes", "runtimeClassName of run pods (e.g. gvisor).")
    k8s_node_selector: dict[str, str] = _f({}, "kubernetes", "nodeSelector of run pods. JSON object.")
    k8s_tolerations: list[dict[str, str]] = _f([], "kubernetes", "Tolerations of run pods. JSON list.")
    k8s_image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = _f(
        "IfNotPresent", "kubernetes", "imagePullPolicy of run pods."
    )
    k8s_image_pull_secret: str | None = _f(None, "kubernetes", "Name of an image pull secret in the runs namespace.")
    k8s_ttl_seconds_after_finished: int = _f(
        300,
        "kubernetes",
        "ttlSecondsAfterFinished of run Jobs; 0 leaves it unset (the control plane deletes them itself).",
        ge=0,
    )
    k8s_qps: float = _f(20.0, "kubernetes", "Client-side request rate limit to the Kubernetes API.", gt=0)
    k8s_burst: int = _f(40, "kubernetes", "Client-side burst above k8s_qps.", ge=1)
    k8s_pull_timeout_seconds: int = _f(
        120,
        "kubernetes",
        "A run whose pod cannot pull its image (ErrImagePull/ImagePullBackOff) ends after this.",
        ge=1,
    )
    k8s_deadline_grace_seconds: int = _f(
        10, "kubernetes", "activeDeadlineSeconds of a run Job = the run's timeout plus this (a backstop).", ge=0
    )
    k8s_scratch_medium: Literal["Memory", "Disk"] = _f(
        "Memory", "kubernetes", "Medium of the /work and /tmp emptyDirs (Memory counts against the memory limit)."
    )
    k8s_bundle_kind: Literal["Secret", "ConfigMap"] = _f(
        "Secret", "kubernetes", "Object carrying a run's files, env and input to its pod (owned by the Job)."
    )
    k8s_api_host: str | None = _f(
        None, "kubernetes", "host:port of the API as run pods with network api or egress reach it (a Service)."
    )
    k8s_request_timeout_seconds: float = _f(30.0, "kubernetes", "Timeout of one Kubernetes API call.", gt=0)
    k8s_retries: int = _f(5, "kubernetes", "Attempts of a Kubernetes API call on 429, 5xx or connection errors.", ge=1)

    tenant_volumes: bool = _f(
        True, "backend", "Mount per-tenant FILES (read-only) and ARCHIVE (read-write) volumes into runs."
    )
    archive_size_mb: int = _f(
        256, "backend", "Size cap of a tenant's ARCHIVE volume (a loop-mounted ext4 image when root).", ge=1
    )
    archive_retention_days: int = _f(
        30, "backend", "Files in ARCHIVE older than this are deleted (a tenant's archiveRetentionDays wins).", ge=1
    )
    housekeeping_interval_seconds: int = _f(
        3600,
        "backend",
        "Seconds between housekeeping passes (ARCHIVE clean-up and run retention); 0 turns them off.",
        ge=0,
    )

    # --- limits -------------------------------------------------------------------------------------
    sync_concurrency_per_tenant: int = _f(10, "limits", "Synchronous runs in flight per tenant.", ge=1)
    background_concurrency_total: int = _f(100, "limits", "Background runs in flight over all tenants.", ge=1)
    queue_max_per_tenant: int = _f(
        1000, "limits", "Background runs a tenant may have waiting (queued); past it new ones get 429.", ge=1
    )
    queue_wait_timeout_seconds: int = _f(
        3600, "limits", "A background run still queued after this long ends 'not started' (QUEUE_TIMEOUT).", ge=1
    )
    sync_timeout_seconds: int = _f(
        60, "limits", "Deadline of a synchronous run when its automation sets no timeoutSeconds.", ge=1
    )
    background_timeout_seconds: int = _f(
        840, "limits", "Largest deadline of any run (14 minutes); default of background runs.", ge=1
    )
    default_cpus: float = _f(1.0, "limits", "CPUs of a run when its automation sets none.", gt=0)
    default_memory_mb: int = _f(
        512, "limits", "Memory (and memory+swap) of a run when unset; the tmpfs mounts count against it.", ge=64
    )
    default_pids: int = _f(128, "limits", "Process/thread limit of a run when unset.", ge=8)
    max_cpus: float = _f(2.0, "limits", "Tenant-wide maximum CPUs per run (a tenant setting may lower it).", gt=0)
    max_memory_mb: int = _f(2048, "limits", "Tenant-wide maximum memory per run.", ge=16)
    max_pids: int = _f(1024, "limits", "Tenant-wide maximum pids per run.", ge=8)
    tmp_size_mb: int = _f(64, "limits", "Size of the sandbox's /tmp tmpfs.", ge=1)
    work_size_mb: int = _f(64, "limits", "Size of the sandbox's /work tmpfs (code, input, outputs).", ge=1)
    nofile_limit: int = _f(1024, "limits", "Open files limit (ulimit -n) inside a run.", ge=16)
    log_max_bytes: int = _f(
        1024 * 1024, "limits", "Bytes kept per stream (stdout, stderr) of a run; past it head and tail are kept."
    )
    inline_output_bytes: int = _f(
        64 * 1024, "limits", "stdout/stderr bytes returned inline in a run; the rest via .../logs."
    )
    artifacts_max_files: int = _f(100, "limits", "Files collected from a run's outputs directory.", ge=0)
    artifacts_max_bytes: int = _f(20 * 1024 * 1024, "limits", "Total bytes collected from outputs.", ge=0)
    input_max_bytes: int = _f(5 * 1024 * 1024, "limits", "Largest run input.", ge=0)
    code_max_bytes: int = _f(2 * 1024 * 1024, "limits", "Largest total size of an automation's files.", ge=1)
    run_token_ttl_seconds: int = _f(3600, "limits", "Upper bound on a run token's life (revoked at run end).")

    # --- engine -------------------------------------------------------------------------------------
    replica_heartbeat_seconds: float = _f(2.0, "engine", "How often a replica records that it is alive.", gt=0)
    replica_dead_after_seconds: float = _f(
        10.0, "engine", "A replica silent this long is dead: others take over its runs.", gt=0
    )
    dispatch_poll_seconds: float = _f(
        0.5, "engine", "How often a replica looks for queued work it was not told about (other replicas').", gt=0
    )
    scheduler_lease_seconds: float = _f(
        10.0, "engine", "Life of the scheduler lease; another replica takes over this long after its holder dies.", gt=0
    )
    scheduler_poll_seconds: float = _f(1.0, "engine", "How often the scheduler looks for due schedules.", gt=0)
    backend_probe_seconds: float = _f(
        15.0, "engine", "How often the sandbox engine is pinged for controlplane_backend_up (0: only by /readyz).", ge=0
    )

    # --- automations --------------------------------------------------------------------------------
    automations_dir: Path = _f(Path("./automations"), "automations", "Directory of A###-Name automations.")
    sync_automations_on_start: bool = _f(
        True, "automations", "Load automations_dir into the bootstrap tenant when the server starts."
    )

    # --- scripting (seed 002: a script's own HTTP response) ----------------------------------------------
    script_response_max_bytes: int = _f(
        10 * 1024 * 1024,
        "scripting",
        "Largest body a script may answer with in outputs/.response/body (a larger one is not used: the "
        "caller gets 502); the stdout fallback is cut to it.",
        ge=0,
    )

    # --- api: rate limits, signed links (run export and debug) ----------------------------------------
    rate_limit_reads_per_minute: int = _f(
        1000, "api", "Requests per user and minute with GET/HEAD (seed 004 tier 1); past it 429. 0 turns it off.", ge=0
    )
    rate_limit_writes_per_minute: int = _f(
        100,
        "api",
        "Requests per user and minute with POST/PUT/PATCH/DELETE (seed 004 tier 2); past it 429. 0 turns it off.",
        ge=0,
    )
    export_url_ttl_seconds: int = _f(
        900, "api", "Life of the signed URLs that run export and debug hand out (no bearer token needed).", ge=1
    )
    signing_key: str | None = _f(
        None,
        "api",
        "HMAC key signing export/debug URLs. When unset one is generated into DATA_DIR/signing-key (0600); "
        "replicas that do not share DATA_DIR must all be given the same value.",
        min_length=16,
    )

    # --- tenant variables and secrets; seed 000 tenant hosts ------------------------------------------
    secrets_keys: SecretStr | None = _f(
        None,
        "secrets",
        "Comma-separated Fernet keys for tenant secrets at rest: the first encrypts, all decrypt (rotation: "
        "put a new key first, then 'controlplane secrets re-encrypt'). When unset one is generated into "
        "DATA_DIR/secrets-key (0600); replicas that do not share DATA_DIR must all be given the same value.",
    )
    tenant_hosts: dict[str, str] = _f(
        {},
        "secrets",
        'Host names that name a tenant, JSON {"app.example.com": "tenant"}: a token of another tenant sent '
        "with such a Host header is refused (seed 000). A Host equal to a tenant's name names it too.",
    )

    # --- automation rules (seed 003) ------------------------------------------------------------------
    rules_max_depth: int = _f(
        3,
        "rules",
        "Longest chain of rules triggering rules (a rule starting a run whose end fires a rule, ...): events "
        "at this depth fire no rule (recorded as RULE_LOOP_CUT), so loops end.",
        ge=1,
        le=20,
    )
    rules_keep_evaluations: int = _f(
        100, "rules", "Evaluation records (fired, failed, cut) kept per rule; older ones are deleted.", ge=1
    )

    # --- notifications (seed 001: processes jobs' notification-type E/N/B) -------------------------------
    smtp_host: str | None = _f(
        None, "notifications", "SMTP server for job e-mails (notification-type E or B); unset: e-mail is refused."
    )
    smtp_port: int = _f(25, "notifications", "Port of the SMTP server.", ge=1, le=65535)
    smtp_user: str | None = _f(None, "notifications", "SMTP login user (no login when unset).")
    smtp_password: SecretStr | None = _f(None, "notifications", "SMTP login password.")
    smtp_from: str = _f("controlplane@localhost", "notifications", "From address of job e-mails.")
    smtp_starttls: bool = _f(False, "notifications", "Upgrade the SMTP connection with STARTTLS before login.")
    smtp_timeout_seconds: float = _f(15.0, "notifications", "Timeout of one SMTP conversation.", gt=0)

    @field_validator("sandbox_user")
    @classmethod
    def _not_root(cls, v: str) -> str:
        if not re.fullmatch(r"[0-9]+(:[0-9]+)?", v):
            raise ValueError("sandbox_user must be numeric uid:gid")
        uid, _, gid = v.partition(":")
        if int(uid) == 0 or (gid and int(gid) == 0):
            raise ValueError("sandbox_user must not be root")
        return v if gid else f"{uid}:{uid}"

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    def groups(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for name, field in type(self).model_fields.items():
            extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
            out.setdefault(str(extra.get("group", "other")), []).append(name)
        return out


def config_table() -> str:
    """Markdown table of every setting: variable, default, description (the README embeds it)."""
    rows = ["| Variable | Default | Description |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default
        if isinstance(default, list):
            shown = json.dumps(default, separators=(",", ":"))
        elif default is None:
            shown = "(unset)"
        else:
            shown = str(default)
        rows.append(f"| `CP_{name.upper()}` | `{shown}` | {field.description} |")
    return "\n".join(rows) + "\n"
