"""FastAPI dependencies: the container, and the operator's bearer token."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from refundbridge.bootstrap import Container


def get_container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


ContainerDep = Annotated[Container, Depends(get_container)]


def token_is_valid(container: Container, authorization: str | None) -> bool:
    if not authorization or not authorization.startswith("Bearer "):
        return False
    offered = authorization.removeprefix("Bearer ").strip().encode()
    valid = False
    # Compare against every token (no early exit) so timing reveals nothing.
    for token in container.settings.operator_tokens:
        valid |= hmac.compare_digest(offered, token.get_secret_value().encode())
    return valid


# Declares the scheme in OpenAPI (so /docs has "Authorize"); the check stays ours, below.
operator_bearer = HTTPBearer(auto_error=False, scheme_name="operatorToken",
                             description="An operator token from the `operator_tokens` "
                                         "setting, sent as `Authorization: Bearer <token>`.")


def require_operator(request: Request, container: ContainerDep,
                     _: Annotated[HTTPAuthorizationCredentials | None,
                                  Depends(operator_bearer)]) -> str:
    if not token_is_valid(container, request.headers.get("authorization")):
        raise HTTPException(401, "Unauthorized")
    return "operator"


Operator = Annotated[str, Depends(require_operator)]
