"""The service layer: one function per use case, each a single unit of work.

Functions take ids and the dependencies they need (`Services`), never globals. The ones that
call a provider commit before the call (so the idempotency key, or the claim on a booking, is
stored first) and again after it (so the result is recorded with the work that follows from
it). Use cases live by subject:

    intake         a request opens a case once; a verified webhook does what it asks
    decisions      the rules' decision under the order's lock, a preview, a reviewer's
    money          paying back once; a provider's news of a refund
    goods          receipt and inspection, the ERP booking, the storefront write-back
    notifications  telling the customer; an operator's resend or waiver
    operator       failing, reviving, retrying, cancelling
    exchanges      an exchange's replacement, ordered in the ERP once
    campaigns      recall campaigns: the ERP walk, the quarantine, closing; with
                   campaign_notices (telling consignees) and campaign_answers (their
                   acknowledgements and recall cases)
"""

from __future__ import annotations

from collections.abc import Callable

from refundbridge.core.model import Step
from refundbridge.core.services.common import (
    FOLDABLE,
    Received,
    Services,
    ShopGateways,
    chained_steps,
    finish_idle_step,
    record_step,
)
from refundbridge.core.services.decisions import (
    claim_case,
    confirm_review,
    evaluate,
    evaluation_context,
    four_eyes_reasons,
    preview,
    release_case,
    review,
    rules_decision,
)
from refundbridge.core.services.evidence import EvidenceSource, export_evidence, record_export
from refundbridge.core.services.exchanges import CLAIM_REPLACEMENT, order_replacement
from refundbridge.core.services.goods import (
    CLAIM_BOOKING,
    adjust_stock,
    record_receipt,
    write_back,
)
from refundbridge.core.services.intake import (
    ExternalRefundRecorded,
    NewCase,
    NothingToDo,
    RefundNewsApplied,
    WebhookOutcome,
    apply_webhook_event,
    open_new_case,
    receive_request,
    received,
    record_external_refund,
)
from refundbridge.core.services.money import RESERVE_REFUND, apply_refund_update, issue_refund
from refundbridge.core.services.notifications import (
    SmsCallbackApplied,
    apply_sms_callback,
    resend_notification,
    send_notifications,
    waive_notification,
)
from refundbridge.core.services.operator import (
    cancel,
    fail_step,
    record_job_action,
    retry,
    revive,
)

# The step a job runs, by name: each is idempotent and takes the case's id.
STEP_HANDLERS: dict[Step, Callable[[Services, str], None]] = {
    Step.EVALUATE: evaluate,
    Step.REFUND: issue_refund,
    Step.STOCK: adjust_stock,
    Step.NOTIFY: send_notifications,
    Step.WRITE_BACK: write_back,
    Step.REPLACE: order_replacement,
}

# The first phases a job's chain may commit with the step before them (`commit_step`): a
# refund's key with the decision, a booking's claim with the refund's result. Each is still
# committed before its provider is called.
FOLDABLE.update({Step.REFUND: RESERVE_REFUND, Step.STOCK: CLAIM_BOOKING,
                 Step.REPLACE: CLAIM_REPLACEMENT})

__all__ = [
    "STEP_HANDLERS", "EvidenceSource", "ExternalRefundRecorded", "NewCase", "NothingToDo",
    "Received",
    "RefundNewsApplied", "Services", "ShopGateways", "SmsCallbackApplied", "WebhookOutcome",
    "adjust_stock", "apply_refund_update", "apply_sms_callback", "apply_webhook_event",
    "cancel", "chained_steps", "claim_case",
    "confirm_review", "evaluate", "evaluation_context", "export_evidence", "fail_step",
    "finish_idle_step",
    "four_eyes_reasons", "issue_refund", "open_new_case", "order_replacement", "preview",
    "receive_request",
    "received",
    "record_export", "record_external_refund", "record_job_action", "record_receipt",
    "record_step", "release_case",
    "resend_notification", "retry", "review", "revive", "rules_decision",
    "send_notifications", "waive_notification", "write_back",
]
