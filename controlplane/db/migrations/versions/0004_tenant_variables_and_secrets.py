"""tenant variables and secrets

Creates ``tenant_variables``: per tenant, plain variables and Fernet-encrypted secrets that reach runs as
``<prefix><NAME>`` environment variables (services/secrets.py).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 15:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tenant_variables",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("is_secret", sa.Boolean(), nullable=False),
        sa.Column("value", sa.Text(), nullable=True),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=True),
        sa.Column("key_id", sa.String(length=16), nullable=True),
        sa.Column("masked", sa.Boolean(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_tenant_variables_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenant_variables")),
        sa.UniqueConstraint("tenant_id", "name", name=op.f("uq_tenant_variables_tenant_id")),
    )
    with op.batch_alter_table("tenant_variables", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_tenant_variables_tenant_id"), ["tenant_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("tenant_variables", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tenant_variables_tenant_id"))
    op.drop_table("tenant_variables")
