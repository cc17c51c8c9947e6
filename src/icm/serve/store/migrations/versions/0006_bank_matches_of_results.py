"""bank matches of results

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 20:40:00.000000

The banks that matched each stored result, in a table of their own, so that the console counts
what banks decided without reading every result. Results stored before it are read once here.
"""

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    matches = op.create_table(
        "result_bank_matches",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("result_id", sa.String(length=40), nullable=False),
        sa.Column("bank", sa.String(length=80), nullable=False),
        sa.Column("decided", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index("ix_result_bank_matches_result_id", "result_bank_matches", ["result_id"], unique=False)
    op.create_index("ix_result_bank_matches_bank", "result_bank_matches", ["bank"], unique=False)
    _backfill(matches)


#: the criterion a known-content bank's evidence carries, as results of this revision's time wrote it
KNOWN_CONTENT = "known-content"


def _backfill(matches: sa.Table) -> None:
    """The matches of results stored before this revision, read from their results' JSON as it was
    written then (this revision's own reading, not the application's models, which may change)."""
    results = sa.table("results", sa.column("id", sa.String), sa.column("result", sa.JSON))
    bind = op.get_bind()
    rows = bind.execute(sa.select(results.c.id, results.c.result)
                        .where(sa.cast(results.c.result, sa.Text).like(f"%{KNOWN_CONTENT}%")))
    found = []
    for result_id, data in rows:
        result = json.loads(data) if isinstance(data, str) else data
        banked = [[e for e in v.get("evidence") or [] if e.get("criterion") == KNOWN_CONTENT]
                  for v in result.get("verdicts") or []]
        banks = sorted({e["signal"].removeprefix("hash:") for known in banked for e in known
                        if (e.get("signal") or "").startswith("hash:")})
        decided = bool(banked) and all(banked)  # every verdict rests on a bank's match
        found += [{"result_id": result_id, "bank": bank, "decided": decided} for bank in banks]
    if found:
        op.bulk_insert(matches, found)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index("ix_result_bank_matches_bank", table_name="result_bank_matches")
    op.drop_index("ix_result_bank_matches_result_id", table_name="result_bank_matches")
    op.drop_table("result_bank_matches")
