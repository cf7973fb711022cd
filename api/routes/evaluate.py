"""`POST /v1/evaluate`: what the rules would decide for a request, storing nothing."""

from __future__ import annotations

import json
from datetime import date, datetime, time
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api.deps import ContainerDep, Operator
from api.routes.cases import InspectionIn
from connectors.generic.webhooks import parse_request
from core import services
from core.errors import InvalidRequest
from core.model import Inspection
from core.request import NormalizedRefundRequest, loads_strict

router = APIRouter(prefix="/v1", tags=["evaluate"])


class Inspections(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inspections: list[InspectionIn] = Field(default_factory=list)


REQUEST = {"$ref": "#/components/schemas/NormalizedRefundRequest"}
DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "A normalized refund request, or `{\"request\": <normalized request>, "
                       "\"inspections\": [<inspection>, …]}` to see where inspected units "
                       "would go.",
        "content": {"application/json": {"schema": {"oneOf": [REQUEST, {
            "type": "object", "required": ["request"], "additionalProperties": False,
            "properties": {"request": REQUEST, "inspections": {
                "type": "array", "items": {"$ref": "#/components/schemas/InspectionIn"}}},
        }]}}},
    },
}


def at_noon(day: date, zone: str) -> datetime:
    """'Today' fixed to a date: noon in the shop's calendar, far from either midnight."""
    return datetime.combine(day, time(12), tzinfo=ZoneInfo(zone))


@router.post("/evaluate", openapi_extra=DOC, summary="Preview the rules' decision")
async def evaluate(
    request: Request, container: ContainerDep, _: Operator,
    shop: Annotated[str, Query(min_length=1, description="The shop whose policy applies")],
    at: Annotated[date | None, Query(description="Evaluate as of this day "
                                                 "(default: now)")] = None,
) -> dict[str, Any]:
    runtime = container.shop(shop)
    raw = await request.body()
    refund_request, inspections = read_evaluation(raw)
    svc = container.api_services
    now = at_noon(at, runtime.policy.timezone) if at else svc.clock()
    decision = await run_in_threadpool(services.preview, svc, shop, refund_request, now,
                                       inspections)
    return {**decision.as_json(), "shop": shop, "evaluated_at": now.isoformat()}


def read_evaluation(raw: bytes) -> tuple[NormalizedRefundRequest, list[Inspection]]:
    """A normalized request, or `{"request": …, "inspections": […]}`, as the API and the
    `refundbridge evaluate` command take it. Raises `InvalidRequest` naming the field."""
    document = loads_strict(raw)
    if not (isinstance(document, dict) and "request" in document):
        return parse_request(raw), []
    try:
        extra = Inspections.model_validate(
            {k: v for k, v in document.items() if k != "request"})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidRequest(".".join(str(p) for p in first["loc"]), first["msg"]) from exc
    # Back to JSON text, so the request is validated exactly as a webhook body would be.
    inner = json.dumps(document["request"]).encode()
    try:
        refund_request = parse_request(inner)
    except InvalidRequest as exc:
        raise InvalidRequest(f"request.{exc.field}", exc.message,
                             [(f"request.{f}", m) for f, m in exc.errors]) from exc
    return refund_request, [Inspection(**i.model_dump()) for i in extra.inspections]
