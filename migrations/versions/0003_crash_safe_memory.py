"""what a restart must not forget: the intended hold of a fence in flight, and the
incumbent of each VIP (the survivor rule's fourth rule); and a heartbeat row that
/readyz writes to prove the database takes writes

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

import arbiter.store.tables

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "heartbeat",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("at", arbiter.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    with op.batch_alter_table("incidents") as batch_op:
        batch_op.add_column(sa.Column("pending_hold", sa.JSON(), nullable=True))
    with op.batch_alter_table("cluster_state") as batch_op:
        batch_op.add_column(sa.Column("incumbents", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cluster_state") as batch_op:
        batch_op.drop_column("incumbents")
    with op.batch_alter_table("incidents") as batch_op:
        batch_op.drop_column("pending_hold")
    op.drop_table("heartbeat")
