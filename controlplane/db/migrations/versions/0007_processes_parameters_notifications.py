"""processes dialect (seed 001): automations' typed parameters, process jobs, per-user notifications

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 16:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("automations") as batch_op:
        batch_op.add_column(sa.Column("parameters", sa.JSON(), nullable=False, server_default="[]"))
    with op.batch_alter_table("automations") as batch_op:
        batch_op.alter_column("parameters", server_default=None)
    op.create_table(
        "process_jobs",
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("automation_id", sa.String(length=36), nullable=False),
        sa.Column("process", sa.String(length=160), nullable=False),
        sa.Column("notification_type", sa.String(length=1), nullable=True),
        sa.Column("email_to", sa.String(length=320), nullable=True),
        sa.Column("email_status", sa.String(length=512), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("notified_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_process_jobs_run_id_runs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_process_jobs")),
    )
    with op.batch_alter_table("process_jobs") as batch_op:
        batch_op.create_index(batch_op.f("ix_process_jobs_tenant_id"), ["tenant_id"], unique=False)
    op.create_table(
        "notifications",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("title", sa.String(length=256), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("read_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_notifications_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
    )
    with op.batch_alter_table("notifications") as batch_op:
        batch_op.create_index(batch_op.f("ix_notifications_user_id"), ["user_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("notifications") as batch_op:
        batch_op.drop_index(batch_op.f("ix_notifications_user_id"))
    op.drop_table("notifications")
    with op.batch_alter_table("process_jobs") as batch_op:
        batch_op.drop_index(batch_op.f("ix_process_jobs_tenant_id"))
    op.drop_table("process_jobs")
    with op.batch_alter_table("automations") as batch_op:
        batch_op.drop_column("parameters")
