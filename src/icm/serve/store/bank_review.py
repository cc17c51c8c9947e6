"""The console's changes to known-content banks, inside the transaction of the decision that makes
them (:meth:`ReviewStore.decide`'s ``also``): an entry added for a reviewed item (content id =
its result id, ``source`` = ``review:REVIEW_ID``), the entries an appeal's decision overturns
removed; each audited with who and why. And what banks decided, counted for the console."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import String, cast, delete, select
from sqlalchemy.orm import Session

from icm.banks.model import BankConfig, BankEntry, BankKind, BankNotFound
from icm.results import KNOWN_CONTENT, ModerationResult
from icm.serve.store.database import Store
from icm.serve.store.models import AuditEntry, BankEntryRow, BankRow, Review, StoredResult, utcnow

#: ``source`` of an entry added from the console: the review that added it
REVIEW_SOURCE = "review:"


def _audit(session: Session, actor: str, action: str, target: str, before: dict[str, Any] | None,
           after: dict[str, Any] | None) -> None:
    session.add(AuditEntry(at=utcnow(), actor=actor, action=action, target=target, before=before, after=after))


def add_entries(session: Session, config: BankConfig, entries: Sequence[BankEntry], actor: str, why: str) -> None:
    """Add a reviewed item's entries to a bank, audited (``bank.add``) in the caller's transaction."""
    if session.get(BankRow, config.name) is None:
        raise BankNotFound(f"no bank {config.name} in the store")
    fields = ("content_id", "hash", "labels", "added_by", "added_at", "quality", "dsa_category", "source")
    session.add_all(BankEntryRow(bank=config.name, **{f: getattr(e, f) for f in fields}) for e in entries)
    _audit(session, actor, "bank.add", config.name, None, {
        "content_id": entries[0].content_id if entries else None, "hashes": [e.hash for e in entries],
        "labels": entries[0].labels if entries else [], "source": entries[0].source if entries else None,
        "why": why})


def overturned(config: BankConfig, labels: dict[str, str], action: str) -> bool:
    """Whether a decision contradicts what an entry of this bank says of its content: a deny bank's
    rule not labelled violates (or the content allowed), an allow bank's rule labelled violates."""
    if config.kind is BankKind.deny:
        return action == "allow" or any(labels.get(rule) != "violates" for rule in config.rules)
    return any(labels.get(rule) == "violates" for rule in config.rules)


def remove_overturned(session: Session, configs: Sequence[BankConfig], result_id: str, labels: dict[str, str],
                      action: str, actor: str, why: str) -> list[str]:
    """Remove the console-added entries of ``result_id`` that this decision overturns, audited
    (``bank.remove``) in the caller's transaction; the names of the banks changed."""
    changed = []
    for config in configs:
        if not overturned(config, labels, action):
            continue
        rows = list(session.scalars(select(BankEntryRow).where(
            BankEntryRow.bank == config.name, BankEntryRow.content_id == result_id,
            BankEntryRow.source.like(REVIEW_SOURCE + "%"))))
        if not rows:
            continue
        session.execute(delete(BankEntryRow).where(BankEntryRow.seq.in_([r.seq for r in rows])))
        bank = session.get(BankRow, config.name, with_for_update=True)
        if bank is not None:
            bank.generation += 1  # a matcher that read the bank before reads it again
        _audit(session, actor, "bank.remove", config.name,
               {"content_id": result_id, "hashes": [r.hash for r in rows], "source": rows[0].source},
               {"why": why})
        changed.append(config.name)
    return changed


def remove_added_by(session: Session, review: Review, actor: str) -> list[str]:
    """Remove the entries a review added (an undone decision), audited (``bank.remove``) in the
    caller's transaction; the names of the banks changed."""
    rows = list(session.scalars(select(BankEntryRow).where(BankEntryRow.source == REVIEW_SOURCE + review.id)))
    changed = sorted({r.bank for r in rows})
    for name in changed:
        mine = [r for r in rows if r.bank == name]
        session.execute(delete(BankEntryRow).where(BankEntryRow.seq.in_([r.seq for r in mine])))
        bank = session.get(BankRow, name, with_for_update=True)
        if bank is not None:
            bank.generation += 1
        _audit(session, actor, "bank.remove", name,
               {"content_id": mine[0].content_id, "hashes": [r.hash for r in mine], "source": mine[0].source},
               {"why": f"{review.id} undone"})
    return changed


@dataclass(frozen=True)
class BankDecided:
    """What known-content banks decided: results every verdict of which rests on a bank's match
    (no model judged them, and they never joined the queue), and matches per bank."""

    results: int
    per_bank: dict[str, int]


def bank_decided(store: Store) -> BankDecided:
    """Count the stored results a bank matched (the database picks the rows that name a
    known-content match; their results are read to tell which banks, and whether banks decided)."""
    per_bank: dict[str, int] = {}
    decided = 0
    with store._session() as session:
        rows = session.scalars(select(StoredResult.result).where(
            cast(StoredResult.result, String).like(f"%{KNOWN_CONTENT}%")))
        for data in rows:
            result = ModerationResult.model_validate(data)
            banks = {e.signal.removeprefix("hash:") for v in result.verdicts for e in v.evidence
                     if e.criterion == KNOWN_CONTENT and e.signal}
            for bank in banks:
                per_bank[bank] = per_bank.get(bank, 0) + 1
            decided += result.decided_by_banks
    return BankDecided(decided, dict(sorted(per_bank.items())))
