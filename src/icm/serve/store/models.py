"""The store's tables (SQLAlchemy 2 declarative). The schema changes only through Alembic
migrations in ``migrations/versions``, generated from these classes."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """A point in time, stored in UTC and read back with its time zone on every database (SQLite
    keeps no zone: its values come back naive, and are UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    pass


class ApiKey(Base):
    """A caller's key: only its SHA-256 is kept; the key itself is shown once, at creation."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    scopes: Mapped[str] = mapped_column(String(200), doc="comma-separated: moderate, review, admin")
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class PolicyVersion(Base):
    """One version of a policy, as YAML. Versions are never changed or deleted."""

    __tablename__ = "policy_versions"

    policy_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    text: Mapped[str] = mapped_column(Text, doc="the policy as JSON (valid YAML)")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(32), nullable=True)


class StoredResult(Base):
    """One answered moderation: the ModerationResult and what it was judged with.

    ``seq`` orders results for cursor paging; ``id`` is the public name."""

    __tablename__ = "results"

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    id: Mapped[str] = mapped_column(String(40), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, index=True)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    policy_id: Mapped[str] = mapped_column(String(80))
    policy_version: Mapped[int] = mapped_column(Integer)
    rules: Mapped[str] = mapped_column(String(2000), default="", doc="judged rule subset; empty: all")
    backend: Mapped[str] = mapped_column(String(300))
    key_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    request_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    endpoint: Mapped[str] = mapped_column(String(40))
    decision: Mapped[str] = mapped_column(String(20), index=True)
    error_code: Mapped[str | None] = mapped_column(String(40), nullable=True)
    image_kept: Mapped[bool] = mapped_column(default=False)
    total_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    result: Mapped[dict[str, object]] = mapped_column(JSON)
    source: Mapped[str | None] = mapped_column(
        String(40), nullable=True, doc="where the case came from (icm.dsa.SourceType); null: voluntary"
    )
    dsa_facts: Mapped[dict[str, object] | None] = mapped_column(
        JSON, nullable=True, doc="the request's facts for its statement (icm.dsa.StatementFacts)"
    )

    @property
    def image_format(self) -> str:
        """The format the image decoded as (``JPEG``, ``PNG`` ...), or "" when it did not decode."""
        media = self.result.get("media")
        return str(media.get("format") or "") if isinstance(media, dict) else ""

    __table_args__ = (
        Index("ix_results_cache", "sha256", "policy_id", "policy_version", "backend", "rules"),
        Index("ix_results_policy", "policy_id", "policy_version"),
    )


class KeptImage(Base):
    """An image kept in the database (``ICM_KEEP_IMAGES=database``), named by its sha256."""

    __tablename__ = "images"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


# -- review console ---------------------------------------------------------------------------


class User(Base):
    """A reviewer or admin of the console; the password is kept only as an argon2 hash."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    role: Mapped[str] = mapped_column(String(20), doc="reviewer | admin")
    password_hash: Mapped[str] = mapped_column(String(200))
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    reveal_by_default: Mapped[bool] = mapped_column(default=False, doc="show images unblurred")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    disabled_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class WebSession(Base):
    """A logged-in browser: the cookie's token is kept only as a SHA-256; ``csrf`` is the token
    every form of the session carries."""

    __tablename__ = "web_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(32), ForeignKey("users.id"), index=True)
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class QueueItem(Base):
    """One stored result waiting for people: a ``review`` decision, a quality sample of another
    decision, or an appeal. ``needed`` reviews close it (2 when chosen for blind double review)."""

    __tablename__ = "queue_items"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    result_id: Mapped[str] = mapped_column(String(40), index=True)
    kind: Mapped[str] = mapped_column(String(20), doc="review | sample | appeal")
    appeal_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    policy_id: Mapped[str] = mapped_column(String(80))
    decision: Mapped[str] = mapped_column(String(20), doc="the model's decision")
    verdicts: Mapped[str] = mapped_column(
        String(4000), default=",", doc="',rule:verdict,rule:verdict,' for filtering by rule and verdict"
    )
    needed: Mapped[int] = mapped_column(Integer, default=1)
    done: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True, index=True)

    __table_args__ = (Index("ix_queue_open", "closed_at", "created_at"),)


class Lease(Base):
    """Who works on a slot of a queue item until when. The primary key makes a slot one
    reviewer's at a time: a second insert fails; an expired lease is deleted before it is taken."""

    __tablename__ = "leases"

    item_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), ForeignKey("queue_items.id"), primary_key=True
    )
    slot: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[str] = mapped_column(String(32), ForeignKey("users.id"), index=True)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Review(Base):
    """One reviewer's decision on a queue item: per-rule labels, the action and the reason.
    Never changed: a change is a new row that ``supersedes`` the earlier one."""

    __tablename__ = "reviews"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    item_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), ForeignKey("queue_items.id"), index=True
    )
    slot: Mapped[int] = mapped_column(Integer)
    result_id: Mapped[str] = mapped_column(String(40), index=True)
    user_id: Mapped[str] = mapped_column(String(32), ForeignKey("users.id"), index=True)
    labels: Mapped[dict[str, str]] = mapped_column(JSON, doc="rule id -> violates | complies")
    action: Mapped[str] = mapped_column(String(20))
    reason_rule: Mapped[str | None] = mapped_column(String(80), nullable=True)
    note: Mapped[str] = mapped_column(Text, default="")
    supersedes: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, index=True)


class AuditEntry(Base):
    """One line of the append-only audit log: who did what, when, to what, before and after."""

    __tablename__ = "audit"

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(120), doc="user id, key id or 'system'")
    action: Mapped[str] = mapped_column(String(40))
    target: Mapped[str | None] = mapped_column(String(80), nullable=True, index=True)
    before: Mapped[dict[str, object] | None] = mapped_column(JSON, nullable=True)
    after: Mapped[dict[str, object] | None] = mapped_column(JSON, nullable=True)


class Appeal(Base):
    """An uploader's appeal of a stored result; a reviewer other than the result's decides it."""

    __tablename__ = "appeals"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    result_id: Mapped[str] = mapped_column(String(40), index=True)
    key_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    review_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    decision: Mapped[str | None] = mapped_column(String(20), nullable=True)
    statement: Mapped[str | None] = mapped_column(Text, nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    source: Mapped[str | None] = mapped_column(
        String(40), nullable=True, doc="a notice against the result (icm.dsa.SourceType); null: the uploader's own"
    )


class DsaSubmission(Base):
    """A statement of reasons the DSA Transparency Database at ``endpoint`` holds: accepted from
    this store (``created``) or found there already (``existing``). A rerun sends only the rest."""

    __tablename__ = "dsa_submissions"

    endpoint: Mapped[str] = mapped_column(String(500), primary_key=True)
    puid: Mapped[str] = mapped_column(String(120), primary_key=True)
    result_id: Mapped[str] = mapped_column(String(40), index=True)
    outcome: Mapped[str] = mapped_column(String(20), doc="created | existing")
    uuid: Mapped[str | None] = mapped_column(String(64), nullable=True, doc="the database's id of the statement")
    submitted_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


# -- known-content banks ----------------------------------------------------------------------


class BankRow(Base):
    """A known-content bank (icm.banks.model.BankConfig). ``generation`` grows when entries are
    removed: a matcher that read an older one reads the bank again."""

    __tablename__ = "banks"

    name: Mapped[str] = mapped_column(String(80), primary_key=True)
    kind: Mapped[str] = mapped_column(String(10), doc="deny | allow")
    rules: Mapped[list[str]] = mapped_column(JSON)
    signal: Mapped[str] = mapped_column(String(10), doc="pdq | md5 | sha256")
    distance: Mapped[int] = mapped_column(Integer)
    quality_floor: Mapped[int] = mapped_column(Integer)
    dihedral: Mapped[bool] = mapped_column(default=False)
    dsa_category: Mapped[str | None] = mapped_column(String(80), nullable=True)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(120), nullable=True)
    generation: Mapped[int] = mapped_column(Integer, default=0)


class BankEntryRow(Base):
    """One entry of a bank (icm.banks.model.BankEntry); ``seq`` orders them, so a matcher reads
    only the entries added since it last looked."""

    __tablename__ = "bank_entries"

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    bank: Mapped[str] = mapped_column(String(80), ForeignKey("banks.name", ondelete="CASCADE"))
    content_id: Mapped[str] = mapped_column(String(200))
    hash: Mapped[str] = mapped_column(String(64))
    labels: Mapped[list[str]] = mapped_column(JSON)
    added_by: Mapped[str | None] = mapped_column(String(120), nullable=True)
    added_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    quality: Mapped[int | None] = mapped_column(Integer, nullable=True)
    dsa_category: Mapped[str | None] = mapped_column(String(80), nullable=True)
    source: Mapped[str | None] = mapped_column(String(1000), nullable=True)

    __table_args__ = (
        Index("ix_bank_entries_bank_seq", "bank", "seq"),
        Index("ix_bank_entries_content", "bank", "content_id"),
    )


class BankMatchRow(Base):
    """A stored result that a known-content bank matched: one row per (result, bank), written with
    the result, so that the console counts what banks decided without reading results."""

    __tablename__ = "result_bank_matches"

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    result_id: Mapped[str] = mapped_column(String(40), index=True, doc="deleted with the result (Store.purge)")
    bank: Mapped[str] = mapped_column(String(80), index=True, doc="no key: a removed bank's matches stay counted")
    decided: Mapped[bool] = mapped_column(doc="the banks settled the result's decision; no model judged it")
