"""FastAPI dependencies: what the routes need, as ports, and the operator's bearer token.

`ApiDeps` is what the app is built around; the composition root
(`refundbridge.bootstrap.Container`) provides it, and nothing in `api/` imports that. Each
route asks only for what it uses: the services, the case reads, the recall register, a
shop's policy, a webhook receiver.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from typing import Annotated, Protocol

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client.registry import Collector
from pydantic import SecretStr
from redis import Redis

from refundbridge.core.access import OperatorDirectory, OperatorRole, Principal
from refundbridge.core.ports import AsyncIntakeWriter, WebhookReceiver
from refundbridge.core.recalls import RecallRegister
from refundbridge.core.rules import ShopPolicy
from refundbridge.core.services import Services
from refundbridge.store.campaigns import SqlCampaignRepository
from refundbridge.store.queries import CaseReads


class TokenSettings(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def token(self) -> SecretStr: ...

    @property
    def role(self) -> OperatorRole: ...

    @property
    def shops(self) -> Sequence[str]: ...


class ConsoleSettings(Protocol):
    @property
    def session_hours(self) -> float: ...

    @property
    def secure_cookies(self) -> bool: ...

    @property
    def login_failures_per_name(self) -> int: ...

    @property
    def login_failures_per_address(self) -> int: ...


class ShopConnectorNames(Protocol):
    def connectors_by_role(self) -> dict[str, str]: ...


class ApiSettings(Protocol):
    @property
    def operator_tokens(self) -> Sequence[SecretStr]: ...

    @property
    def api_tokens(self) -> Sequence[TokenSettings]: ...

    @property
    def console(self) -> ConsoleSettings: ...

    @property
    def api_threads(self) -> int: ...

    @property
    def max_body_bytes(self) -> int: ...

    @property
    def redis_url(self) -> str | None: ...

    @property
    def queue_name(self) -> str: ...

    @property
    def max_dispatches(self) -> int: ...

    @property
    def metrics_token(self) -> SecretStr | None:
        """The scraper's bearer token for `/metrics`; None: no `/metrics`."""
        ...

    @property
    def shops(self) -> Mapping[str, ShopConnectorNames]:
        """Each shop's connector per role (the console's Jobs and KPIs name them)."""
        ...


class ApiDeps(Protocol):
    @property
    def settings(self) -> ApiSettings: ...

    @property
    def api_services(self) -> Services: ...

    @property
    def reads(self) -> CaseReads: ...

    @property
    def recalls(self) -> RecallRegister: ...

    @property
    def campaigns(self) -> SqlCampaignRepository:
        """Recall campaigns, as the API writes them (new work waits for the relay)."""
        ...

    @property
    def redis(self) -> Redis: ...

    @property
    def operators(self) -> OperatorDirectory: ...

    @property
    def shop_ids(self) -> Sequence[str]:
        """Every configured shop."""
        ...

    def shop_policy(self, shop_id: str) -> ShopPolicy:
        """The shop's policy; `NotFound` for a shop that is not configured."""
        ...

    def webhook_receiver(self, shop_id: str, connector: str) -> WebhookReceiver | None: ...

    def async_intake(self) -> AsyncIntakeWriter | None:
        """A new intake the webhook route awaits, for one run of the app (its connections
        belong to that event loop); None: intake takes a thread like any other write."""
        ...

    @property
    def store_gauges(self) -> Collector:
        """The gauges `/metrics` reads from the database at each scrape."""
        ...


def get_deps(request: Request) -> ApiDeps:
    deps: ApiDeps = request.app.state.deps
    return deps


def get_services(request: Request) -> Services:
    return get_deps(request).api_services


def get_reads(request: Request) -> CaseReads:
    return get_deps(request).reads


def get_recalls(request: Request) -> RecallRegister:
    return get_deps(request).recalls


async def _app_deps(request: Request) -> ApiDeps:
    # Async, though it waits on nothing: FastAPI runs a sync dependency on a worker thread,
    # and that hop costs a webhook more CPU than the rest of the dependency resolution.
    return get_deps(request)


AppDeps = Annotated[ApiDeps, Depends(_app_deps)]
ServicesDep = Annotated[Services, Depends(get_services)]
ReadsDep = Annotated[CaseReads, Depends(get_reads)]
RecallsDep = Annotated[RecallRegister, Depends(get_recalls)]


def token_principal(settings: ApiSettings, authorization: str | None) -> Principal | None:
    """Whose bearer token this is, or None."""
    scheme, _, credentials = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():  # the scheme is case-blind
        return None
    offered = credentials.strip().encode()
    found: Principal | None = None
    # Compare against every token (no early exit) so timing reveals nothing.
    for index, token in enumerate(settings.operator_tokens):
        if hmac.compare_digest(offered, token.get_secret_value().encode()):
            found = Principal(f"operator_tokens.{index}", OperatorRole.ADMIN, None, "token")
    for entry in settings.api_tokens:
        if hmac.compare_digest(offered, entry.token.get_secret_value().encode()):
            shops = None if "*" in entry.shops else frozenset(entry.shops)
            found = Principal(entry.name, entry.role, shops, "token")
    return found


# Declares the scheme in OpenAPI (so /docs has "Authorize"); the check stays ours, below.
operator_bearer = HTTPBearer(auto_error=False, scheme_name="operatorToken",
                             description="A token from the `operator_tokens` or `api_tokens` "
                                         "settings, sent as `Authorization: Bearer <token>`.")


def require_operator(request: Request, deps: AppDeps,
                     _: Annotated[HTTPAuthorizationCredentials | None,
                                  Depends(operator_bearer)]) -> Principal:
    principal = token_principal(deps.settings, request.headers.get("authorization"))
    if principal is None:
        raise HTTPException(401, "Unauthorized")
    return principal


Operator = Annotated[Principal, Depends(require_operator)]
