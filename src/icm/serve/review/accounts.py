"""Console accounts: users with argon2-hashed passwords (argon2-cffi), logins that lock an
account after repeated failures, and browser sessions whose cookie token is kept only as a hash."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from icm.errors import InputError
from icm.serve.errors import Unauthorized
from icm.serve.store.models import User, utcnow
from icm.serve.store.reviews import ReviewStore

MIN_PASSWORD = 10
_HASHER = PasswordHasher()
# verified when the user does not exist, so that an unknown name takes as long as a wrong password
_DUMMY = _HASHER.hash("icm-no-such-user")


class Role(StrEnum):
    reviewer = "reviewer"
    admin = "admin"


class LoginFailed(Unauthorized):
    code = "login_failed"


class AccountLocked(Unauthorized):
    http_status = 423
    code = "locked"


@dataclass(frozen=True)
class Login:
    """A new browser session: the cookie's token (shown to the browser only) and its CSRF token."""

    user: User
    token: str
    csrf: str


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


# who the audit log names for an account change made by a Python caller
LIBRARY_ACTOR = "library"


def create_user(reviews: ReviewStore, username: str, password: str, role: str, actor: str = LIBRARY_ACTOR) -> User:
    """A new reviewer or admin, audited as made by ``actor``; the password is kept only as an
    argon2id hash."""
    username = username.strip()
    if not username or len(username) > 80 or any(c.isspace() for c in username):
        raise InputError("a username is 1 to 80 characters without spaces")
    try:
        checked = Role(role)
    except ValueError:
        raise InputError(f"unknown role {role!r}; known: {', '.join(Role)}") from None
    if len(password) < MIN_PASSWORD:
        raise InputError(f"a password has at least {MIN_PASSWORD} characters")
    return reviews.add_user(username, checked.value, _HASHER.hash(password), actor=actor)


def _named(reviews: ReviewStore, username: str) -> User:
    user = reviews.user_by_name(username)
    if user is None:
        raise InputError(f"no user {username!r}")
    return user


def set_password(reviews: ReviewStore, username: str, password: str, actor: str = LIBRARY_ACTOR) -> int:
    """A new password for ``username`` (audited as set by ``actor``); it lifts a lockout and ends
    every session of the user (a browser logged in with the old password is logged out).
    Returns how many ended."""
    user = _named(reviews, username)
    if len(password) < MIN_PASSWORD:
        raise InputError(f"a password has at least {MIN_PASSWORD} characters")
    return reviews.set_password(user.id, _HASHER.hash(password), actor=actor, target=f"user:{username}")


def set_disabled(reviews: ReviewStore, username: str, disabled: bool,
                 actor: str = LIBRARY_ACTOR) -> tuple[User, int]:
    """Disable ``username`` (no login, every session ended, their leases released) or enable it
    again, audited as done by ``actor``. Returns the user as it was before and how many sessions
    ended."""
    user = _named(reviews, username)
    return user, reviews.set_disabled(user.id, disabled, actor=actor)


def failed_login_actor(reviews: ReviewStore, username: str) -> str:
    """Who the audit log names for a failed login: the account's name when it exists; otherwise a
    hash of what was typed, never the text itself (it is often a password typed in the wrong field)."""
    if reviews.user_by_name(username.strip()) is not None:
        return f"login:{username.strip()}"
    return "login:unknown:" + hashlib.sha256(username.encode("utf-8")).hexdigest()[:16]


def log_in(reviews: ReviewStore, username: str, password: str, *, max_failures: int, lockout: timedelta,
           lifetime: timedelta) -> Login:
    """Check a password and open a session; ``max_failures`` wrong passwords in a row lock the
    account for ``lockout`` (a locked account is refused even with the right password)."""
    user = reviews.user_by_name(username.strip())
    if user is None or user.disabled_at is not None:
        _verify(_DUMMY, password)
        raise LoginFailed("wrong username or password")
    if user.locked_until is not None and user.locked_until > utcnow():
        raise AccountLocked("this account is locked after repeated failed logins; try again later")
    if not _verify(user.password_hash, password):
        after = reviews.login_failed(user.id, max_failures, lockout)
        if after.locked_until is not None and after.locked_until > utcnow():
            raise AccountLocked("this account is now locked after repeated failed logins; try again later")
        raise LoginFailed("wrong username or password")
    reviews.login_succeeded(user.id)
    if _HASHER.check_needs_rehash(user.password_hash):
        reviews.set_password(user.id, _HASHER.hash(password), end_sessions=False)
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    reviews.add_session(hash_token(token), user.id, csrf, lifetime)
    return Login(user, token, csrf)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def same_token(given: str | None, expected: str) -> bool:
    """A constant-time comparison of a submitted CSRF token."""
    return given is not None and secrets.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))
