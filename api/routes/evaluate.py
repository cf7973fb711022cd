"""`POST /v1/evaluate`: what the rules would decide for a request, storing nothing."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool

from refundbridge.api.deps import AppDeps, Operator
from refundbridge.api.schemas import read_evaluation
from refundbridge.core import services
from refundbridge.core.policy import at_noon

router = APIRouter(prefix="/v1", tags=["evaluate"])


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


@router.post("/evaluate", openapi_extra=DOC, summary="Preview the rules' decision")
async def evaluate(
    request: Request, deps: AppDeps, operator: Operator,
    shop: Annotated[str, Query(min_length=1, description="The shop whose policy applies")],
    at: Annotated[date | None, Query(description="Evaluate as of this day "
                                                 "(default: now)")] = None,
) -> dict[str, Any]:
    operator.require_shop(shop, f"shop '{shop}'")
    policy = deps.shop_policy(shop)
    raw = await request.body()
    refund_request, inspections = read_evaluation(raw)
    svc = deps.api_services
    now = at_noon(at, policy.timezone) if at else svc.clock()
    decision = await run_in_threadpool(services.preview, svc, shop, refund_request, now,
                                       inspections)
    return {**decision.as_json(), "shop": shop, "evaluated_at": now.isoformat()}
