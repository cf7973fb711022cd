"""Who may do what: operator roles, their permissions, and the shops a caller may reach.

A `Principal` is whoever is calling: an operator logged in to the console, or a machine with
an API token. Routes check a permission (`require`) and a shop (`sees`); the principal's
`actor` is what the audit trail records, so nobody types their own name into a decision.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from refundbridge.core.errors import Forbidden, NotFound


class OperatorRole(StrEnum):
    ADMIN = "admin"  # everything, every shop
    REVIEWER = "reviewer"  # decides cases; retries, cancels, resends
    WAREHOUSE = "warehouse"  # records receipts
    AUDITOR = "auditor"  # reads and exports, nothing else
    QUALITY = "quality"  # the quality manager: recall campaigns; reads and exports


class Permission(StrEnum):
    READ = "read"
    DECIDE = "decide"  # approve or deny a case; claim it
    RECEIVE = "receive"  # record returned goods and their inspection
    OPERATE = "operate"  # retry, cancel, resend or waive a message, requeue a job
    EXPORT = "export"  # evidence packages
    MANAGE = "manage"  # the recall list, operators
    RECALL = "recall"  # open and close recall campaigns
    CAPA = "capa"  # open CAPA records and take them through their steps


ROLE_PERMISSIONS: dict[OperatorRole, frozenset[Permission]] = {
    OperatorRole.ADMIN: frozenset(Permission),
    OperatorRole.REVIEWER: frozenset({Permission.READ, Permission.DECIDE, Permission.OPERATE,
                                      Permission.EXPORT}),
    OperatorRole.WAREHOUSE: frozenset({Permission.READ, Permission.RECEIVE}),
    OperatorRole.AUDITOR: frozenset({Permission.READ, Permission.EXPORT}),
    OperatorRole.QUALITY: frozenset({Permission.READ, Permission.EXPORT, Permission.RECALL,
                                     Permission.CAPA}),
}


@dataclass(frozen=True, slots=True)
class Principal:
    """`shops` None: every shop (admins, and tokens given `["*"]`)."""

    name: str
    role: OperatorRole
    shops: frozenset[str] | None
    kind: str = "operator"  # or "token"

    @property
    def actor(self) -> str:
        """How the audit trail names this caller: `operator:<name>` or `token:<name>`."""
        return f"{self.kind}:{self.name}"

    def may(self, permission: Permission) -> bool:
        return permission in ROLE_PERMISSIONS[self.role]

    def require(self, permission: Permission) -> None:
        if not self.may(permission):
            raise Forbidden(f"the {self.role.value} role may not {permission.value}")

    def sees(self, shop_id: str) -> bool:
        return self.shops is None or shop_id in self.shops

    def require_shop(self, shop_id: str, what: str) -> None:
        """Raise `NotFound` naming `what` (as for a thing that does not exist) when the
        shop is not this caller's."""
        if not self.sees(shop_id):
            raise NotFound(f"no {what}")

    def visible(self, shops: Collection[str]) -> list[str]:
        return sorted(s for s in shops if self.sees(s))


@dataclass(frozen=True, slots=True)
class OperatorAccount:
    name: str
    role: OperatorRole
    shops: tuple[str, ...]  # empty for an admin: every shop
    created_at: datetime
    disabled_at: datetime | None

    def principal(self) -> Principal:
        every = self.role is OperatorRole.ADMIN or "*" in self.shops
        return Principal(self.name, self.role, None if every else frozenset(self.shops))


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    principal: Principal
    csrf_token: str
    expires_at: datetime


class OperatorDirectory(Protocol):
    """The operator accounts and their console sessions (store/operators.py)."""

    def add(self, name: str, role: OperatorRole, shops: Sequence[str], password: str) -> None: ...

    def accounts(self) -> list[OperatorAccount]: ...

    def disable(self, name: str) -> None: ...

    def reset_password(self, name: str, password: str) -> None: ...

    def authenticate(self, name: str, password: str) -> Principal | None: ...

    def start_session(self, name: str, now: datetime, lifetime_seconds: float
                      ) -> tuple[str, str]: ...

    def session(self, session_id: str, now: datetime) -> ConsoleSession | None: ...

    def end_session(self, session_id: str) -> None: ...
