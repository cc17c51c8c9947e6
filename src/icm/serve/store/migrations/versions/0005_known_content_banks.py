"""known-content banks

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 13:40:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "banks",
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("signal", sa.String(length=10), nullable=False),
        sa.Column("distance", sa.Integer(), nullable=False),
        sa.Column("quality_floor", sa.Integer(), nullable=False),
        sa.Column("dihedral", sa.Boolean(), nullable=False),
        sa.Column("dsa_category", sa.String(length=80), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=120), nullable=True),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "bank_entries",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("bank", sa.String(length=80), nullable=False),
        sa.Column("content_id", sa.String(length=200), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("added_by", sa.String(length=120), nullable=True),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("quality", sa.Integer(), nullable=True),
        sa.Column("dsa_category", sa.String(length=80), nullable=True),
        sa.Column("source", sa.String(length=1000), nullable=True),
        sa.ForeignKeyConstraint(["bank"], ["banks.name"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index("ix_bank_entries_bank_seq", "bank_entries", ["bank", "seq"], unique=False)
    op.create_index("ix_bank_entries_content", "bank_entries", ["bank", "content_id"], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index("ix_bank_entries_content", table_name="bank_entries")
    op.drop_index("ix_bank_entries_bank_seq", table_name="bank_entries")
    op.drop_table("bank_entries")
    op.drop_table("banks")
