"""The review console's reads and writes: users, browser sessions, the queue and its leases,
reviews, the append-only audit log and appeals. Same database and engine as :class:`Store`.
A change that is audited writes its audit entry in its own transaction."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from icm.serve.errors import Conflict, NotFound
from icm.serve.store.database import Store
from icm.serve.store.models import (
    Appeal,
    AuditEntry,
    BankMatchRow,
    Lease,
    QueueItem,
    Review,
    StoredResult,
    User,
    WebSession,
    utcnow,
)


def verdict_tags(result: dict[str, Any]) -> str:
    """``,rule:verdict,...,`` of a stored result, for filtering the queue by rule and verdict."""
    tags = [f"{v['rule_id']}:{v['verdict']}" for v in result.get("verdicts", [])]
    return "," + ",".join(tags) + ("," if tags else "")


def review_record(review: Review) -> dict[str, Any]:
    """A review as the audit log records it."""
    return {"review": review.id, "action": review.action, "labels": review.labels,
            "reason_rule": review.reason_rule, "note": review.note}


def _audit(session: Session, actor: str, action: str, target: str | None, before: dict[str, Any] | None,
           after: dict[str, Any] | None) -> None:
    session.add(AuditEntry(at=utcnow(), actor=actor, action=action, target=target, before=before, after=after))


@dataclass(frozen=True)
class QueueFilter:
    policy_id: str | None = None
    rule_id: str | None = None
    verdict: str | None = None
    kind: str | None = None


@dataclass(frozen=True)
class Taken:
    """A queue item leased to a reviewer: which slot (0, or 1 for the second of a double review)."""

    item: QueueItem
    slot: int
    expires_at: datetime


class ReviewStore:
    """Every read and write of the console, in short transactions."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._session = sessionmaker(store.engine, expire_on_commit=False)

    # -- users -------------------------------------------------------------------------------

    def add_user(self, username: str, role: str, password_hash: str, actor: str | None = None) -> User:
        """A new account; ``actor`` (who made it) audits it in the same transaction."""
        row = User(id="usr_" + uuid.uuid4().hex[:12], username=username, role=role, password_hash=password_hash,
                   failed_logins=0, reveal_by_default=False, created_at=utcnow())
        try:
            with self._session.begin() as session:
                session.add(row)
                if actor is not None:
                    _audit(session, actor, "user_created", f"user:{row.id}", None,
                           {"username": username, "role": role})
        except IntegrityError:
            raise Conflict(f"a user named {username!r} already exists") from None
        return row

    def user(self, user_id: str) -> User | None:
        with self._session() as session:
            return session.get(User, user_id)

    def user_by_name(self, username: str) -> User | None:
        with self._session() as session:
            return session.scalar(select(User).where(User.username == username))

    def users(self) -> list[User]:
        with self._session() as session:
            return list(session.scalars(select(User).order_by(User.username)))

    def set_password(self, user_id: str, password_hash: str, *, end_sessions: bool = True,
                     actor: str | None = None, target: str | None = None) -> int:
        """A new password hash (which lifts a lockout); ``end_sessions`` logs every browser of the
        user out in the same transaction (only a rehash of the same password keeps them), and
        ``actor`` audits it there too (``target``: the entry's, ``user:ID`` by default). Returns
        how many sessions ended."""
        with self._session.begin() as session:
            session.execute(update(User).where(User.id == user_id).values(
                password_hash=password_hash, failed_logins=0, locked_until=None))
            ended = self._end_sessions(session, user_id) if end_sessions else 0
            if actor is not None:
                _audit(session, actor, "password_set", target or f"user:{user_id}", None, {"sessions_ended": ended})
            return ended

    def set_disabled(self, user_id: str, disabled: bool, actor: str | None = None) -> int:
        """Disable an account (it can no longer log in, its sessions end, its leases are
        released) or enable it again; ``actor`` audits it in the same transaction. Returns how
        many sessions ended."""
        with self._session.begin() as session:
            user = session.get(User, user_id, with_for_update=True)
            was = user is not None and user.disabled_at is not None
            ended = 0
            if not disabled:
                session.execute(update(User).where(User.id == user_id).values(disabled_at=None))
            else:
                session.execute(update(User).where(User.id == user_id, User.disabled_at.is_(None)).values(
                    disabled_at=utcnow()))
                ended = self._end_sessions(session, user_id)
                session.execute(delete(Lease).where(Lease.user_id == user_id))  # their items go back to the queue
            if actor is not None:
                _audit(session, actor, "user_disabled" if disabled else "user_enabled", f"user:{user_id}",
                       {"disabled": was}, {"disabled": disabled, "sessions_ended": ended})
            return ended

    @staticmethod
    def _end_sessions(session: Session, user_id: str) -> int:
        done = session.execute(update(WebSession).where(WebSession.user_id == user_id,
                                                        WebSession.ended_at.is_(None)).values(ended_at=utcnow()))
        return int(getattr(done, "rowcount", 0) or 0)

    def login_failed(self, user_id: str, max_failures: int, lockout: timedelta) -> User:
        """Count a failed login; the ``max_failures``-th in a row locks the account for ``lockout``."""
        with self._session.begin() as session:
            user = session.get(User, user_id, with_for_update=True)
            assert user is not None
            user.failed_logins += 1
            if user.failed_logins >= max_failures:
                user.locked_until = utcnow() + lockout
                user.failed_logins = 0
            return user

    def login_succeeded(self, user_id: str) -> None:
        with self._session.begin() as session:
            session.execute(update(User).where(User.id == user_id).values(failed_logins=0, locked_until=None))

    def set_reveal(self, user_id: str, reveal: bool) -> None:
        with self._session.begin() as session:
            session.execute(update(User).where(User.id == user_id).values(reveal_by_default=reveal))

    # -- browser sessions --------------------------------------------------------------------

    def add_session(self, token_hash: str, user_id: str, csrf: str, lifetime: timedelta) -> None:
        now = utcnow()
        with self._session.begin() as session:
            session.add(WebSession(token_hash=token_hash, user_id=user_id, csrf=csrf, created_at=now,
                                   expires_at=now + lifetime))

    def live_session(self, token_hash: str) -> tuple[WebSession, User] | None:
        """The session of a cookie and its user, unless it ended, expired or the user is disabled."""
        with self._session() as session:
            row = session.execute(
                select(WebSession, User).join(User, User.id == WebSession.user_id).where(
                    WebSession.token_hash == token_hash, WebSession.ended_at.is_(None),
                    WebSession.expires_at > utcnow(), User.disabled_at.is_(None),
                )
            ).first()
            return (row[0], row[1]) if row is not None else None

    def end_session(self, token_hash: str) -> None:
        with self._session.begin() as session:
            session.execute(update(WebSession).where(WebSession.token_hash == token_hash).values(ended_at=utcnow()))

    # -- the queue ---------------------------------------------------------------------------

    def add_result(self, row: StoredResult, kind: str | None = None, needed: int = 1,
                   matches: Sequence[BankMatchRow] = ()) -> StoredResult:
        """Store an answered result, the banks that matched it and, when ``kind`` is given, its
        queue item, in one transaction."""
        with self._session.begin() as session:
            session.add(row)
            session.flush()
            session.add_all(matches)
            if kind is not None:
                self._enqueue(session, row, kind, needed, None)
        return row

    def enqueue(self, row: StoredResult, kind: str, needed: int = 1, appeal_id: str | None = None) -> QueueItem:
        with self._session.begin() as session:
            return self._enqueue(session, row, kind, needed, appeal_id)

    @staticmethod
    def _enqueue(session: Session, row: StoredResult, kind: str, needed: int, appeal_id: str | None) -> QueueItem:
        item = QueueItem(result_id=row.id, kind=kind, appeal_id=appeal_id, policy_id=row.policy_id,
                         decision=row.decision, verdicts=verdict_tags(row.result), needed=needed, done=0,
                         created_at=utcnow() if kind == "appeal" else row.created_at)
        session.add(item)
        session.flush()
        return item

    def item(self, item_id: int) -> QueueItem | None:
        with self._session() as session:
            return session.get(QueueItem, item_id)

    def _open(self, where: QueueFilter) -> Any:
        query = select(QueueItem).where(QueueItem.closed_at.is_(None))
        if where.policy_id:
            query = query.where(QueueItem.policy_id == where.policy_id)
        if where.kind:
            query = query.where(QueueItem.kind == where.kind)
        if where.rule_id and where.verdict:
            query = query.where(QueueItem.verdicts.contains(f",{where.rule_id}:{where.verdict},", autoescape=True))
        elif where.rule_id:
            query = query.where(QueueItem.verdicts.contains(f",{where.rule_id}:", autoescape=True))
        elif where.verdict:
            query = query.where(QueueItem.verdicts.contains(f":{where.verdict},", autoescape=True))
        return query

    def open_items(self, where: QueueFilter, limit: int = 100) -> list[tuple[QueueItem, list[Lease]]]:
        """Open items, oldest first, each with its live leases."""
        now = utcnow()
        with self._session() as session:
            items = list(session.scalars(self._open(where).order_by(QueueItem.created_at, QueueItem.id).limit(limit)))
            leases: dict[int, list[Lease]] = {}
            if items:
                for lease in session.scalars(select(Lease).where(
                        Lease.item_id.in_([i.id for i in items]), Lease.expires_at > now)):
                    leases.setdefault(lease.item_id, []).append(lease)
            return [(item, leases.get(item.id, [])) for item in items]

    def queue_ages(self) -> list[datetime]:
        """When each open item entered the queue."""
        with self._session() as session:
            query = select(QueueItem.created_at).where(QueueItem.closed_at.is_(None))
            return list(session.scalars(query))

    def _excluded(self, session: Session, item: QueueItem, user_id: str) -> bool:
        """Whether this reviewer may not work on ``item``: they reviewed it (blind double review
        needs another person), or, for an appeal, they reviewed the result appealed against."""
        query = select(func.count()).select_from(Review).where(Review.user_id == user_id)
        if item.kind == "appeal":
            query = query.where(Review.result_id == item.result_id)
        else:
            query = query.where(Review.item_id == item.id)
        return bool(session.scalar(query))

    def take(self, item_id: int, user_id: str, lease: timedelta) -> Taken:
        """Lease a free slot of ``item_id`` to ``user_id`` (or renew their own lease). Conflict when
        every slot is another reviewer's, the item is closed, or this reviewer may not take it."""
        now = utcnow()
        with self._session.begin() as session:
            item = session.get(QueueItem, item_id)
            if item is None:
                raise NotFound(f"no queue item {item_id}")
            mine = session.scalar(select(Lease).where(Lease.item_id == item_id, Lease.user_id == user_id))
            if mine is not None:
                mine.expires_at = now + lease
                return Taken(item, mine.slot, mine.expires_at)
            if item.closed_at is not None:
                raise Conflict(f"item {item_id} has been decided")
            if self._excluded(session, item, user_id):
                raise Conflict(f"item {item_id} needs a different reviewer")
            reviewed = set(session.scalars(select(Review.slot).where(Review.item_id == item_id)))
            free = [slot for slot in range(item.needed) if slot not in reviewed]
        for slot in free:
            taken = self._lease_slot(item, slot, user_id, now, lease)
            if taken is not None:
                return taken
        raise Conflict(f"item {item_id} is being reviewed by someone else")

    def _lease_slot(self, item: QueueItem, slot: int, user_id: str, now: datetime, lease: timedelta) -> Taken | None:
        try:
            with self._session.begin() as session:
                session.execute(
                    delete(Lease).where(Lease.item_id == item.id, Lease.slot == slot, Lease.expires_at <= now)
                )
                session.add(Lease(item_id=item.id, slot=slot, user_id=user_id, expires_at=now + lease))
        except IntegrityError:  # someone else holds the slot
            return None
        return Taken(item, slot, now + lease)

    def take_next(self, user_id: str, lease: timedelta, where: QueueFilter, skip: int | None = None) -> Taken | None:
        """The oldest open item this reviewer may take, leased to them (their own lease first);
        ``skip`` is an item they just passed over."""
        with self._session() as session:
            held = session.scalar(self._open(where).join(Lease, Lease.item_id == QueueItem.id).where(
                Lease.user_id == user_id, Lease.expires_at > utcnow()
            ).order_by(QueueItem.created_at).limit(1).with_only_columns(QueueItem.id))
            reviewed = select(Review.item_id).where(Review.user_id == user_id)
            candidates = list(session.scalars(
                self._open(where).where(QueueItem.id.not_in(reviewed))
                .order_by(QueueItem.created_at, QueueItem.id).limit(200).with_only_columns(QueueItem.id)
            ))
        for item_id in ([held] if held is not None else []) + candidates:
            if item_id == skip:
                continue
            try:
                return self.take(item_id, user_id, lease)
            except Conflict:
                continue
        return None

    def release(self, item_id: int, user_id: str) -> bool:
        with self._session.begin() as session:
            gone = session.execute(delete(Lease).where(Lease.item_id == item_id, Lease.user_id == user_id))
            return bool(getattr(gone, "rowcount", 0))

    def lease_of(self, item_id: int, user_id: str) -> Lease | None:
        with self._session() as session:
            return session.scalar(select(Lease).where(Lease.item_id == item_id, Lease.user_id == user_id))

    # -- reviews -----------------------------------------------------------------------------

    def decide(self, item_id: int, user_id: str, labels: dict[str, str], action: str, reason_rule: str | None,
               note: str, statement: str | None = None,
               also: Callable[[Session, Review], None] | None = None) -> tuple[Review, Review | None]:
        """Store a reviewer's decision: the first on their lease (which it ends), or a change of
        their earlier one, with its audit entries (``decide`` or ``change``, and ``appeal_decided``
        for the first decision of an appeal) in the same transaction; ``also`` does what comes with
        the decision in that transaction too (the console's bank changes). Returns (the review,
        the review it replaces or None)."""
        now = utcnow()
        with self._session.begin() as session:
            item = session.get(QueueItem, item_id, with_for_update=True)
            if item is None:
                raise NotFound(f"no queue item {item_id}")
            earlier = session.scalar(select(Review).where(Review.item_id == item_id, Review.user_id == user_id)
                                     .order_by(Review.created_at.desc(), Review.id.desc()).limit(1))
            if earlier is not None:
                slot = earlier.slot
            else:
                lease = session.scalar(select(Lease).where(Lease.item_id == item_id, Lease.user_id == user_id))
                if lease is None:
                    raise Conflict(f"item {item_id} is not leased to you (the lease expired and another "
                                   "reviewer took it); open it from the queue again")
                slot = lease.slot
                session.delete(lease)
                item.done += 1
                if item.done >= item.needed:
                    item.closed_at = now
            review = Review(id="rev_" + uuid.uuid4().hex, item_id=item_id, slot=slot, result_id=item.result_id,
                            user_id=user_id, labels=labels, action=action, reason_rule=reason_rule, note=note,
                            supersedes=earlier.id if earlier is not None else None, created_at=now)
            session.add(review)
            if also is not None:
                also(session, review)
            if item.appeal_id is not None:
                session.execute(update(Appeal).where(Appeal.id == item.appeal_id).values(
                    review_id=review.id, decision=action, statement=statement, decided_at=now))
            target = f"item:{item_id}"
            if earlier is not None:
                _audit(session, user_id, "change", target, review_record(earlier), review_record(review))
                return review, earlier
            judged = session.scalar(select(StoredResult).where(StoredResult.id == item.result_id))
            stored: dict[str, Any] = judged.result if judged is not None else {}
            verdicts = stored.get("verdicts", [])
            decision = judged.decision if judged is not None else item.decision
            before: dict[str, Any] = {"decision": decision, "verdicts": {v["rule_id"]: v["verdict"] for v in verdicts}}
            _audit(session, user_id, "decide", target, before, review_record(review))
            if item.appeal_id is not None:
                _audit(session, user_id, "appeal_decided", item.appeal_id, {"decision": decision},
                       {"decision": action, "statement": statement})
            return review, earlier

    def undo(self, item_id: int, user_id: str, window: timedelta, lease: timedelta,
             also: Callable[[Session, Review], None] | None = None) -> Review:
        """Take back this reviewer's last decision, made on ``item_id`` less than ``window`` ago:
        the review is deleted, the item opens again and is leased back to them (an appeal it
        decided is open again), audited in the same transaction (with ``also``: what comes with
        it, the bank entries the decision added taken out). Conflict when that decision is
        not their last one, was a change of an earlier one (decide again instead), or is older
        than ``window``."""
        now = utcnow()
        with self._session.begin() as session:
            last = session.scalar(select(Review).where(Review.user_id == user_id)
                                  .order_by(Review.created_at.desc(), Review.id.desc()).limit(1))
            if last is None or last.item_id != item_id:
                raise Conflict(f"your last decision is not on item {item_id}: only the last one can be undone")
            if last.supersedes is not None:
                raise Conflict(f"your last decision on item {item_id} changed an earlier one: decide again to "
                               "change it")
            if last.created_at + window < now:
                raise Conflict(f"your decision on item {item_id} is older than {int(window.total_seconds())} s "
                               "and can no longer be undone; open the item to change it")
            item = session.get(QueueItem, item_id, with_for_update=True)
            assert item is not None
            item.done = max(0, item.done - 1)
            item.closed_at = None
            session.delete(last)
            session.execute(delete(Lease).where(Lease.item_id == item_id, Lease.slot == last.slot))
            session.add(Lease(item_id=item_id, slot=last.slot, user_id=user_id, expires_at=now + lease))
            if item.appeal_id is not None:
                session.execute(update(Appeal).where(Appeal.id == item.appeal_id).values(
                    review_id=None, decision=None, statement=None, decided_at=None))
            _audit(session, user_id, "undo", f"item:{item_id}", review_record(last), None)
            if also is not None:
                also(session, last)
            return last

    def reviews(self, result_id: str | None = None, since: datetime | None = None) -> list[Review]:
        """Reviews in the order they were made (every row, superseded ones included)."""
        with self._session() as session:
            query = select(Review).order_by(Review.created_at, Review.id)
            if result_id is not None:
                query = query.where(Review.result_id == result_id)
            if since is not None:
                query = query.where(Review.created_at >= since)
            return list(session.scalars(query))

    def current_reviews(self) -> list[tuple[Review, QueueItem]]:
        """Each reviewer's latest review of each item (what a change replaced is left out)."""
        with self._session() as session:
            rows = session.execute(select(Review, QueueItem).join(QueueItem, QueueItem.id == Review.item_id)
                                   .order_by(Review.created_at, Review.id)).all()
        latest: dict[tuple[int, str], tuple[Review, QueueItem]] = {}
        for review, item in rows:
            latest[(review.item_id, review.user_id)] = (review, item)
        return list(latest.values())

    def my_review(self, item_id: int, user_id: str) -> Review | None:
        with self._session() as session:
            return session.scalar(select(Review).where(Review.item_id == item_id, Review.user_id == user_id)
                                  .order_by(Review.created_at.desc(), Review.id.desc()).limit(1))

    def previous_item(self, user_id: str, before: int | None) -> int | None:
        """The item this reviewer decided most recently (before ``before``, when given)."""
        with self._session() as session:
            query = select(Review.item_id).where(Review.user_id == user_id)
            if before is not None:
                query = query.where(Review.item_id != before)
            return session.scalar(query.order_by(Review.created_at.desc()).limit(1))

    # -- audit -------------------------------------------------------------------------------

    def audit(self, actor: str, action: str, target: str | None = None, before: dict[str, Any] | None = None,
              after: dict[str, Any] | None = None) -> None:
        """Append one entry. There is no method that changes or deletes one."""
        with self._session.begin() as session:
            _audit(session, actor, action, target, before, after)

    def audit_entries(self, after: int = 0, limit: int | None = 200, newest_first: bool = True) -> list[AuditEntry]:
        with self._session() as session:
            query = select(AuditEntry).where(AuditEntry.seq > after)
            query = query.order_by(AuditEntry.seq.desc() if newest_first else AuditEntry.seq)
            if limit is not None:
                query = query.limit(limit)
            return list(session.scalars(query))

    # -- appeals -----------------------------------------------------------------------------

    def add_appeal(self, result: StoredResult, key_id: str | None, text: str, source: str | None = None) -> Appeal:
        """Open an appeal and put it in the queue, in one transaction; Conflict when the result
        already has an open appeal."""
        with self._session.begin() as session:
            pending = session.scalar(select(Appeal).where(Appeal.result_id == result.id, Appeal.decided_at.is_(None)))
            if pending is not None:
                raise Conflict(f"result {result.id} already has an open appeal ({pending.id})")
            appeal = Appeal(id="apl_" + uuid.uuid4().hex, result_id=result.id, key_id=key_id, text=text,
                            created_at=utcnow(), source=source)
            session.add(appeal)
            self._enqueue(session, result, "appeal", 1, appeal.id)
            return appeal

    def appeal(self, appeal_id: str) -> Appeal | None:
        with self._session() as session:
            return session.get(Appeal, appeal_id)

    # -- what the export, stats and replay read ----------------------------------------------

    def results_by_id(self, ids: list[str]) -> dict[str, StoredResult]:
        with self._session() as session:
            out: dict[str, StoredResult] = {}
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                out.update((r.id, r) for r in session.scalars(select(StoredResult).where(StoredResult.id.in_(chunk))))
            return out

    def kept_results(self, policy_id: str | None = None) -> list[StoredResult]:
        """The newest error-free result of each kept image (per policy), oldest image first."""
        with self._session() as session:
            query = select(StoredResult).where(StoredResult.image_kept.is_(True), StoredResult.error_code.is_(None),
                                               or_(StoredResult.rules == "", StoredResult.rules.is_(None)))
            if policy_id is not None:
                query = query.where(StoredResult.policy_id == policy_id)
            newest: dict[tuple[str | None, str], StoredResult] = {}
            for row in session.scalars(query.order_by(StoredResult.seq)):
                newest[(row.sha256, row.policy_id)] = row
            return list(newest.values())
