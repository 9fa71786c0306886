"""held nodes per incident; keepalived events from arbiter-notify

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

import arbiter.store.tables

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("incidents") as batch_op:
        batch_op.add_column(sa.Column("held_nodes", sa.JSON(), nullable=True))
    op.create_table(
        "node_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cluster", sa.String(length=64), nullable=False),
        sa.Column("node", sa.String(length=64), nullable=False),
        sa.Column("instance", sa.String(length=128), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=True),
        sa.Column("at", arbiter.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("node_events") as batch_op:
        batch_op.create_index("ix_node_events_cluster_node", ["cluster", "node", "id"])


def downgrade() -> None:
    with op.batch_alter_table("node_events") as batch_op:
        batch_op.drop_index("ix_node_events_cluster_node")
    op.drop_table("node_events")
    with op.batch_alter_table("incidents") as batch_op:
        batch_op.drop_column("held_nodes")
