"""The tables of the dialects' own state and of the rules engine: a scripting run's HTTP answer (seed 002),
automation rules and their evaluations (seed 003), processes jobs and per-user notifications (seed 001).

They hang off the platform's tables (db/tables.py) by foreign key; db/tables.py re-exports them, so one
import names the whole schema."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from controlplane.db.base import Base, new_id, utcnow

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
