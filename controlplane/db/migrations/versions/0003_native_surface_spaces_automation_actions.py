"""native surface: spaces, automation actions, webhook tokens, run exports

Creates ``spaces`` and ``space_members`` and puts every existing automation into a real space: each tenant
gets its default space (the id ``store.spaces.default_space_id`` derives from the tenant id); automations
without a space move into it; a spaceId an automation already named (free text before spaces were real)
becomes a space of that tenant with that id and name, so clients that used it keep working. Should two
tenants have used the same spaceId, the second one's space gets a fresh id and its rows follow.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 15:00:00
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# must match controlplane.store.spaces (DEFAULT_SPACE_NAMESPACE, DEFAULT_SPACE_NAME)
DEFAULT_SPACE_NAMESPACE = uuid.UUID("6f1c0f3e-3d0b-4f55-9a43-6c0d2f8e4b21")
DEFAULT_SPACE_NAME = "Default"


def _default_space_id(tenant_id: str) -> str:
    return str(uuid.uuid5(DEFAULT_SPACE_NAMESPACE, tenant_id))


def upgrade() -> None:
    op.create_table(
        "spaces",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("owner_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_spaces_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_spaces")),
        sa.UniqueConstraint("tenant_id", "name", name=op.f("uq_spaces_tenant_id")),
    )
    with op.batch_alter_table("spaces", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_spaces_tenant_id"), ["tenant_id"], unique=False)
    op.create_table(
        "space_members",
        sa.Column("space_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["space_id"], ["spaces.id"], name=op.f("fk_space_members_space_id_spaces"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_space_members_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("space_id", "user_id", name=op.f("pk_space_members")),
    )
    with op.batch_alter_table("space_members", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_space_members_user_id"), ["user_id"], unique=False)
    _assign_spaces()


def _assign_spaces() -> None:
    bind = op.get_bind()
    now = datetime.now(UTC).replace(tzinfo=None)
    tenants = sa.table("tenants", sa.column("id", sa.String))
    automations = sa.table(
        "automations", sa.column("tenant_id", sa.String), sa.column("space_id", sa.String), sa.column("id", sa.String)
    )
    runs = sa.table("runs", sa.column("tenant_id", sa.String), sa.column("space_id", sa.String))
    spaces = sa.table(
        "spaces",
        sa.column("id", sa.String),
        sa.column("tenant_id", sa.String),
        sa.column("name", sa.String),
        sa.column("description", sa.Text),
        sa.column("is_default", sa.Boolean),
        sa.column("owner_id", sa.String),
        sa.column("created_at", sa.DateTime),
        sa.column("updated_at", sa.DateTime),
    )

    def space(space_id: str, tenant_id: str, name: str, *, default: bool) -> dict[str, object]:
        return {
            "id": space_id,
            "tenant_id": tenant_id,
            "name": name,
            "description": "",
            "is_default": default,
            "owner_id": "",
            "created_at": now,
            "updated_at": now,
        }

    rows: list[dict[str, object]] = []
    taken: set[str] = set()
    for (tenant_id,) in bind.execute(sa.select(tenants.c.id)).all():
        default_id = _default_space_id(tenant_id)
        rows.append(space(default_id, tenant_id, DEFAULT_SPACE_NAME, default=True))
        taken.add(default_id)
        for table in (automations, runs):
            bind.execute(
                table.update()
                .where(table.c.tenant_id == tenant_id, table.c.space_id.is_(None))
                .values(space_id=default_id)
            )
    used = (
        sa.select(automations.c.tenant_id, automations.c.space_id)
        .where(automations.c.space_id.is_not(None))
        .distinct()
        .order_by(automations.c.tenant_id, automations.c.space_id)
    )
    for tenant_id, space_id in bind.execute(used).all():
        if space_id == _default_space_id(tenant_id):
            continue
        new_id = space_id
        if space_id in taken:  # another tenant's space already has this id: this tenant's gets a new one
            new_id = str(uuid.uuid4())
            for table in (automations, runs):
                bind.execute(
                    table.update()
                    .where(table.c.tenant_id == tenant_id, table.c.space_id == space_id)
                    .values(space_id=new_id)
                )
        taken.add(new_id)
        name = space_id if space_id != DEFAULT_SPACE_NAME else f"{space_id} ({new_id})"
        rows.append(space(new_id, tenant_id, name[:128], default=False))
    if rows:
        op.bulk_insert(spaces, rows)


def downgrade() -> None:
    # automations and runs keep their spaceId values (plain strings again)
    with op.batch_alter_table("space_members", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_space_members_user_id"))
    op.drop_table("space_members")
    with op.batch_alter_table("spaces", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_spaces_tenant_id"))
    op.drop_table("spaces")
