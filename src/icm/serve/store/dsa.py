"""The store's reads and writes for DSA statements of reasons: the results that may have one, with
the people's decisions on them, and the record of what a Transparency Database holds. Same
database and engine as :class:`Store`."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError

from icm.serve.store.database import Store
from icm.serve.store.models import Appeal, DsaSubmission, QueueItem, Review, StoredResult, utcnow

_RESTRICTING = ("blur", "age_gate", "block")


@dataclass
class CaseRows:
    """A stored result with the reviews of its queue items (oldest first) and its appeals with
    the review that decided each (oldest first)."""

    result: StoredResult
    reviews: list[Review] = field(default_factory=list)
    appeals: list[tuple[Appeal, Review | None]] = field(default_factory=list)


class DsaStore:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._session = store._session

    def case(self, result_id: str) -> CaseRows | None:
        with self._session() as session:
            row = session.scalar(select(StoredResult).where(StoredResult.id == result_id))
        if row is None:
            return None
        return next(iter(self._cases([row])))

    def cases(self, page: int = 500) -> Iterator[CaseRows]:
        """Every result that may have a statement (a restricting decision, a person's review or an
        appeal), in the order they were stored."""
        after = 0
        reviewed = select(Review.result_id)
        appealed = select(Appeal.result_id)
        while True:
            with self._session() as session:
                rows = list(session.scalars(
                    select(StoredResult)
                    .where(StoredResult.seq > after, or_(StoredResult.decision.in_(_RESTRICTING),
                                                         StoredResult.id.in_(reviewed), StoredResult.id.in_(appealed)))
                    .order_by(StoredResult.seq).limit(page)
                ))
            if not rows:
                return
            yield from self._cases(rows)
            after = rows[-1].seq

    def _cases(self, rows: list[StoredResult]) -> Iterable[CaseRows]:
        ids = [row.id for row in rows]
        with self._session() as session:
            found = list(session.execute(
                select(Review, QueueItem.kind).join(QueueItem, QueueItem.id == Review.item_id)
                .where(Review.result_id.in_(ids)).order_by(Review.created_at, Review.id)
            ).all())
            appeals = list(session.scalars(
                select(Appeal).where(Appeal.result_id.in_(ids)).order_by(Appeal.created_at, Appeal.id)
            ))
        by_id = {row.id: CaseRows(row) for row in rows}
        reviews_by_id: dict[str, Review] = {}
        for review, kind in found:
            reviews_by_id[review.id] = review
            if kind != "appeal":
                by_id[review.result_id].reviews.append(review)
        for appeal in appeals:
            by_id[appeal.result_id].appeals.append(
                (appeal, reviews_by_id.get(appeal.review_id) if appeal.review_id else None)
            )
        return by_id.values()

    # -- what a Transparency Database holds ----------------------------------------------------

    def submitted(self, endpoint: str) -> set[str]:
        """The puids the database at ``endpoint`` holds, as far as this store knows."""
        with self._session() as session:
            return set(session.scalars(select(DsaSubmission.puid).where(DsaSubmission.endpoint == endpoint)))

    def record(self, endpoint: str, accepted: Iterable[tuple[str, str, str, str | None]]) -> None:
        """Record (puid, result id, outcome, the database's uuid) as held by ``endpoint``; a puid
        recorded before stays as it was."""
        now = utcnow()
        rows = list(accepted)
        try:
            self._add(endpoint, rows, now)
        except IntegrityError:  # another run recorded some of them first: one at a time
            for row in rows:
                try:
                    self._add(endpoint, [row], now)
                except IntegrityError:
                    pass

    def _add(self, endpoint: str, rows: list[tuple[str, str, str, str | None]], now: datetime) -> None:
        with self._session.begin() as session:
            held = set(session.scalars(select(DsaSubmission.puid).where(
                DsaSubmission.endpoint == endpoint, DsaSubmission.puid.in_([r[0] for r in rows]))))
            for puid, result_id, outcome, uuid in rows:
                if puid not in held:
                    held.add(puid)
                    session.add(DsaSubmission(endpoint=endpoint, puid=puid, result_id=result_id,
                                              outcome=outcome, uuid=uuid, submitted_at=now))
