"""[ha] audit (issue 23): who took each term of a shard and when, and the term each
fence step was recorded under

Revision ID: 0009
Revises: 0008
"""
import sqlalchemy as sa
from alembic import op


revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lease_history",
        sa.Column("shard", sa.String(64), primary_key=True),
        sa.Column("term", sa.BigInteger, primary_key=True),
        sa.Column("holder", sa.String(64), nullable=False),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False),
    )
    with op.batch_alter_table("fence_attempts") as b:
        b.add_column(sa.Column("term", sa.BigInteger, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("fence_attempts") as b:
        b.drop_column("term")
    op.drop_table("lease_history")
