"""dsa statements

Revision ID: 0004
Revises: 0003
Where a case came from (results.source, appeals.source) and the request's facts for its statement
of reasons (results.dsa_facts); the statements the DSA Transparency Database holds (dsa_submissions).

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "dsa_submissions",
        sa.Column("endpoint", sa.String(length=500), nullable=False),
        sa.Column("puid", sa.String(length=120), nullable=False),
        sa.Column("result_id", sa.String(length=40), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("uuid", sa.String(length=64), nullable=True),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("endpoint", "puid"),
    )
    with op.batch_alter_table("dsa_submissions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_dsa_submissions_result_id"), ["result_id"], unique=False)
    with op.batch_alter_table("results", schema=None) as batch_op:
        batch_op.add_column(sa.Column("source", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("dsa_facts", sa.JSON(), nullable=True))
    with op.batch_alter_table("appeals", schema=None) as batch_op:
        batch_op.add_column(sa.Column("source", sa.String(length=40), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("appeals", schema=None) as batch_op:
        batch_op.drop_column("source")
    with op.batch_alter_table("results", schema=None) as batch_op:
        batch_op.drop_column("dsa_facts")
        batch_op.drop_column("source")
    with op.batch_alter_table("dsa_submissions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dsa_submissions_result_id"))
    op.drop_table("dsa_submissions")
