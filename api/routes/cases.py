"""The operator API: read cases and their evidence, receive goods, review, retry, cancel."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.json_schema import SkipJsonSchema

from refundbridge.api.deps import Operator, ReadsDep, ServicesDep
from refundbridge.api.schemas import InspectionIn
from refundbridge.core import services
from refundbridge.core.access import Permission, Principal
from refundbridge.core.errors import InvalidRequest
from refundbridge.core.lifecycle import CaseState
from refundbridge.core.model import Inspection, NotificationKind, Outcome
from refundbridge.core.request import (
    BIGINT_MAX,
    Text,
)
from refundbridge.store.queries import CaseReads

router = APIRouter(prefix="/v1", tags=["cases"])

# Free text a person writes: line breaks and tabs, but no other control character (a NUL
# cannot be stored, and none belongs in an audit trail or an email).
TEXT = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"


async def _detail(reads: CaseReads, case_id: str) -> dict[str, Any]:
    return await run_in_threadpool(reads.case_detail, case_id)


async def _visible(reads: CaseReads, operator: Principal, case_id: str,
                   permission: Permission) -> None:
    """The case is one of the caller's shops (else 404, as if it did not exist) and the
    caller's role may do this to it (else 403)."""
    shop = await run_in_threadpool(reads.case_shop, case_id)
    operator.require_shop(shop, f"case {case_id}")
    operator.require(permission)


def _typed_name(value: object) -> object:
    raise ValueError("no longer taken: the audit trail records the caller's own name (the "
                     "console operator, or the API token's name)")


class ReceiptIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lines: list[InspectionIn] = Field(min_length=1)


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["approve", "deny"]
    internal_note: str = Field(
        min_length=1, max_length=4000, pattern=TEXT,
        description="Why, for the shop's people: kept in the case and its audit trail, never "
                    "sent to the customer or the storefront")
    customer_message: str = Field(
        default="", max_length=2000, pattern=TEXT,
        description="Sent to the customer with the decision (its email, and the storefront's "
                    "note where it shows one); empty: the plain message")
    # Refused rather than read as either field: only its writer knows whether it was meant
    # for the customer, and guessing wrong either leaks a note or drops a message.
    note: SkipJsonSchema[str | None] = Field(default=None, exclude=True)
    reviewer: SkipJsonSchema[str | None] = Field(default=None, exclude=True)

    @field_validator("note", mode="before")
    @classmethod
    def _note_was_split(cls, value: object) -> object:
        raise ValueError("no longer taken: write 'internal_note' (kept, never sent) and, "
                         "if the customer should read something, 'customer_message'")

    _reviewer = field_validator("reviewer", mode="before")(_typed_name)


class ConfirmIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agree: bool = Field(description="true: apply the proposed decision; false: send it back")
    internal_note: str = Field(
        default="", max_length=4000, pattern=TEXT,
        description="The second reviewer's note, kept in the case and its audit trail; "
                    "required to send a proposal back")


class ClaimIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    take_over: bool = Field(default=False,
                            description="Claim it even though another operator has")


class WaiveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    actor: SkipJsonSchema[str | None] = Field(default=None, exclude=True)
    reason: str = Field(min_length=1, max_length=4000, pattern=TEXT,
                        description="Why the customer need not get the message (kept in "
                                    "the audit trail)")

    _actor = field_validator("actor", mode="before")(_typed_name)


class ActionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    actor: SkipJsonSchema[str | None] = Field(default=None, exclude=True)
    reason: Text = Field(default="", max_length=4000)

    _actor = field_validator("actor", mode="before")(_typed_name)


@router.get("/cases")
async def list_cases(
    reads: ReadsDep, operator: Operator,
    shop: str | None = None,
    state: CaseState | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(pattern=r"^[0-9]{1,19}$", description=(
        "`next_cursor` of the page before"))] = None,
) -> dict[str, Any]:
    # Nineteen digits may still be past a BIGINT: such a cursor names no page.
    if cursor is not None and int(cursor) > BIGINT_MAX:
        raise InvalidRequest("query.cursor", "is not a cursor this API gave out")
    if shop is not None and not operator.sees(shop):
        return {"items": [], "next_cursor": None}
    return await run_in_threadpool(
        reads.list_cases, shop=shop, shops=operator.shops,
        state=state.value if state else None, limit=limit,
        cursor=int(cursor) if cursor else None)


@router.get("/cases/{case_id}")
async def get_case(case_id: str, reads: ReadsDep, operator: Operator) -> dict[str, Any]:
    await _visible(reads, operator, case_id, Permission.READ)
    return await _detail(reads, case_id)


@router.get("/cases/{case_id}/evidence")
async def get_evidence(case_id: str, reads: ReadsDep, operator: Operator) -> dict[str, Any]:
    await _visible(reads, operator, case_id, Permission.EXPORT)
    return await run_in_threadpool(reads.case_evidence, case_id)


@router.post("/cases/{case_id}/receipt")
async def receive_goods(case_id: str, body: ReceiptIn, svc: ServicesDep, reads: ReadsDep,
                        operator: Operator) -> dict[str, Any]:
    await _visible(reads, operator, case_id, Permission.RECEIVE)
    inspections = [Inspection(**line.model_dump()) for line in body.lines]
    await run_in_threadpool(services.record_receipt, svc, case_id,
                            inspections, operator.actor)
    return await _detail(reads, case_id)


@router.post("/cases/{case_id}/review")
async def review(case_id: str, body: ReviewIn, svc: ServicesDep, reads: ReadsDep,
                 operator: Operator) -> dict[str, Any]:
    """Approve or deny a case in review. Where four eyes apply (an amount above the shop's
    `four_eyes_above`, a possible adverse event) this only proposes the decision: the case
    stays `awaiting_review` with it as `pending_review` until another reviewer confirms."""
    await _visible(reads, operator, case_id, Permission.DECIDE)
    await run_in_threadpool(services.review, svc, case_id,
                            Outcome(body.decision), operator.actor, body.internal_note,
                            body.customer_message)
    return await _detail(reads, case_id)


@router.post("/cases/{case_id}/review/confirm")
async def confirm_review(case_id: str, body: ConfirmIn, svc: ServicesDep, reads: ReadsDep,
                         operator: Operator) -> dict[str, Any]:
    """Four eyes: a second reviewer (never the proposal's author, 409) applies the decision
    another proposed (`pending_review`), or sends it back with a note."""
    await _visible(reads, operator, case_id, Permission.DECIDE)
    await run_in_threadpool(services.confirm_review, svc, case_id, operator.actor,
                            body.agree, body.internal_note)
    return await _detail(reads, case_id)


@router.post("/cases/{case_id}/claim")
async def claim(case_id: str, svc: ServicesDep, reads: ReadsDep, operator: Operator,
                body: ClaimIn | None = None) -> dict[str, Any]:
    """The caller works this case now (`assignee`); another's claim is taken only with
    `take_over` (else 409)."""
    await _visible(reads, operator, case_id, Permission.DECIDE)
    await run_in_threadpool(services.claim_case, svc, case_id, operator.actor,
                            body.take_over if body else False)
    return await _detail(reads, case_id)


@router.post("/cases/{case_id}/release")
async def release(case_id: str, svc: ServicesDep, reads: ReadsDep,
                  operator: Operator) -> dict[str, Any]:
    """The caller gives a case they claimed back to the queue."""
    await _visible(reads, operator, case_id, Permission.DECIDE)
    await run_in_threadpool(services.release_case, svc, case_id, operator.actor)
    return await _detail(reads, case_id)


@router.post("/cases/{case_id}/retry")
async def retry(case_id: str, svc: ServicesDep, reads: ReadsDep, operator: Operator,
                body: ActionIn | None = None) -> dict[str, Any]:
    await _visible(reads, operator, case_id, Permission.OPERATE)
    await run_in_threadpool(services.retry, svc, case_id, operator.actor)
    return await _detail(reads, case_id)


@router.post("/cases/{case_id}/cancel")
async def cancel(case_id: str, body: ActionIn, svc: ServicesDep, reads: ReadsDep,
                 operator: Operator) -> dict[str, Any]:
    await _visible(reads, operator, case_id, Permission.OPERATE)
    await run_in_threadpool(services.cancel, svc, case_id,
                            operator.actor, body.reason)
    return await _detail(reads, case_id)


@router.post("/cases/{case_id}/notifications/{kind}/waive")
async def waive_notification(case_id: str, kind: NotificationKind, body: WaiveIn,
                             svc: ServicesDep, reads: ReadsDep, operator: Operator
                             ) -> dict[str, Any]:
    """The customer need not get this message (a failed or pending one): it no longer keeps
    the case open. Recorded in the audit trail with the operator and the reason."""
    await _visible(reads, operator, case_id, Permission.OPERATE)
    await run_in_threadpool(services.waive_notification, svc, case_id,
                            kind, operator.actor, body.reason)
    return await _detail(reads, case_id)


@router.post("/cases/{case_id}/notifications/{kind}/resend")
async def resend_notification(case_id: str, kind: NotificationKind, svc: ServicesDep,
                              reads: ReadsDep, operator: Operator,
                              body: ActionIn | None = None) -> dict[str, Any]:
    """Send a failed (or waived) message again; the case closes once it is sent, if that
    was all it waited for."""
    await _visible(reads, operator, case_id, Permission.OPERATE)
    await run_in_threadpool(services.resend_notification, svc, case_id,
                            kind, operator.actor)
    return await _detail(reads, case_id)
