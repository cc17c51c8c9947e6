"""The loop from the console to the known-content banks: a reviewer who decides a rule violated
may add the item to a deny bank of that rule, one who overturns the model's violation of a rule
to an allow bank of it; an appeal's decision that overturns an earlier one removes the entries it
added. The changes are made and audited in the decision's own transaction, so that from then on
copies are decided by the bank (and never reach the queue)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from icm.banks.hashing import hash_image
from icm.banks.model import BankConfig, BankEntry, BankKind, SignalType
from icm.errors import InputError
from icm.media import MediaError, load_image
from icm.results import Hashes, ModerationResult, Verdict
from icm.serve.service import Service
from icm.serve.store.bank_review import REVIEW_SOURCE, add_entries, remove_overturned, undo_bank_changes
from icm.serve.store.models import Review, StoredResult

#: the decision form's field: one per bank the item is added to
FIELD = "bank"


def bank_configs(service: Service) -> list[BankConfig]:
    """The store's banks as the service's matcher holds them (read again when they changed)."""
    return service.judging.banks.configs()


def offers(configs: list[BankConfig], result: ModerationResult) -> dict[str, list[dict[str, Any]]]:
    """Per rule of the result, the banks a decision on it may add the item to: the deny banks of
    the rule (shown once it is labelled violates; checked when it is the rule's only one) and,
    when the model found the rule violated, the allow banks that clear it (shown once it is
    labelled complies)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for verdict in result.verdicts:
        rule = verdict.rule_id
        deny = [c for c in configs if c.kind is BankKind.deny and rule in c.rules]
        allow = [c for c in configs if c.kind is BankKind.allow and rule in c.rules
                 and verdict.verdict is Verdict.violates]
        banks = [{"name": c.name, "kind": "deny", "when": "violates", "only": len(deny) == 1} for c in deny]
        banks += [{"name": c.name, "kind": "allow", "when": "complies", "only": False} for c in allow]
        if banks:
            out[rule] = banks
    return out


def chosen_banks(names: list[str], configs: list[BankConfig], result: ModerationResult,
                 labels: dict[str, str]) -> list[BankConfig]:
    """The banks a decision form adds the item to (its ``bank`` fields), each checked against the
    labels: InputError (400) when a bank is not one this decision may add to."""
    known = {c.name: c for c in configs}
    model = {v.rule_id: v.verdict for v in result.verdicts}
    out = []
    for name in dict.fromkeys(names):
        config = known.get(name)
        if config is None:
            raise InputError(f"there is no bank {name!r}")
        if config.kind is BankKind.deny:
            if not any(labels.get(rule) == "violates" for rule in config.rules):
                raise InputError(f"adding to the deny bank {name} needs its rule ({', '.join(config.rules)}) "
                                 "labelled violates")
        elif not any(labels.get(rule) == "complies" and model.get(rule) is Verdict.violates
                     for rule in config.rules):
            raise InputError(f"adding to the allow bank {name} overturns the model's violation of "
                             f"{', '.join(config.rules)}: label that rule complies")
        out.append(config)
    return out


def _hashes(service: Service, row: StoredResult, result: ModerationResult) -> tuple[Hashes | None, str | None]:
    """The item's hashes: those the result stored when the banks matched it, else its kept
    image's (decoded and hashed here)."""
    if result.hashes is not None and result.hashes.pdq:
        return result.hashes, row.sha256
    data = service.images.get(row.sha256) if service.images is not None and row.sha256 else None
    if data is None:
        return result.hashes, row.sha256
    try:
        image = load_image(row.id, data=data, limits=service.judging.limits, sha256=row.sha256)
    except MediaError:
        return result.hashes, row.sha256
    return hash_image(image), image.sha256


def entries_for(service: Service, config: BankConfig, row: StoredResult, result: ModerationResult,
                labels: list[str], added_by: str, review_id: str) -> list[BankEntry]:
    """The bank entries of a reviewed item (content id = its result id): its PDQ per frame that
    reaches the bank's quality floor, or its md5 / sha256; InputError when it has none."""
    hashes, sha256 = _hashes(service, row, result)
    base = {"content_id": row.id, "labels": labels, "added_by": added_by, "source": REVIEW_SOURCE + review_id}
    if config.signal is SignalType.pdq:
        found = [(pdq, quality) for pdq, quality in zip(hashes.pdq, hashes.quality, strict=False)
                 if quality >= config.quality_floor] if hashes is not None else []
        if not found:
            raise InputError(f"the item cannot join {config.name}: its image was not kept, or its PDQ is of "
                             f"too low a quality to match (below {config.quality_floor})")
        return [BankEntry(hash=pdq, quality=quality, **base) for pdq, quality in found]
    digest = (hashes.md5 if hashes is not None else None) if config.signal is SignalType.md5 else sha256
    if digest is None:
        raise InputError(f"the item cannot join {config.name}: its {config.signal.value} is not known")
    return [BankEntry(hash=digest, **base)]


def bank_changes(service: Service, row: StoredResult, result: ModerationResult, adding: list[BankConfig],
                 configs: list[BankConfig], *, user_id: str, username: str, appeal_id: str | None,
                 ) -> Callable[[Session, Review], None] | None:
    """What the decision does to the banks, in its transaction: the entries it adds, and for an
    appeal the console-added entries of the item that it overturns, removed. None: nothing."""
    if not adding and appeal_id is None:
        return None
    # hashed before the transaction: an image that cannot join a bank refuses the decision whole
    prepared = [(config, entries_for(service, config, row, result, [], username, "")) for config in adding]

    def change(session: Session, review: Review) -> None:
        if appeal_id is not None:
            remove_overturned(session, configs, row.id, review.labels, review.action, user_id, review.id,
                              f"appeal {appeal_id} decided {review.action} ({review.id})")
        for config, entries in prepared:
            kept = [e.model_copy(update={"labels": _entry_labels(config, review),
                                         "source": REVIEW_SOURCE + review.id}) for e in entries]
            why = (f"{review.id}: " + ("violates " if config.kind is BankKind.deny else "overturns the model on ")
                   + ", ".join(config.rules))
            add_entries(session, config.name, kept, user_id, why)

    return change


def undo_changes(user_id: str) -> Callable[[Session, Review], None]:
    """What undoing a decision does to the banks, in its transaction: the entries it added taken
    out, those it removed (an appeal's) put back."""

    def change(session: Session, review: Review) -> None:
        undo_bank_changes(session, review, user_id)

    return change


def _entry_labels(config: BankConfig, review: Review) -> list[str]:
    want = "violates" if config.kind is BankKind.deny else "complies"
    return [f"{rule}:{want}" for rule in config.rules if review.labels.get(rule) == want]
