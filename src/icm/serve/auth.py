"""API keys: created once and shown once, stored only as a SHA-256, sent as ``Authorization:
Bearer`` (what the openai client sends), each with scopes.

Keys are 256-bit random tokens, so a fast hash is enough (no password stretching is needed: there
is nothing to guess); lookups are by hash."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from icm.errors import InputError
from icm.serve.errors import Forbidden, Unauthorized
from icm.serve.store.database import Store

KEY_PREFIX = "icm_"


class Scope(StrEnum):
    """What a key may do. ``admin`` may do everything, ``review`` reads every stored result,
    ``moderate`` judges images and reads the results it made."""

    moderate = "moderate"
    review = "review"
    admin = "admin"


_IMPLIES = {
    Scope.admin: {Scope.admin, Scope.review, Scope.moderate},
    Scope.review: {Scope.review},
    Scope.moderate: {Scope.moderate},
}


@dataclass(frozen=True)
class Caller:
    """The key a request was made with."""

    key_id: str
    name: str
    scopes: frozenset[Scope]

    def has(self, scope: Scope) -> bool:
        return scope in self.scopes


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def parse_scopes(scopes: Iterable[str]) -> list[Scope]:
    out: list[Scope] = []
    for scope in scopes:
        try:
            out.append(Scope(scope))
        except ValueError:
            raise InputError(f"unknown scope {scope!r}; known: {', '.join(Scope)}") from None
    if not out:
        raise InputError("a key needs at least one scope")
    return out


def create_key(store: Store, name: str, scopes: Iterable[str]) -> tuple[str, str]:
    """A new key: returns (key id, the key itself). Only the key's hash is stored."""
    if not name.strip():
        raise InputError("a key needs a name")
    checked = parse_scopes(scopes)
    key_id = "key_" + secrets.token_hex(6)
    secret = f"{KEY_PREFIX}{secrets.token_urlsafe(32)}"
    store.add_key(key_id, name.strip(), [s.value for s in checked], hash_key(secret))
    return key_id, secret


def authenticate(store: Store, authorization: str | None) -> Caller:
    """The caller of an ``Authorization: Bearer KEY`` header, or Unauthorized."""
    if not authorization:
        raise Unauthorized("no API key: send the header Authorization: Bearer YOUR_KEY")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header must be 'Bearer YOUR_KEY'")
    row = store.key_by_hash(hash_key(token.strip()))
    if row is None or row.revoked_at is not None:
        raise Unauthorized("the API key is unknown or revoked")
    scopes = frozenset(s for scope in row.scopes.split(",") if scope for s in _IMPLIES[Scope(scope)])
    return Caller(key_id=row.id, name=row.name, scopes=scopes)


def require(caller: Caller, scope: Scope) -> Caller:
    if not caller.has(scope):
        raise Forbidden(f"this key ({caller.key_id}) lacks the scope {scope.value!r}")
    return caller
