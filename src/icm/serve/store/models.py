"""The store's tables (SQLAlchemy 2 declarative). The schema changes only through Alembic
migrations in ``migrations/versions``, generated from these classes."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import JSON, BigInteger, DateTime, Float, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class ApiKey(Base):
    """A caller's key: only its SHA-256 is kept; the key itself is shown once, at creation."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    scopes: Mapped[str] = mapped_column(String(200), doc="comma-separated: moderate, review, admin")
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class PolicyVersion(Base):
    """One version of a policy, as YAML. Versions are never changed or deleted."""

    __tablename__ = "policy_versions"

    policy_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    text: Mapped[str] = mapped_column(Text, doc="the policy as JSON (valid YAML)")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(32), nullable=True)


class StoredResult(Base):
    """One answered moderation: the ModerationResult and what it was judged with.

    ``seq`` orders results for cursor paging; ``id`` is the public name."""

    __tablename__ = "results"

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    id: Mapped[str] = mapped_column(String(40), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
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

    __table_args__ = (
        Index("ix_results_cache", "sha256", "policy_id", "policy_version", "backend", "rules"),
        Index("ix_results_policy", "policy_id", "policy_version"),
    )


class KeptImage(Base):
    """An image kept in the database (``ICM_KEEP_IMAGES=database``), named by its sha256."""

    __tablename__ = "images"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
