"""notifications (issue 13): the outbox of messages to operators, one row per
notification and channel, written with the incident change it reports

Revision ID: 0006
Revises: 0005
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notifications",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("dedup_key", sa.String(200), nullable=False, unique=True),
        sa.Column("channel", sa.String(48), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=True),
        sa.Column("cluster", sa.String(64), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_notifications_state_next", "notifications", ["state", "next_at"])


def downgrade() -> None:
    op.drop_index("ix_notifications_state_next", table_name="notifications")
    op.drop_table("notifications")
