"""A statement as made for a decision: the statement, or what keeps it from being valid, with
the times the transparency report counts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from icm.dsa.statement import Statement


@dataclass(frozen=True)
class Made:
    """One statement of a stored result. ``statement`` is None when the parts do not make a valid
    one, and ``problems`` lists why (a content date before 2000 ...): it is never sent."""

    puid: str
    result_id: str
    statement: Statement | None
    problems: tuple[str, ...]
    uploaded_at: datetime
    decided_at: datetime
    appeal_id: str | None = None
