"""fencing levels (issue 14): each fence step records the level it belongs to

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("fence_attempts") as b:
        b.add_column(sa.Column("level", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("fence_attempts") as b:
        b.drop_column("level")
