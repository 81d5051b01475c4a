"""The schema. Alembic migrations under migrations/ create it; nothing calls create_all in production.

The platform's own tables live here; the dialects' and the rules engine's in db/dialect_tables.py, the
declarative base in db/base.py. Both are re-exported, so ``controlplane.db.tables`` names every table."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from controlplane.db.base import NAMING as NAMING
from controlplane.db.base import Base as Base
from controlplane.db.base import UTCDateTime as UTCDateTime
from controlplane.db.base import new_id as new_id
from controlplane.db.base import utcnow as utcnow
from controlplane.db.dialect_tables import AutomationRule as AutomationRule
from controlplane.db.dialect_tables import AutomationRuleEvaluation as AutomationRuleEvaluation
from controlplane.db.dialect_tables import Notification as Notification
from controlplane.db.dialect_tables import ProcessJob as ProcessJob
from controlplane.db.dialect_tables import RuleRun as RuleRun
from controlplane.db.dialect_tables import RunResponse as RunResponse


class Tenant(Base):
    __tablename__ = "tenants"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # bumped by every admission decision: the UPDATE takes the tenant's row lock (the database lock on
    # SQLite), so two requests racing for a tenant's last slot are serialised
    admission_seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Installation(Base):
    """The one row naming this installation: its replicas share the id and label every sandbox with it, so
    two installations on one engine never take each other's sandboxes for their own."""

    __tablename__ = "installation"
    key: Mapped[str] = mapped_column(String(16), primary_key=True, default="this")
    id: Mapped[str] = mapped_column(String(32))
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
