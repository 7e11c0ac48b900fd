"""Accounts and sessions: argon2 password hashes, signed session cookies, CSRF tokens.

A session cookie is signed (Starlette's SessionMiddleware, itsdangerous) with a secret that is never
stored: it comes from the environment variable ``review.secret_env`` names, or is made at random when
the server starts. The cookie holds the account id and name, the store's fingerprint (a cookie made
for another store is refused even with the same secret), the account's password epoch (a reset or
a new password ends the sessions of the old one; a cookie from before epochs existed logs in again)
and the CSRF token every form carries.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from store import Store
from store import review as review_store
from store.review import Account

HASHER = PasswordHasher()
_DUMMY_HASH = HASHER.hash("not a password")  # verified for unknown names, so timing tells nothing


class NotLoggedIn(Exception):
    """A request without a valid session."""


class MustChangePassword(Exception):
    """The account still has its one-time password: it must choose its own before anything else."""


class Forbidden(Exception):
    """A logged-in account asking for what its role does not allow, or a bad CSRF token."""


def new_password(nbytes: int) -> str:
    return secrets.token_urlsafe(nbytes)


def hash_password(password: str) -> str:
    return HASHER.hash(password)


def add_account(store: Store, name: str, role: str, nbytes: int) -> str:
    """Create an account and return its one-time password (only its argon2 hash is stored)."""
    password = new_password(nbytes)
    review_store.add_user(store, name, role, hash_password(password))
    return password


def reset_account(store: Store, name: str, nbytes: int) -> str:
    """A new one-time password for an existing account (only its hash is stored). Every session of
    the account ends: it was opened with the old password (``account_of``)."""
    password = new_password(nbytes)
    review_store.reset_password(store, name, hash_password(password))
    return password


def check_password(store: Store, name: str, password: str) -> Account | None:
    """The account when name and password match an active account, else ``None``."""
    account = review_store.user_by_name(store, name)
    try:
        HASHER.verify(account.password_hash if account else _DUMMY_HASH, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if account is None or not account.active:
        return None
    if HASHER.check_needs_rehash(account.password_hash):
        review_store.set_password_hash(store, account.id, HASHER.hash(password))
        account = review_store.user_by_id(store, account.id)
    return account


def change_password(store: Store, account: Account, new: str, again: str, min_length: int) -> str | None:
    """Replace the account's password; the reason it cannot be, or ``None`` when done."""
    if new != again:
        return "the two passwords differ"
    if len(new) < min_length:
        return f"choose at least {min_length} characters"
    try:
        same = HASHER.verify(account.password_hash, new)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        same = False
    if same:
        return "choose a new password, not the current one"
    review_store.set_password_hash(store, account.id, HASHER.hash(new), changed_by_user=True)
    return None


def session_secret(env_name: str) -> str:
    """The signing secret: from the environment, or random for this server's life."""
    return os.environ.get(env_name) or secrets.token_urlsafe(32)


def store_fingerprint(store: Store) -> str:
    """Which store a session belongs to (its URL without password, hashed)."""
    return hashlib.sha256(store.safe_url.encode()).hexdigest()[:16]


def csrf_token(session: dict[str, Any]) -> str:
    """The session's CSRF token, made on first use (anonymous sessions get one for the login form)."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(24)
    return session["csrf"]


def check_csrf(session: dict[str, Any], sent: str | None) -> None:
    expected = session.get("csrf")
    if not expected or not sent or not hmac.compare_digest(str(expected), str(sent)):
        raise Forbidden("the form's security token is missing or out of date: reload the page and try again")


def log_in(session: dict[str, Any], account: Account, store: Store) -> None:
    """A fresh session for the account (a new CSRF token: a token seen before login is useless after)."""
    session.clear()
    session.update({"uid": account.id, "name": account.name, "store": store_fingerprint(store),
                    "epoch": account.password_epoch})
    csrf_token(session)


def account_of(session: dict[str, Any], store: Store) -> Account:
    """The session's account, or ``NotLoggedIn`` (no session, another store's, a removed account)."""
    uid, fp = session.get("uid"), session.get("store")
    if uid is None or fp != store_fingerprint(store):
        raise NotLoggedIn
    account = review_store.user_by_id(store, int(uid))
    if (account is None or not account.active or account.name != session.get("name")
            or session.get("epoch") != account.password_epoch):
        session.clear()
        raise NotLoggedIn
    return account
