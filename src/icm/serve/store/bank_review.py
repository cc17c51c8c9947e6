"""The console's changes to known-content banks, inside the transaction of the decision that makes
them (:meth:`ReviewStore.decide`'s ``also``): an entry added for a reviewed item (content id =
its result id, ``source`` = ``review:REVIEW_ID``), the entries an appeal's decision overturns
removed; each audited with who and why. And what banks decided, counted for the console."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, distinct, func, select
from sqlalchemy.orm import Session

from icm.banks.model import BankConfig, BankEntry, BankKind, BankNotFound
from icm.serve.store.banks import entry_of, row_of
from icm.serve.store.database import Store
from icm.serve.store.models import AuditEntry, BankEntryRow, BankMatchRow, BankRow, Review, utcnow

#: ``source`` of an entry added from the console: the review that added it
REVIEW_SOURCE = "review:"


def _audit(session: Session, actor: str, action: str, target: str, before: dict[str, Any] | None,
           after: dict[str, Any] | None) -> None:
    session.add(AuditEntry(at=utcnow(), actor=actor, action=action, target=target, before=before, after=after))


def add_entries(session: Session, bank: str, entries: Sequence[BankEntry], actor: str, why: str) -> None:
    """Add a reviewed item's entries to a bank, audited (``bank.add``) in the caller's transaction."""
    if session.get(BankRow, bank) is None:
        raise BankNotFound(f"no bank {bank} in the store")
    session.add_all(row_of(bank, e) for e in entries)
    _audit(session, actor, "bank.add", bank, None, {
        "content_id": entries[0].content_id if entries else None, "hashes": [e.hash for e in entries],
        "labels": entries[0].labels if entries else [], "source": entries[0].source if entries else None,
        "why": why})


def overturned(config: BankConfig, labels: dict[str, str], action: str) -> bool:
    """Whether a decision contradicts what an entry of this bank says of its content: a deny bank's
    rule not labelled violates (or the content allowed), an allow bank's rule labelled violates."""
    if config.kind is BankKind.deny:
        return action == "allow" or any(labels.get(rule) != "violates" for rule in config.rules)
    return any(labels.get(rule) == "violates" for rule in config.rules)


def _removed(session: Session, name: str, rows: Sequence[BankEntryRow], actor: str, why: dict[str, Any]) -> None:
    """Take ``rows`` out of bank ``name``, audited (``bank.remove``) with every field of them, so
    that undoing the decision that removed them can put them back."""
    session.execute(delete(BankEntryRow).where(BankEntryRow.seq.in_([r.seq for r in rows])))
    bank = session.get(BankRow, name, with_for_update=True)
    if bank is not None:
        bank.generation += 1  # a matcher that read the bank before reads it again
    entries = [entry_of(r).model_dump(mode="json") for r in rows]
    _audit(session, actor, "bank.remove", name,
           {"content_id": rows[0].content_id, "hashes": [r.hash for r in rows], "source": rows[0].source,
            "entries": entries}, why)


def remove_overturned(session: Session, configs: Sequence[BankConfig], result_id: str, labels: dict[str, str],
                      action: str, actor: str, review_id: str, why: str) -> list[str]:
    """Remove the console-added entries of ``result_id`` that review ``review_id`` overturns,
    audited (``bank.remove``) in the caller's transaction; the names of the banks changed."""
    changed = []
    for config in configs:
        if not overturned(config, labels, action):
            continue
        rows = list(session.scalars(select(BankEntryRow).where(
            BankEntryRow.bank == config.name, BankEntryRow.content_id == result_id,
            BankEntryRow.source.like(REVIEW_SOURCE + "%"))))
        if rows:
            _removed(session, config.name, rows, actor, {"why": why, "review": review_id})
            changed.append(config.name)
    return changed


def undo_bank_changes(session: Session, review: Review, actor: str) -> list[str]:
    """Undo what a review did to the banks, audited in the caller's transaction: the entries it
    added removed, the entries it removed (an appeal that overturned them) put back; the names of
    the banks changed."""
    rows = list(session.scalars(select(BankEntryRow).where(BankEntryRow.source == REVIEW_SOURCE + review.id)))
    changed = sorted({r.bank for r in rows})
    for name in changed:
        _removed(session, name, [r for r in rows if r.bank == name], actor, {"why": f"{review.id} undone"})
    removals = session.scalars(select(AuditEntry).where(
        AuditEntry.action == "bank.remove", AuditEntry.at >= review.created_at).order_by(AuditEntry.seq))
    for removal in list(removals):
        if (removal.after or {}).get("review") != review.id or removal.target is None:
            continue
        entries = (removal.before or {}).get("entries")
        if session.get(BankRow, removal.target) is None or not isinstance(entries, list) or not entries:
            continue  # the bank is gone since, or the removal predates recorded entries
        add_entries(session, removal.target, [BankEntry.model_validate(e) for e in entries], actor,
                    f"{review.id} undone: its removal taken back")
        changed.append(removal.target)
    return sorted(set(changed))


@dataclass(frozen=True)
class BankDecided:
    """What known-content banks decided: results every verdict of which rests on a bank's match
    (no model judged them, and they never joined the queue), and matches per bank."""

    results: int
    per_bank: dict[str, int]


def bank_decided(store: Store) -> BankDecided:
    """Count the stored results a bank matched, from the matches recorded with them (an index,
    not a read of every result)."""
    with store._session() as session:
        decided = session.scalar(select(func.count(distinct(BankMatchRow.result_id)))
                                 .where(BankMatchRow.decided.is_(True)))
        per_bank = session.execute(select(BankMatchRow.bank, func.count()).group_by(BankMatchRow.bank)).all()
    return BankDecided(int(decided or 0), {bank: int(n) for bank, n in sorted(per_bank)})
