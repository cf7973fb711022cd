"""`POST /webhooks/{shop}/{connector}`: signed messages from storefronts and providers."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute

from refundbridge.api.deps import ApiDeps, AppDeps, get_deps
from refundbridge.core import services
from refundbridge.core.errors import (
    DuplicateDelivery,
    InvalidRequest,
    NotFound,
    WebhookRejected,
)
from refundbridge.core.money import Money
from refundbridge.core.ports import (
    AsyncIntakeWriter,
    ExternalRefund,
    RefundRequested,
    RefundUpdate,
    SmsSender,
    WebhookAck,
    WebhookEvent,
    WebhookReceiver,
)
from refundbridge.core.request import (
    BIGINT_MAX,
    EXTERNAL_ID_MAX,
    ORDER_ID_MAX,
    PROVIDER_REF_MAX,
    NormalizedRefundRequest,
    check_text,
)

router = APIRouter(tags=["webhooks"])
log = logging.getLogger("refundbridge.webhooks")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

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


def receiver_for(deps: ApiDeps, shop_id: str, connector: str) -> WebhookReceiver:
    receiver = deps.webhook_receiver(shop_id, connector)
    if receiver is None:
        raise NotFound(NO_RECEIVER)
    return receiver


def handle(deps: ApiDeps, shop_id: str, connector: str, headers: dict[str, str],
           body: bytes) -> Response:
    receiver = receiver_for(deps, shop_id, connector)
    svc = deps.api_services
    try:
        event = receiver.parse_webhook(headers, body, svc.clock())
        check_storable(event)
        outcome = services.apply_webhook_event(svc, shop_id, connector, event)
    except (WebhookRejected, InvalidRequest, DuplicateDelivery) as exc:
        log_refusal(shop_id, connector, exc)
        raise
    return respond(receiver, event, outcome)


async def handle_on_loop(deps: ApiDeps, intake: AsyncIntakeWriter, receiver: WebhookReceiver,
                         shop_id: str, connector: str, headers: dict[str, str],
                         body: bytes) -> Response:
    """`handle` for a receiver that parses offline, on the event loop: a new request's case
    is stored by awaiting `intake`, its one round trip, with no thread taken."""
    svc = deps.api_services
    try:
        event = receiver.parse_webhook(headers, body, svc.clock())
        check_storable(event)
        if isinstance(event, RefundRequested):
            new = services.open_new_case(svc, shop_id, connector, event.request,
                                         event.fingerprint)
            outcome: services.WebhookOutcome = services.received(new, await intake.open_case(
                new.case, connector, new.external_id, new.fingerprint))
        else:
            outcome = await run_in_threadpool(services.apply_webhook_event, svc, shop_id,
                                              connector, event)
    except (WebhookRejected, InvalidRequest, DuplicateDelivery) as exc:
        log_refusal(shop_id, connector, exc)
        raise
    return respond(receiver, event, outcome)


def respond(receiver: WebhookReceiver, event: WebhookEvent,
            outcome: services.WebhookOutcome) -> Response:
    # Some providers retry until they read their own word for "received" (Alipay: success).
    ack = receiver.acknowledgement
    if ack is not None and not isinstance(event, RefundRequested):
        return Response(ack.body, status_code=ack.status, media_type=ack.media_type)
    return answer_for(outcome)


def log_refusal(shop_id: str, connector: str, exc: Exception) -> None:
    """Why a webhook was refused, for the operator (the sender reads it in the answer).
    Our own words only: never the body, a header's value or a secret."""
    kind = ("rejected" if isinstance(exc, WebhookRejected)  # signature, timestamp, format
            else "conflict" if isinstance(exc, DuplicateDelivery) else "invalid")
    reason = exc.message if isinstance(exc, WebhookRejected | InvalidRequest) else str(exc)
    reason = _CONTROL.sub("?", reason)[:300]
    log.warning("webhook refused (%s): %s", kind, reason,
                extra={"shop": shop_id, "connector": connector, "refusal": kind,
                       "reason": reason})


def answer_for(outcome: services.WebhookOutcome) -> JSONResponse:
    """The HTTP answer to what a webhook did."""
    if isinstance(outcome, services.Received):
        url = f"/v1/cases/{outcome.case_id}"
        return JSONResponse(
            {"case_id": outcome.case_id, "case_url": url, "duplicate": not outcome.created},
            status_code=202 if outcome.created else 200, headers={"Location": url})
    if isinstance(outcome, services.RefundNewsApplied):
        answer: dict[str, Any] = {"case_id": outcome.case_id, "applied": outcome.applied}
        if outcome.reason:
            answer["reason"] = outcome.reason
        return JSONResponse(answer)
    if isinstance(outcome, services.ExternalRefundRecorded):
        return JSONResponse({"order_id": outcome.order_id,
                             "external_refund": outcome.external_id,
                             "recorded": outcome.recorded})
    return JSONResponse({"ignored": outcome.reason})


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


class UnresolvedRoute(APIRoute):
    """A route FastAPI documents from its endpoint's signature but calls without resolving
    it: the endpoint takes `request` and its path parameters, as the strings the path gave
    (what FastAPI would pass for `str` parameters). On the busiest route FastAPI's
    resolution of two path parameters cost 2 % of intake's CPU (README.md, Benchmarks). For an
    endpoint with no dependency, query, header or body parameter."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        dependant = self.dependant
        if (dependant.dependencies or dependant.query_params or dependant.header_params
                or dependant.cookie_params or dependant.body_params):
            # Nothing would resolve them: refused when the route is built, not ignored.
            raise TypeError(f"{self.path}: an UnresolvedRoute's endpoint takes only "
                            "`request` and path parameters")
        endpoint = self.endpoint

        async def handler(request: Request) -> Response:
            response: Response = await endpoint(request=request, **request.path_params)
            return response

        return handler


async def receive_webhook(shop: str, connector: str, request: Request) -> Response:
    # Who receives it is known before a byte of the body is read; the body itself is
    # bounded by `max_body_bytes` (api.middleware). The deps are read off the app, not
    # resolved as a dependency: the busiest route skips FastAPI's resolution for them.
    deps = get_deps(request)
    receiver = receiver_for(deps, shop, connector)
    body = await request.body()
    headers = dict(request.headers)
    intake: AsyncIntakeWriter | None = getattr(request.app.state, "intake", None)
    if intake is not None and getattr(receiver, "parses_offline", False):
        # A thread per request costs more CPU than the request's own work: the threads
        # hand the GIL to one another around every wait.
        return await handle_on_loop(deps, intake, receiver, shop, connector, headers, body)
    return await run_in_threadpool(handle, deps, shop, connector, headers, body)


router.add_api_route("/webhooks/{shop}/{connector}", receive_webhook, methods=["POST"],
                    summary="Receive a signed webhook", openapi_extra=REQUEST_BODY_DOC,
                    route_class_override=UnresolvedRoute)


def sms_sender_for(deps: ApiDeps, shop_id: str, connector: str) -> SmsSender:
    """The shop's SMS connector of that name; 404 (one answer) for anything else."""
    try:
        sender = deps.api_services.gateways(shop_id).sms
    except NotFound:
        sender = None
    if sender is None or sender.name != connector:
        raise NotFound(NO_RECEIVER)
    return sender


def handle_sms_callback(deps: ApiDeps, shop_id: str, connector: str, url: str,
                        headers: dict[str, str], body: bytes) -> Response:
    sender = sms_sender_for(deps, shop_id, connector)
    svc = deps.api_services
    callback = sender.parse_callback(url, headers, body, svc.clock())
    applied = services.apply_sms_callback(svc, shop_id, connector, callback)
    ack: WebhookAck | None = getattr(sender, "acknowledgement", None)
    if ack is not None:
        return Response(ack.body, status_code=ack.status, media_type=ack.media_type)
    return JSONResponse({"reports": applied.reports, "unknown": applied.unknown,
                         "opted_out": applied.opted_out})


def signed_url(deps: ApiDeps, request: Request) -> str:
    """The URL the provider posted to, as it signed it: `public_base_url` (where the
    providers reach us, behind any proxy) with the request's path and query."""
    base = getattr(deps.settings, "public_base_url", None)
    if not base:
        return str(request.url)
    query = request.url.query
    return str(base).rstrip("/") + request.url.path + (f"?{query}" if query else "")


SMS_CALLBACK_DOC: dict[str, Any] = {
    "responses": {
        "200": {"description": "Applied: the provider's own acknowledgement where it wants "
                               "one, else counts of reports applied and numbers opted out"},
        "401": {"description": "Bad signature (or, for Aliyun and Tencent, a wrong secret "
                               "in the path)"},
        "404": {"description": "Unknown shop, or not the shop's SMS connector"},
    },
}


@router.post("/webhooks/{shop}/{connector}/callback", openapi_extra=SMS_CALLBACK_DOC,
             summary="Receive an SMS provider's delivery reports and replies")
async def receive_sms_callback(shop: str, connector: str, request: Request,
                               deps: AppDeps) -> Response:
    sms_sender_for(deps, shop, connector)
    body = await request.body()
    return await run_in_threadpool(handle_sms_callback, deps, shop, connector,
                                   signed_url(deps, request), dict(request.headers), body)


@router.post("/webhooks/{shop}/{connector}/callback/{secret}", openapi_extra=SMS_CALLBACK_DOC,
             summary="Receive SMS delivery reports at a secret URL (Aliyun, Tencent)")
async def receive_sms_callback_at_secret(shop: str, connector: str, secret: str,
                                         request: Request, deps: AppDeps) -> Response:
    # The connector checks the last path segment against its per-shop secret.
    return await receive_sms_callback(shop, connector, request, deps)


def openapi_schemas() -> dict[str, Any]:
    """The normalized request's JSON schema, for the OpenAPI document."""
    schema = NormalizedRefundRequest.model_json_schema(
        ref_template="#/components/schemas/{model}")
    defs = schema.pop("$defs", {})
    return {"NormalizedRefundRequest": schema, **defs}
