"""The DSA statement of reasons on the console's item and appeal pages: the statement in force for
the item's result (the model's decision, a person's, or the one an appeal changed it to), the
statements it replaced, or why there is none. Read from the store as ``GET
/v1/results/{id}/statement`` reads it, worded with the database's own labels."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from starlette.concurrency import run_in_threadpool

from icm.dsa import Made
from icm.policy.dsa_vocabulary import (
    AUTOMATED_DECISIONS,
    CATEGORIES,
    DECISION_GROUNDS,
    KEYWORDS,
    SOURCE_TYPES,
    VISIBILITIES,
)
from icm.serve.service import Service

_LABELS: dict[str, dict[str, str]] = {
    "decision_visibility": VISIBILITIES, "decision_ground": DECISION_GROUNDS, "category": CATEGORIES,
    "category_addition": CATEGORIES, "category_specification": KEYWORDS, "source_type": SOURCE_TYPES,
    "automated_decision": AUTOMATED_DECISIONS,
}
# the fields a reviewer reads first, in this order, with the database's names for them
_SHOWN = (
    ("decision_visibility", "Restriction"), ("decision_visibility_other", "Restriction, in words"),
    ("decision_ground", "Ground"), ("incompatible_content_ground", "Contractual ground"),
    ("illegal_content_legal_ground", "Legal ground"), ("category", "Category"),
    ("category_addition", "Additional categories"), ("category_specification", "Keywords"),
    ("category_specification_other", "Other keyword"),
    ("source_type", "Information source"), ("automated_detection", "Automated detection"),
    ("automated_decision", "Automated decision"), ("content_date", "Content date"),
    ("application_date", "Application date"), ("decision_facts", "Facts and circumstances"),
)


@dataclass(frozen=True)
class ShownStatement:
    """One statement as the page shows it: its puid, what made it, its fields worded, the whole
    submission as JSON, or the problems that keep it from being valid (then it is never sent)."""

    puid: str
    appeal_id: str | None
    fields: list[tuple[str, str]] = field(default_factory=list)
    payload: str = ""
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class StatementView:
    """The statement in force (None: there is none, ``why`` says why) and the ones it replaced,
    oldest first."""

    current: ShownStatement | None
    replaced: list[ShownStatement]
    why: str


def _worded(name: str, value: Any) -> str:
    labels = _LABELS.get(name, {})
    values = value if isinstance(value, list) else [value]
    return "; ".join(labels.get(str(v), str(v)) for v in values)


def _shown(made: Made) -> ShownStatement:
    if made.statement is None:
        return ShownStatement(made.puid, made.appeal_id, problems=made.problems)
    payload = made.statement.payload()
    fields = [(label, _worded(name, payload[name])) for name, label in _SHOWN if name in payload]
    return ShownStatement(made.puid, made.appeal_id, fields, json.dumps(payload, indent=2, ensure_ascii=False))


def _view(service: Service, result_id: str) -> StatementView | None:
    from icm.serve.statements import Statements

    statements = Statements(service.store, service.settings.statement_defaults(), service.catalog)
    case = statements.dsa.case(result_id)
    if case is None:
        return None
    made, why = statements.of(case)
    shown = [_shown(m) for m in made]
    if why or not shown:
        return StatementView(None, shown, why or "the decision restricts nothing")
    return StatementView(shown[-1], shown[:-1], "")


async def statement_view(service: Service, result_id: str) -> StatementView | None:
    """The statements of a stored result for its console page; None when the result is gone."""
    return await run_in_threadpool(_view, service, result_id)
