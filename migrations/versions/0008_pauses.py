"""maintenance pauses (issue 22): fencing off for a while, with who, why and until when

Revision ID: 0008
Revises: 0007
"""
import sqlalchemy as sa
from alembic import op


revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pauses",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("scope", sa.String(64), nullable=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("by", sa.String(128), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_by", sa.String(128), nullable=True),
        sa.Column("noted_start", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("noted_end", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_index("ix_pauses_open", "pauses", ["ended_at", "until"])


def downgrade() -> None:
    op.drop_index("ix_pauses_open", "pauses")
    op.drop_table("pauses")
