"""The Store: every read and write of the service's database, in short transactions."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, ExceptionContext, create_engine, delete, event, func, select, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import sessionmaker

from icm.serve.errors import StoreUnavailable
from icm.serve.store.models import ApiKey, BankMatchRow, KeptImage, PolicyVersion, StoredResult, utcnow


@dataclass(frozen=True)
class ResultFilter:
    decision: str | None = None
    policy_id: str | None = None
    policy_version: int | None = None
    sha256: str | None = None
    key_id: str | None = None


class Store:
    """The database behind the service (SQLite or PostgreSQL, through SQLAlchemy 2). While the
    database cannot be reached, every call raises StoreUnavailable (retry after ``retry_after``
    seconds); the pool's pre-ping reconnects once it is back."""

    def __init__(self, url: str, retry_after: int = 1) -> None:
        self.url = url
        self.engine: Engine = _engine(url)
        _unreachable_is_unavailable(self.engine, retry_after)
        self._session = sessionmaker(self.engine, expire_on_commit=False)

    def close(self) -> None:
        self.engine.dispose()

    def ping(self) -> None:
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    # -- keys --------------------------------------------------------------------------------

    def add_key(self, key_id: str, name: str, scopes: Iterable[str], key_hash: str) -> ApiKey:
        row = ApiKey(id=key_id, name=name, scopes=",".join(scopes), key_hash=key_hash, created_at=utcnow())
        with self._session.begin() as session:
            session.add(row)
        return row

    def key_by_hash(self, key_hash: str) -> ApiKey | None:
        with self._session() as session:
            return session.scalar(select(ApiKey).where(ApiKey.key_hash == key_hash))

    def keys(self) -> list[ApiKey]:
        with self._session() as session:
            return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)))

    def revoke_key(self, key_id: str) -> bool:
        """Revoke a key; False when there is no such key (revoking twice is fine)."""
        with self._session.begin() as session:
            row = session.get(ApiKey, key_id)
            if row is None:
                return False
            if row.revoked_at is None:
                row.revoked_at = utcnow()
            return True

    # -- policies ----------------------------------------------------------------------------

    def add_policy_version(self, policy_id: str, version: int, text_: str, created_by: str | None) -> bool:
        """Store a new version; False when that version already exists (versions never change)."""
        try:
            with self._session.begin() as session:
                session.add(
                    PolicyVersion(
                        policy_id=policy_id, version=version, text=text_, created_by=created_by,
                        created_at=utcnow(),
                    )
                )
        except IntegrityError:
            return False
        return True

    def policy_version(self, policy_id: str, version: int | None = None) -> PolicyVersion | None:
        """The given version of a policy, or its newest when ``version`` is None."""
        with self._session() as session:
            query = select(PolicyVersion).where(PolicyVersion.policy_id == policy_id)
            if version is not None:
                return session.scalar(query.where(PolicyVersion.version == version))
            return session.scalar(query.order_by(PolicyVersion.version.desc()).limit(1))

    def policy_versions(self, policy_id: str | None = None) -> list[PolicyVersion]:
        with self._session() as session:
            query = select(PolicyVersion).order_by(PolicyVersion.policy_id, PolicyVersion.version)
            if policy_id is not None:
                query = query.where(PolicyVersion.policy_id == policy_id)
            return list(session.scalars(query))

    # -- results -----------------------------------------------------------------------------

    def add_result(self, row: StoredResult) -> StoredResult:
        with self._session.begin() as session:
            session.add(row)
        return row

    def result(self, result_id: str) -> StoredResult | None:
        with self._session() as session:
            return session.scalar(select(StoredResult).where(StoredResult.id == result_id))

    def cached(self, sha256: str, policy_id: str, version: int, backend: str, rules: str) -> StoredResult | None:
        """The newest judgement of this image under this policy version, backend and rule subset
        that has no error (an error is never served from the cache)."""
        with self._session() as session:
            return session.scalar(
                select(StoredResult)
                .where(
                    StoredResult.sha256 == sha256,
                    StoredResult.policy_id == policy_id,
                    StoredResult.policy_version == version,
                    StoredResult.backend == backend,
                    StoredResult.rules == rules,
                    StoredResult.error_code.is_(None),
                )
                .order_by(StoredResult.seq.desc())
                .limit(1)
            )

    def results(self, where: ResultFilter, after: str | None = None, limit: int = 50) -> list[StoredResult]:
        """Results in the order they were stored, after the result ``after`` (a cursor)."""
        with self._session() as session:
            query = select(StoredResult).order_by(StoredResult.seq).limit(limit)
            if after is not None:
                cursor = session.scalar(select(StoredResult.seq).where(StoredResult.id == after))
                if cursor is None:
                    raise KeyError(after)
                query = query.where(StoredResult.seq > cursor)
            conditions: dict[str, Any] = {
                "decision": where.decision,
                "policy_id": where.policy_id,
                "policy_version": where.policy_version,
                "sha256": where.sha256,
                "key_id": where.key_id,
            }
            for column, value in conditions.items():
                if value is not None:
                    query = query.where(getattr(StoredResult, column) == value)
            return list(session.scalars(query))

    def count_results(self) -> int:
        with self._session() as session:
            return int(session.scalar(select(func.count()).select_from(StoredResult)) or 0)

    def purge(self, before: datetime) -> tuple[int, set[str]]:
        """Delete results stored before ``before`` (and the bank matches recorded with them);
        returns how many, and the sha256 of kept images that no remaining result refers to (for
        the caller to delete)."""
        with self._session.begin() as session:
            old = select(StoredResult).where(StoredResult.created_at < before)
            rows = list(session.scalars(old))
            candidates = {r.sha256 for r in rows if r.image_kept and r.sha256}
            session.execute(delete(BankMatchRow).where(BankMatchRow.result_id.in_(
                select(StoredResult.id).where(StoredResult.created_at < before))))
            for row in rows:
                session.delete(row)
            session.flush()
            still_used = set(
                session.scalars(
                    select(StoredResult.sha256).where(
                        StoredResult.sha256.in_(candidates), StoredResult.image_kept.is_(True)
                    )
                )
            ) if candidates else set()
        return len(rows), candidates - still_used

    # -- kept images (ICM_KEEP_IMAGES=database) ------------------------------------------------

    def put_image(self, sha256: str, data: bytes) -> None:
        try:
            with self._session.begin() as session:
                if session.get(KeptImage, sha256) is None:
                    session.add(KeptImage(sha256=sha256, data=data, created_at=utcnow()))
        except IntegrityError:  # another worker kept the same image first
            pass

    def image(self, sha256: str) -> bytes | None:
        with self._session() as session:
            return session.scalar(select(KeptImage.data).where(KeptImage.sha256 == sha256))

    def delete_image(self, sha256: str) -> bool:
        with self._session.begin() as session:
            row = session.get(KeptImage, sha256)
            if row is None:
                return False
            session.delete(row)
            return True


def _unreachable_is_unavailable(engine: Engine, retry_after: int) -> None:
    """A database that refuses or drops the connection raises StoreUnavailable; other database
    errors (a missing table, a constraint) stay what they are."""

    @event.listens_for(engine, "handle_error")
    def _unavailable(context: ExceptionContext) -> None:
        connecting = context.connection is None and isinstance(context.sqlalchemy_exception, OperationalError)
        if context.is_disconnect or connecting:
            raise StoreUnavailable(
                f"the store cannot be reached; retry in {retry_after} s", retry_after
            ) from context.original_exception


def _engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            # WAL lets readers go on while one writer writes (several worker threads)
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
