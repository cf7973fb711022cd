"""Operator accounts and console sessions, in the database.

Passwords are hashed with argon2id (argon2-cffi's defaults, RFC 9106's second recommended
parameter set) and re-hashed at login when those defaults change. A session is a random
token in an HttpOnly cookie; the table keeps only its SHA-256, with the CSRF token the
session's forms carry. Disabling an account or resetting its password ends its sessions,
and a session of a disabled account is refused even if a row were left.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Engine, delete, insert, select, update

from refundbridge.core.access import ConsoleSession, OperatorAccount, OperatorRole, Principal
from refundbridge.core.errors import InvalidRequest, NotFound
from refundbridge.store import tables as t
from refundbridge.store.mapping import aware

NAME = re.compile(r"^[\w][\w.@-]{1,63}$")
PASSWORD_MIN = 10
PASSWORD_MAX = 1024  # argon2 takes any length; a megabyte "password" only costs us CPU


def check_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise InvalidRequest("name", "2 to 64 letters, digits, '.', '@', '_' or '-', "
                                     "starting with a letter or digit")
    return name


def check_password(password: str) -> str:
    if len(password) < PASSWORD_MIN:
        raise InvalidRequest("password", f"at least {PASSWORD_MIN} characters")
    if len(password) > PASSWORD_MAX:
        raise InvalidRequest("password", f"at most {PASSWORD_MAX} characters")
    return password


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class SqlOperatorDirectory:
    def __init__(self, engine: Engine, hasher: PasswordHasher | None = None) -> None:
        self._engine = engine
        self._hasher = hasher or PasswordHasher()
        self._decoy_hash: str | None = None

    @property
    def _decoy(self) -> str:
        # Verified against when the name is unknown, so that an unknown name takes as long
        # as a wrong password and a login's timing does not tell which names exist. Made on
        # first use: hashing costs tens of milliseconds, and most processes never log in.
        if self._decoy_hash is None:
            self._decoy_hash = self._hasher.hash(secrets.token_hex(16))
        return self._decoy_hash

    def add(self, name: str, role: OperatorRole, shops: Sequence[str], password: str) -> None:
        check_name(name)
        check_password(password)
        if role is not OperatorRole.ADMIN and not shops:
            raise InvalidRequest("shops", f"a {role.value} needs at least one shop (--shop)")
        now = datetime.now(UTC)
        with self._engine.begin() as conn:
            if conn.execute(select(t.operators.c.name)
                            .where(t.operators.c.name == name)).first() is not None:
                raise InvalidRequest("name", f"an operator '{name}' exists already")
            conn.execute(insert(t.operators).values(
                name=name, role=role.value,
                shops=[] if role is OperatorRole.ADMIN else sorted(set(shops)),
                password_hash=self._hasher.hash(password), created_at=now,
                password_changed_at=now, disabled_at=None))

    def accounts(self) -> list[OperatorAccount]:
        with self._engine.connect() as conn:
            rows = conn.execute(select(t.operators).order_by(t.operators.c.name)).all()
        return [OperatorAccount(r.name, OperatorRole(r.role), tuple(r.shops),
                                aware(r.created_at),
                                aware(r.disabled_at) if r.disabled_at else None) for r in rows]

    def account(self, name: str) -> OperatorAccount:
        for account in self.accounts():
            if account.name == name:
                return account
        raise NotFound(f"no operator '{name}'")

    def _change(self, name: str, **values: object) -> None:
        with self._engine.begin() as conn:
            changed = conn.execute(update(t.operators).where(t.operators.c.name == name)
                                   .values(**values)).rowcount
            if not changed:
                raise NotFound(f"no operator '{name}'")
            conn.execute(delete(t.console_sessions)
                         .where(t.console_sessions.c.operator == name))

    def disable(self, name: str) -> None:
        self._change(name, disabled_at=datetime.now(UTC))

    def enable(self, name: str) -> None:
        self._change(name, disabled_at=None)

    def reset_password(self, name: str, password: str) -> None:
        check_password(password)
        self._change(name, password_hash=self._hasher.hash(password),
                     password_changed_at=datetime.now(UTC))

    def authenticate(self, name: str, password: str) -> Principal | None:
        """The operator, if the name and password match an enabled account."""
        with self._engine.connect() as conn:
            row = conn.execute(select(t.operators).where(t.operators.c.name == name)).first()
        stored = row.password_hash if row is not None else self._decoy
        try:
            self._hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return None
        if row is None or row.disabled_at is not None:
            return None
        if self._hasher.check_needs_rehash(stored):
            with self._engine.begin() as conn:
                conn.execute(update(t.operators).where(t.operators.c.name == name)
                             .values(password_hash=self._hasher.hash(password)))
        return self._principal(row)

    @staticmethod
    def _principal(row: object) -> Principal:
        account = OperatorAccount(row.name, OperatorRole(row.role),  # type: ignore[attr-defined]
                                  tuple(row.shops),  # type: ignore[attr-defined]
                                  aware(row.created_at), None)  # type: ignore[attr-defined]
        return account.principal()

    def start_session(self, name: str, now: datetime, lifetime_seconds: float
                      ) -> tuple[str, str]:
        """A new session (its cookie value and CSRF token). Expired rows go at the same
        time, so the table holds only live sessions."""
        session_id = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        with self._engine.begin() as conn:
            conn.execute(delete(t.console_sessions)
                         .where(t.console_sessions.c.expires_at < now))
            conn.execute(insert(t.console_sessions).values(
                id_hash=_digest(session_id), operator=name, csrf_token=csrf, created_at=now,
                expires_at=now + timedelta(seconds=lifetime_seconds)))
        return session_id, csrf

    def session(self, session_id: str, now: datetime) -> ConsoleSession | None:
        s, o = t.console_sessions.c, t.operators.c
        with self._engine.connect() as conn:
            row = conn.execute(
                select(s.csrf_token, s.expires_at, o.name, o.role, o.shops, o.created_at)
                .join_from(t.console_sessions, t.operators, s.operator == o.name)
                .where(s.id_hash == _digest(session_id), o.disabled_at.is_(None))).first()
        if row is None or aware(row.expires_at) <= now:
            return None
        return ConsoleSession(self._principal(row), row.csrf_token, aware(row.expires_at))

    def end_session(self, session_id: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(delete(t.console_sessions)
                         .where(t.console_sessions.c.id_hash == _digest(session_id)))
