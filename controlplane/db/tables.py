"""The schema. Alembic migrations under migrations/ create it; nothing calls create_all in production."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_id() -> str:
    return str(uuid.uuid4())


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC, returns aware UTC, on every dialect (SQLite keeps no zone)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None else None


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON, list[Any]: JSON}


class Tenant(Base):
    __tablename__ = "tenants"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # bumped by every admission decision: the UPDATE takes the tenant's row lock (the database lock on
    # SQLite), so two requests racing for a tenant's last slot are serialised
    admission_seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Replica(Base):
    """One running control-plane process; its heartbeat says whether the runs it claimed are looked after."""

    __tablename__ = "replicas"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    host: Mapped[str] = mapped_column(String(256), default="")
    pid: Mapped[int] = mapped_column(default=0)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class Lease(Base):
    """A named lease (e.g. the scheduler's): whoever holds an unexpired one acts alone."""

    __tablename__ = "leases"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime]


class DispatchState(Base):
    """The single row background dispatch locks while it decides; holds the round-robin tenant cursor."""

    __tablename__ = "dispatch_state"
    id: Mapped[int] = mapped_column(primary_key=True)
    last_tenant_id: Mapped[str] = mapped_column(String(36), default="")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class UsageDaily(Base):
    """Per day, tenant and automation: what the usage API and retention keep after runs are deleted."""

    __tablename__ = "usage_daily"
    day: Mapped[str] = mapped_column(String(10), primary_key=True)  # YYYY-MM-DD (UTC)
    tenant_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    automation_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    automation_name: Mapped[str] = mapped_column(String(128), default="")
    owner_id: Mapped[str] = mapped_column(String(36), default="")
    runs: Mapped[int] = mapped_column(BigInteger, default=0)
    scheduled_runs: Mapped[int] = mapped_column(BigInteger, default=0)
    triggered_runs: Mapped[int] = mapped_column(BigInteger, default=0)
    webhook_runs: Mapped[int] = mapped_column(BigInteger, default=0)
    failed_runs: Mapped[int] = mapped_column(BigInteger, default=0)
    duration_seconds: Mapped[float] = mapped_column(default=0.0)
    rx_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    tx_bytes: Mapped[int] = mapped_column(BigInteger, default=0)


class User(Base):
    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Token(Base):
    __tablename__ = "tokens"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    role: Mapped[str] = mapped_column(String(16))
    run_id: Mapped[str | None] = mapped_column(String(36), index=True)
    description: Mapped[str] = mapped_column(String(256), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class Automation(Base):
    __tablename__ = "automations"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(Text, default="")
    state: Mapped[str] = mapped_column(String(16), default="available")
    run_mode: Mapped[str] = mapped_column(String(16), default="manual")
    owner_id: Mapped[str] = mapped_column(String(36))
    space_id: Mapped[str | None] = mapped_column(String(64))
    runtime: Mapped[str] = mapped_column(String(16))
    entrypoint: Mapped[str] = mapped_column(String(256))
    files: Mapped[dict[str, Any]] = mapped_column(default=dict)
    args: Mapped[list[Any]] = mapped_column(default=list)
    env: Mapped[dict[str, Any]] = mapped_column(default=dict)
    timeout_seconds: Mapped[int | None]
    resources: Mapped[dict[str, Any]] = mapped_column(default=dict)
    network: Mapped[str] = mapped_column(String(16), default="none")
    max_concurrent_runs: Mapped[int] = mapped_column(default=10)
    workspace: Mapped[dict[str, Any]] = mapped_column(default=dict)
    execution_token: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(default=1)
    source: Mapped[str] = mapped_column(String(16), default="api")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_run_id: Mapped[str | None] = mapped_column(String(36))
    last_run_at: Mapped[datetime | None]
    last_run_status: Mapped[str | None] = mapped_column(String(32))
    last_run_duration: Mapped[float | None]
    parameters: Mapped[list[Any]] = mapped_column(
        default=list
    )  # typed run parameters (services/automations/parameters.py)


class AutomationVersion(Base):
    """What a run executes: a frozen copy of the automation's code and settings at one version."""

    __tablename__ = "automation_versions"
    automation_id: Mapped[str] = mapped_column(ForeignKey("automations.id", ondelete="CASCADE"), primary_key=True)
    version: Mapped[int] = mapped_column(primary_key=True)
    spec: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Schedule(Base):
    __tablename__ = "schedules"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    automation_id: Mapped[str] = mapped_column(ForeignKey("automations.id", ondelete="CASCADE"), index=True)
    tenant_id: Mapped[str] = mapped_column(String(36), index=True)
    position: Mapped[int] = mapped_column(default=0)
    cron: Mapped[str | None] = mapped_column(String(128))
    interval: Mapped[int | None]
    start_at: Mapped[datetime | None]
    stop_at: Mapped[datetime | None]
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    last_started_at: Mapped[datetime | None]
    next_run_at: Mapped[datetime | None] = mapped_column(index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_tenant_status", "tenant_id", "status"),
        Index("ix_runs_automation_created", "automation_id", "created_at"),
        Index("ix_runs_status_created", "status", "created_at"),
        Index("ix_runs_queue", "status", "synchronous", "tenant_id", "created_at"),
    )
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    automation_id: Mapped[str] = mapped_column(ForeignKey("automations.id", ondelete="CASCADE"))
    automation_version: Mapped[int]
    status: Mapped[str] = mapped_column(String(32), default="queued")
    context: Mapped[str] = mapped_column(String(32))
    synchronous: Mapped[bool] = mapped_column(Boolean, default=False)
    title: Mapped[str] = mapped_column(String(256), default="")
    args: Mapped[list[Any]] = mapped_column(default=list)
    input: Mapped[bytes] = mapped_column(LargeBinary, default=b"")
    input_content_type: Mapped[str | None] = mapped_column(String(256))
    exit_code: Mapped[int | None]
    stdout_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    stderr_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    stdout_truncated: Mapped[bool] = mapped_column(Boolean, default=False)
    stderr_truncated: Mapped[bool] = mapped_column(Boolean, default=False)
    errors: Mapped[list[Any]] = mapped_column(default=list)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # requests authenticated by this run's own token (seed 004 metrics.totalApiCalls); atomic += 1
    api_calls: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    timeout_seconds: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    start_time: Mapped[datetime | None]
    stop_time: Mapped[datetime | None]
    deadline_at: Mapped[datetime | None]
    scheduled_start_time: Mapped[datetime | None]
    executed_by_id: Mapped[str | None] = mapped_column(String(36))
    owner_id: Mapped[str | None] = mapped_column(String(36))
    space_id: Mapped[str | None] = mapped_column(String(64))
    retry_of: Mapped[str | None] = mapped_column(String(36))
    is_test_run: Mapped[bool] = mapped_column(Boolean, default=False)
    archived: Mapped[bool] = mapped_column(Boolean, default=False)
    backend: Mapped[str | None] = mapped_column(String(32))
    sandbox_ref: Mapped[str | None] = mapped_column(String(256))
    claimed_by: Mapped[str | None] = mapped_column(String(128), index=True)
    schedule_id: Mapped[str | None] = mapped_column(String(36))


class RunLog(Base):
    """A run's stdout/stderr as ordered chunks, appended while it runs (so logs can be followed)."""

    __tablename__ = "run_logs"
    __table_args__ = (Index("ix_run_logs_run_stream_seq", "run_id", "stream", "seq"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    stream: Mapped[str] = mapped_column(String(8))
    seq: Mapped[int]
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Artifact(Base):
    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("run_id", "path"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    tenant_id: Mapped[str] = mapped_column(String(36))
    path: Mapped[str] = mapped_column(String(1024))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    content_type: Mapped[str] = mapped_column(String(128), default="application/octet-stream")
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


__all__ = [
    "Artifact",
    "Automation",
    "AutomationVersion",
    "Base",
    "Run",
    "RunLog",
    "Schedule",
    "Tenant",
    "Token",
    "User",
    "new_id",
    "utcnow",
]


# --- spaces (issue 4: native surface — spaces, automation actions) ------------------------------------


class Space(Base):
    """A space of a tenant: automations live in one; users see the automations of the spaces they belong to.

    Every tenant has one default space (id derived from the tenant id, created on demand) whose members are
    all of the tenant's users; other spaces list their members in ``space_members``.
    """

    __tablename__ = "spaces"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)
    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(Text, default="")
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    owner_id: Mapped[str] = mapped_column(String(36), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class SpaceMember(Base):
    """A user's membership of a (non-default) space; ``role`` (viewer, operator, editor) caps what they may do."""

    __tablename__ = "space_members"
    space_id: Mapped[str] = mapped_column(ForeignKey("spaces.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True)
    role: Mapped[str] = mapped_column(String(16), default="editor")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# --- scripting dialect (seed 002): a script's own HTTP response ------------------------------------------


class RunResponse(Base):
    """The HTTP answer a script wrote into $JETQUERY_OUTPUTS/.response/ (status, content type, body), kept
    with its run; no row when the script wrote none (its stdout is the answer then). ``error`` says why an
    answer cannot be used (bad status or type, body over CP_SCRIPT_RESPONSE_MAX_BYTES)."""

    __tablename__ = "run_responses"
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(36))
    status_code: Mapped[int | None]
    content_type: Mapped[str | None] = mapped_column(String(256))
    body: Mapped[bytes] = mapped_column(LargeBinary, default=b"")
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# --- run timeline, rate limits (issue 4: run export/debug, usage, per-user rate limits) ----------------


class RunEvent(Base):
    """One status change of a run (queued -> starting -> running -> must stop -> final), recorded by the
    store's compare-and-set; the debug record's timeline is built from these plus the run's own times."""

    __tablename__ = "run_events"
    __table_args__ = (Index("ix_run_events_run_id_id", "run_id", "id"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    replica: Mapped[str | None] = mapped_column(String(128))


class RateLimitWindow(Base):
    """Requests one user made in one minute of one tier (reads, writes), shared by every replica.

    ``minute`` is the minute's index since the epoch; rows older than the previous minute are purged."""

    __tablename__ = "rate_limit_windows"
    subject: Mapped[str] = mapped_column(String(128), primary_key=True)  # "<user id>:<tier>"
    minute: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger, default=0)


# --- tenant variables and secrets (issue 4: seed 000's JETQUERY_* values, seed 004's secrets) ----------


class TenantVariable(Base):
    """A tenant's plain variable or secret, given to every run of the tenant as ``<prefix><NAME>``.

    A variable keeps its ``value`` in clear; a secret keeps only ``ciphertext`` (Fernet, see
    services/tenancy/secrets.py), ``key_id`` (the fingerprint of the key that encrypted it) and ``masked`` (whether
    its value is long enough to be masked in run output). ``version`` counts the writes of the name (a PUT
    again is a rotation)."""

    __tablename__ = "tenant_variables"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    is_secret: Mapped[bool] = mapped_column(Boolean, default=False)
    value: Mapped[str | None] = mapped_column(Text)
    ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)
    key_id: Mapped[str | None] = mapped_column(String(16))
    masked: Mapped[bool] = mapped_column(Boolean, default=False)  # long enough to be masked in run output
    version: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


# --- automation rules (issue 5: seed 003's app offering automation rules, and the engine that runs them) --


class AutomationRule(Base):
    """A rule of an automation (seed 003's app offering): on ``trigger`` for a record of ``rulable_type``
    (runs of that automation, or the automation itself), evaluate ``expressions`` (CEL), check ``condition``
    and run ``actions`` in order. ``position`` orders a tenant's rules; ``last_*`` summarise its evaluations."""

    __tablename__ = "automation_rules"
    __table_args__ = (Index("ix_automation_rules_tenant_position", "tenant_id", "position"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    automation_id: Mapped[str] = mapped_column(ForeignKey("automations.id", ondelete="CASCADE"), index=True)
    rulable_type: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(128))
    trigger: Mapped[str] = mapped_column(String(128))
    position: Mapped[int] = mapped_column(default=0)
    description: Mapped[str | None] = mapped_column(Text)
    expressions: Mapped[str | None] = mapped_column(Text)
    condition: Mapped[str | None] = mapped_column(Text)
    actions: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_fired_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None]


class AutomationRuleEvaluation(Base):
    """One evaluation of a rule that did something: ``fired`` (condition true, actions ran), ``failed`` (an
    expression, the condition or an action failed: ``error``) or ``cut`` (loop depth reached). ``actions``
    lists each action's outcome, ``notifications`` the messages of its notify actions."""

    __tablename__ = "automation_rule_evaluations"
    __table_args__ = (Index("ix_automation_rule_evaluations_rule_id_id", "rule_id", "id"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    rule_id: Mapped[int] = mapped_column(ForeignKey("automation_rules.id", ondelete="CASCADE"))
    tenant_id: Mapped[str] = mapped_column(String(36))
    event: Mapped[str] = mapped_column(String(64))
    run_id: Mapped[str | None] = mapped_column(String(36))
    automation_id: Mapped[str] = mapped_column(String(36))
    outcome: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    depth: Mapped[int] = mapped_column(default=0)
    actions: Mapped[list[Any]] = mapped_column(default=list)
    notifications: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RuleRun(Base):
    """A run a rule started, with its depth in the chain of rules (a loop is cut at CP_RULES_MAX_DEPTH)."""

    __tablename__ = "rule_runs"
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    rule_id: Mapped[int | None] = mapped_column(ForeignKey("automation_rules.id", ondelete="SET NULL"))
    depth: Mapped[int] = mapped_column(default=1)


# --- processes dialect (seed 001): background jobs' notifications, per-user notifications -------------


class ProcessJob(Base):
    """A run started as a job through /api/v1/processes/jobs: who to notify, how, and whether it was done.
    ``notified_at`` is set by the one replica that claims the notification (compare-and-set)."""

    __tablename__ = "process_jobs"
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(36), index=True)
    user_id: Mapped[str] = mapped_column(String(36))
    automation_id: Mapped[str] = mapped_column(String(36))
    process: Mapped[str] = mapped_column(String(160))
    notification_type: Mapped[str | None] = mapped_column(String(1))
    email_to: Mapped[str | None] = mapped_column(String(320))
    email_status: Mapped[str | None] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    notified_at: Mapped[datetime | None]


class Notification(Base):
    """A message for one user (a processes job ended, ...), listed by GET /api/v1/notifications."""

    __tablename__ = "notifications"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(String(36), index=True)
    run_id: Mapped[str | None] = mapped_column(String(36))
    kind: Mapped[str] = mapped_column(String(32))
    title: Mapped[str] = mapped_column(String(256))
    body: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    read_at: Mapped[datetime | None]
