"""The operator API for a shop's recall list (rule R13's input): import and list recalls."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from refundbridge.api.deps import AppDeps, Operator
from refundbridge.core.access import Permission
from refundbridge.core.errors import InvalidRequest
from refundbridge.core.recalls import (
    LOT_MAX,
    REFERENCE_MAX,
    SERIAL_MAX,
    SKU_MAX,
    Recall,
    decode_csv,
    parse_recall_csv,
    recall_from_fields,
)
from refundbridge.core.request import Line, check_text

router = APIRouter(prefix="/v1", tags=["recalls"])

CSV_TYPES = frozenset({"text/csv", "application/csv", "text/plain"})


class RecallIn(BaseModel):
    """One recall, with the CSV's column names. Strings throughout: a GTIN sent as a JSON
    number would lose its leading zeros."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    gtin: Line | None = Field(default=None, max_length=64,
                             description="GTIN-8/12/13/14; stored as GTIN-14")
    sku: Line | None = Field(default=None, max_length=SKU_MAX,
                            description="The shop's SKU; a gtin or a sku is required")
    lot: Line | None = Field(default=None, max_length=LOT_MAX,
                            description="Blank or absent: every lot")
    serial: Line | None = Field(default=None, max_length=SERIAL_MAX,
                               description="Blank or absent: every serial")
    recall_class: Line = Field(alias="class", max_length=8, examples=["II"],
                               description="I, II or III")
    notice_date: Line = Field(max_length=32, examples=["2026-11-20"], description="YYYY-MM-DD")
    reference: Line = Field(max_length=REFERENCE_MAX, description="The notice's reference")


class RecallsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    recalls: list[RecallIn] = Field(min_length=1)


def _request_schemas() -> dict[str, Any]:
    schema = RecallsIn.model_json_schema()
    # Inline the item schema: the operation's own schema cannot point into "$defs".
    item = schema.pop("$defs")["RecallIn"]
    schema["properties"]["recalls"]["items"] = item
    csv_example = ("gtin,sku,lot,serial,class,notice_date,reference\n"
                   "06901234567892,,L2401,,II,2026-11-20,NMPA-2026-0042\n")
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": schema},
        "text/csv": {"schema": {"type": "string"}, "example": csv_example},
    }}}


def _from_json(raw: bytes) -> list[Recall]:
    try:
        body = RecallsIn.model_validate_json(raw)
    except ValidationError as exc:
        errors = [(".".join(str(p) for p in e["loc"]) or "body", str(e["msg"]))
                  for e in exc.errors()]
        raise InvalidRequest(errors[0][0], errors[0][1], errors) from exc
    recalls: list[Recall] = []
    problems: list[tuple[str, str]] = []
    for index, item in enumerate(body.recalls):
        try:
            recalls.append(recall_from_fields(item.model_dump(by_alias=True)))
        except InvalidRequest as exc:
            problems.extend((f"recalls.{index}.{field}", message)
                            for field, message in exc.errors)
    if problems:
        raise InvalidRequest(problems[0][0], problems[0][1], problems)
    return recalls


def _parse(raw: bytes, media_type: str) -> list[Recall]:
    if media_type == "application/json" or media_type.endswith("+json"):
        return _from_json(raw)
    text = decode_csv(raw)
    for number, line in enumerate(text.splitlines(), start=1):
        check_text(line, f"line {number}")
    return parse_recall_csv(text)


@router.post("/recalls", openapi_extra=_request_schemas())
async def import_recalls(request: Request, shop: str, deps: AppDeps,
                         operator: Operator) -> dict[str, int]:
    """Import recall notices as JSON (`{"recalls": [...]}`) or as a CSV file (`text/csv`).
    All or nothing: one bad row imports nothing (422 naming the row and column). A recall
    already known is skipped, so importing a file twice changes nothing."""
    operator.require_shop(shop, f"shop '{shop}'")
    operator.require(Permission.MANAGE)
    deps.shop_policy(shop)
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json") \
            and media_type not in CSV_TYPES:
        raise HTTPException(415, "Content-Type: send application/json or text/csv")
    recalls = await run_in_threadpool(_parse, await request.body(), media_type)
    added = await run_in_threadpool(deps.recalls.add, shop, recalls)
    total = len(await run_in_threadpool(deps.recalls.for_shop, shop))
    return {"added": added, "total": total}


@router.get("/recalls")
async def list_recalls(shop: str, deps: AppDeps, operator: Operator) -> dict[str, Any]:
    """The shop's recall list, the newest notice first."""
    operator.require_shop(shop, f"shop '{shop}'")
    operator.require(Permission.READ)
    deps.shop_policy(shop)
    recalls = await run_in_threadpool(deps.recalls.for_shop, shop)
    return {"shop": shop, "total": len(recalls), "recalls": [r.as_json() for r in recalls]}
