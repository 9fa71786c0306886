"""several arbiters (issue 12): a lease per shard with a term; each arbiter's last
view of every node; and on incidents the term they were decided under and, for an
arbiter's own incidents, its name

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(64), nullable=False),
        sa.Column("term", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("wanted_by", sa.String(64), nullable=True),
    )
    op.create_table(
        "arbiter_views",
        sa.Column("arbiter", sa.String(64), primary_key=True),
        sa.Column("shard", sa.String(64), primary_key=True),
        sa.Column("observed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("usable", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("nodes", sa.JSON(), nullable=False),
    )
    with op.batch_alter_table("incidents") as batch_op:
        batch_op.add_column(sa.Column("term", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("arbiter", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("incidents") as batch_op:
        batch_op.drop_column("arbiter")
        batch_op.drop_column("term")
    op.drop_table("arbiter_views")
    op.drop_table("leases")
