"""FastAPI dependencies: what the routes need, as ports, and the operator's bearer token.

`ApiDeps` is what the app is built around; the composition root
(`refundbridge.bootstrap.Container`) provides it, and nothing in `api/` imports that. Each
route asks only for what it uses: the services, the case reads, the recall register, a
shop's policy, a webhook receiver.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from typing import Annotated, Protocol

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr
from redis import Redis

from refundbridge.core.ports import WebhookReceiver
from refundbridge.core.recalls import RecallRegister
from refundbridge.core.rules import ShopPolicy
from refundbridge.core.services import Services
from refundbridge.store.queries import CaseReads


class ApiSettings(Protocol):
    @property
    def operator_tokens(self) -> Sequence[SecretStr]: ...

    @property
    def api_threads(self) -> int: ...

    @property
    def max_body_bytes(self) -> int: ...

    @property
    def redis_url(self) -> str | None: ...


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
    def redis(self) -> Redis: ...

    def shop_policy(self, shop_id: str) -> ShopPolicy:
        """The shop's policy; `NotFound` for a shop that is not configured."""
        ...

    def webhook_receiver(self, shop_id: str, connector: str) -> WebhookReceiver | None: ...


def get_deps(request: Request) -> ApiDeps:
    deps: ApiDeps = request.app.state.deps
    return deps


def get_services(request: Request) -> Services:
    return get_deps(request).api_services


def get_reads(request: Request) -> CaseReads:
    return get_deps(request).reads


def get_recalls(request: Request) -> RecallRegister:
    return get_deps(request).recalls


AppDeps = Annotated[ApiDeps, Depends(get_deps)]
ServicesDep = Annotated[Services, Depends(get_services)]
ReadsDep = Annotated[CaseReads, Depends(get_reads)]
RecallsDep = Annotated[RecallRegister, Depends(get_recalls)]


def token_is_valid(tokens: Sequence[SecretStr], authorization: str | None) -> bool:
    if not authorization or not authorization.startswith("Bearer "):
        return False
    offered = authorization.removeprefix("Bearer ").strip().encode()
    valid = False
    # Compare against every token (no early exit) so timing reveals nothing.
    for token in tokens:
        valid |= hmac.compare_digest(offered, token.get_secret_value().encode())
    return valid


# Declares the scheme in OpenAPI (so /docs has "Authorize"); the check stays ours, below.
operator_bearer = HTTPBearer(auto_error=False, scheme_name="operatorToken",
                             description="An operator token from the `operator_tokens` "
                                         "setting, sent as `Authorization: Bearer <token>`.")


def require_operator(request: Request, deps: AppDeps,
                     _: Annotated[HTTPAuthorizationCredentials | None,
                                  Depends(operator_bearer)]) -> str:
    if not token_is_valid(deps.settings.operator_tokens, request.headers.get("authorization")):
        raise HTTPException(401, "Unauthorized")
    return "operator"


Operator = Annotated[str, Depends(require_operator)]
