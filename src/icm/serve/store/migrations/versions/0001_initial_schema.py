"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-27 00:27:50.420453

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("scopes", sa.String(length=200), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key_hash"),
    )
    op.create_table(
        "policy_versions",
        sa.Column("policy_id", sa.String(length=80), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("policy_id", "version"),
    )
    op.create_table(
        "results",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("policy_id", sa.String(length=80), nullable=False),
        sa.Column("policy_version", sa.Integer(), nullable=False),
        sa.Column("rules", sa.String(length=2000), nullable=False),
        sa.Column("backend", sa.String(length=300), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("endpoint", sa.String(length=40), nullable=False),
        sa.Column("decision", sa.String(length=20), nullable=False),
        sa.Column("error_code", sa.String(length=40), nullable=True),
        sa.Column("image_kept", sa.Boolean(), nullable=False),
        sa.Column("total_ms", sa.Float(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("id"),
    )
    with op.batch_alter_table("results", schema=None) as batch_op:
        batch_op.create_index(
            "ix_results_cache", ["sha256", "policy_id", "policy_version", "backend", "rules"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_results_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_results_decision"), ["decision"], unique=False)
        batch_op.create_index(batch_op.f("ix_results_key_id"), ["key_id"], unique=False)
        batch_op.create_index("ix_results_policy", ["policy_id", "policy_version"], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("results", schema=None) as batch_op:
        batch_op.drop_index("ix_results_policy")
        batch_op.drop_index(batch_op.f("ix_results_key_id"))
        batch_op.drop_index(batch_op.f("ix_results_decision"))
        batch_op.drop_index(batch_op.f("ix_results_created_at"))
        batch_op.drop_index("ix_results_cache")

    op.drop_table("results")
    op.drop_table("policy_versions")
    op.drop_table("api_keys")
