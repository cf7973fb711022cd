"""`POST /webhooks/{shop}/{connector}`: signed messages from storefronts and providers."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from api.deps import ContainerDep
from core import services
from core.errors import InvalidRequest, NotFound
from core.money import Money
from core.ports import (
    ExternalRefund,
    Ignored,
    RefundRequested,
    RefundUpdate,
    Role,
    WebhookAck,
    WebhookEvent,
)
from core.request import (
    BIGINT_MAX,
    EXTERNAL_ID_MAX,
    ORDER_ID_MAX,
    PROVIDER_REF_MAX,
    NormalizedRefundRequest,
    check_text,
)
from refundbridge.bootstrap import Container

log = logging.getLogger("refundbridge.api")

router = APIRouter(tags=["webhooks"])

WEBHOOK_ROLES = (Role.STOREFRONT, Role.PAYMENT)

REQUEST_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "For the `generic` connector: the normalized refund request, signed "
                       "with `X-RefundBridge-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "
                       "\"<t>.<raw body>\">`. Other connectors take their provider's format.",
        "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/NormalizedRefundRequest"}}},
    },
    "responses": {
        "202": {"description": "Accepted: a new case (its id and URL)"},
        "200": {"description": "A replay of a known message: the same case"},
        "401": {"description": "Bad or stale signature"},
        "404": {"description": "Unknown shop or connector (one answer for both)"},
        "413": {"description": "The body is larger than `max_body_bytes`"},
        "409": {"description": "Known external_id with a different body"},
        "422": {"description": "The body does not validate; `errors` names each field"},
        "503": {"description": "A provider we had to ask (a storefront's order look-up) is "
                               "briefly down: send again after `Retry-After` seconds"},
    },
}


# One answer for an unknown shop and for a shop without that connector: an unauthenticated
# caller must not learn which shops are configured.
NO_RECEIVER = "no webhook receiver at this address"


def receiver_for(container: Container, shop_id: str, connector: str) -> Any:
    shop = container.shops.get(shop_id)
    candidates = [shop.connectors.get(role) for role in WEBHOOK_ROLES] if shop else []
    for candidate in candidates:
        if candidate is not None and candidate.name == connector and hasattr(
                candidate, "parse_webhook"):
            return candidate
    raise NotFound(NO_RECEIVER)


def handle(container: Container, shop_id: str, connector: str, headers: dict[str, str],
           body: bytes) -> Response:
    receiver = receiver_for(container, shop_id, connector)
    event = receiver.parse_webhook(headers, body, container.api_services.clock())
    check_storable(event)
    answer = _apply(container, shop_id, connector, event)
    # Some providers retry until they read their own word for "received" (Alipay: success).
    ack: WebhookAck | None = getattr(receiver, "acknowledgement", None)
    if ack is not None and not isinstance(event, RefundRequested):
        return Response(ack.body, status_code=ack.status, media_type=ack.media_type)
    return answer


def _apply(container: Container, shop_id: str, connector: str,
           event: WebhookEvent) -> JSONResponse:
    if isinstance(event, RefundRequested):
        received = services.receive_request(container.api_services, shop_id, connector,
                                            event.request, event.fingerprint)
        status = 202 if received.created else 200
        return JSONResponse(
            {"case_id": received.case_id, "case_url": f"/v1/cases/{received.case_id}",
             "duplicate": not received.created},
            status_code=status, headers={"Location": f"/v1/cases/{received.case_id}"},
        )
    if isinstance(event, RefundUpdate):
        try:
            case_id = services.apply_refund_update(
                container.api_services, event.result, case_id=event.case_id,
                idempotency_key=event.idempotency_key, actor=f"connector:{connector}")
        except NotFound:
            # Signed, so genuine, but about a case this deployment does not have (another
            # deployment on the same account, or test data). Acknowledged: a 404 would be
            # delivered again for days.
            log.warning("%s/%s: refund news for unknown case %r (event %s) acknowledged",
                        shop_id, connector, event.case_id, event.event_id)
            return JSONResponse({"case_id": None, "applied": False,
                                 "reason": "no such case here"})
        return JSONResponse({"case_id": case_id, "applied": case_id is not None})
    if isinstance(event, ExternalRefund):
        recorded = services.record_external_refund(container.api_services, shop_id, event)
        return JSONResponse({"order_id": event.order_id, "external_refund": event.external_id,
                             "recorded": recorded})
    assert isinstance(event, Ignored)
    return JSONResponse({"ignored": event.reason})


def check_storable(event: WebhookEvent) -> None:
    """What a connector reports must fit the columns it is stored in (a normalized request
    checks itself): refused here with a 422 rather than failing inside a transaction."""
    limits: list[tuple[str, str | None, int]] = []
    amount: Money | None = None
    if isinstance(event, ExternalRefund):
        limits = [("order_id", event.order_id, ORDER_ID_MAX),
                  ("external_id", event.external_id, EXTERNAL_ID_MAX)]
        amount = event.amount
    elif isinstance(event, RefundUpdate):
        limits = [("provider_ref", event.result.provider_ref, PROVIDER_REF_MAX)]
        amount = event.result.amount
    for field, value, longest in limits:
        if value is not None:
            check_text(value, field)
            if len(value) > longest:
                raise InvalidRequest(field, f"longer than {longest} characters")
    if amount is not None and abs(amount.minor) > BIGINT_MAX:
        raise InvalidRequest("amount", "too large to be an amount of money")


@router.post("/webhooks/{shop}/{connector}", openapi_extra=REQUEST_BODY_DOC,
             summary="Receive a signed webhook")
async def receive_webhook(shop: str, connector: str, request: Request,
                          container: ContainerDep) -> Response:
    # Who receives it is known before a byte of the body is read; the body itself is
    # bounded by `max_body_bytes` (api.middleware).
    receiver_for(container, shop, connector)
    body = await request.body()
    headers = dict(request.headers)
    return await run_in_threadpool(handle, container, shop, connector, headers, body)


def openapi_schemas() -> dict[str, Any]:
    """The normalized request's JSON schema, for the OpenAPI document."""
    schema = NormalizedRefundRequest.model_json_schema(
        ref_template="#/components/schemas/{model}")
    defs = schema.pop("$defs", {})
    return {"NormalizedRefundRequest": schema, **defs}
