"""The operator API's input models that more than one route (and the command line) read."""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from refundbridge.core.errors import InvalidRequest
from refundbridge.core.model import Inspection
from refundbridge.core.request import (
    MAX_LINES,
    MAX_QUANTITY,
    PERSON_NAME_MAX,
    Line,
    NormalizedRefundRequest,
    UdiScan,
    loads_strict,
    parse_request,
    validation_error,
)


class InspectionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    line: int = Field(ge=0, lt=MAX_LINES, description="Index of the line in the request")
    seal_intact: bool
    condition: Literal["as_new", "damaged", "used"]
    inspector: Line = Field(min_length=1, max_length=PERSON_NAME_MAX)
    udi_scan: UdiScan | None = Field(default=None, max_length=512)
    passed: bool = True
    quantity: int | None = Field(default=None, gt=0, le=MAX_QUANTITY)
    temperature_log_ok: bool | None = Field(
        default=None, description="Cold chain: a continuous temperature record came back "
                                  "with the goods (null: none)")


class Inspections(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inspections: list[InspectionIn] = Field(default_factory=list)


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
        raise validation_error(exc) from exc
    # Back to JSON text, so the request is validated exactly as a webhook body would be.
    inner = json.dumps(document["request"]).encode()
    try:
        refund_request = parse_request(inner)
    except InvalidRequest as exc:
        raise InvalidRequest(f"request.{exc.field}", exc.message,
                             [(f"request.{f}", m) for f, m in exc.errors]) from exc
    return refund_request, [Inspection(**i.model_dump()) for i in extra.inspections]
