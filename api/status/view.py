"""What the customer's status page may show of a case: a whitelist.

`StatusView.of(detail, policy)` copies from `store.queries.case_detail` only the fields named
here, in words for the customer. Everything else in a case stays out by construction: the
internal note and the rules of a decision, who reviewed or inspected it, rule ids,
obligations other than the refund deadline, errors of a message's delivery, the audit
trail's actors. The email address and phone number are shown masked.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from refundbridge.core.money import Money
from refundbridge.core.packing import packing_of
from refundbridge.core.policy import ShopPolicy

# The payment provider of the order, in the customer's words.
PAID_WITH = {
    "stripe": "the card you paid with",
    "alipay": "your Alipay account",
    "wechatpay": "your WeChat Pay account",
    "shopify": "the payment method you used at checkout",
    "woocommerce": "the payment method you used at checkout",
}
PAID_WITH_DEFAULT = "your original payment method"

# The messages of a case, and how sending each went, in the customer's words.
MESSAGE_LABELS = {
    "received": "Confirmation of your request",
    "approved": "Approval of your request",
    "denied": "Our decision on your request",
    "goods_received": "Confirmation that your items arrived",
    "refunded": "Confirmation of your refund",
    "refund_failed": "Your refund is delayed",
    "replacement_ordered": "Your replacement was ordered",
    "replacement_shipped": "Your replacement is on its way",
}
DELIVERY_LABELS = {
    "sent": "Sent",
    "sending": "Being sent",
    "not_delivered": "Could not be delivered",
    "not_sent": "Not sent",
}
STEP_LABELS = ("Request received", "Decision", "Request approved", "Request declined",
               "Goods received back", "Refund paid", "Replacement ordered",
               "Replacement shipped", "Price difference refunded")
# How far an exchange's replacement has got, in the customer's words.
REPLACEMENT_LABELS = {
    "waiting": "We order it once your items have arrived",
    "ordering": "Being ordered",
    "ordered": "Ordered",
    "shipped": "Shipped",
}


def mask_email(address: str | None) -> str | None:
    """`li.wei@example.com` -> `l****@e******.com`: enough to recognise, not to use."""
    if not address or "@" not in address:
        return None
    local, _, domain = address.rpartition("@")
    host, dot, tld = domain.rpartition(".")
    if not dot:
        host, tld = domain, ""
    masked_host = host[:1] + "*" * max(len(host) - 1, 2)
    return f"{local[:1]}****@{masked_host}{dot}{tld}"


def mask_phone(phone: str | None) -> str | None:
    """`+8613800001234` -> `+86*******1234`: the last four digits only."""
    if not phone:
        return None
    digits = [c for c in phone if c.isdigit()]
    if len(digits) < 6:
        return "****"
    head = "+" if phone.strip().startswith("+") else ""
    country = "".join(digits[:2]) if head else ""
    hidden = len(digits) - len(country) - 4
    return f"{head}{country}{'*' * max(hidden, 3)}{''.join(digits[-4:])}"


def _when(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Step:
    key: str  # received | decided | goods_back | refunded
    label: str  # English; the template translates
    done: bool
    at: date | None
    current: bool = False


@dataclass(frozen=True, slots=True)
class Line:
    name: str
    quantity: int
    sterile: bool
    cold_chain: bool
    sharp: bool


@dataclass(frozen=True, slots=True)
class Replacement:
    """An exchange's replacement as the customer sees it: what, and how far it has got."""

    items: tuple[tuple[str, int], ...]  # (name, quantity)
    progress: str  # waiting | ordering | ordered | shipped
    delivery: str | None  # the ERP's delivery (note) number, once it shipped

    @property
    def label(self) -> str:
        return REPLACEMENT_LABELS[self.progress]


@dataclass(frozen=True, slots=True)
class Message:
    kind: str  # a NotificationKind: received | approved | denied | goods_received | …
    at: date | None
    status: str  # sent | sending | not_delivered | not_sent

    @property
    def label(self) -> str:
        return MESSAGE_LABELS.get(self.kind, "Message")

    @property
    def status_label(self) -> str:
        return DELIVERY_LABELS[self.status]


@dataclass(frozen=True, slots=True)
class StatusView:
    case_id: str
    shop_id: str
    order_id: str
    is_return: bool
    phase: str  # reviewing | approved | send_back | goods_back | refunding | refunded |
    #             denied | cancelled | delayed
    steps: tuple[Step, ...]
    lines: tuple[Line, ...]
    amount: Money  # what is (to be) refunded: the refunded, else approved, else requested
    refunded: Money | None
    paid_with: str
    expected_by: date | None  # R07's refund deadline, once the clock runs
    deadline_days: int
    customer_message: str
    messages: tuple[Message, ...]
    email: str | None  # masked
    phone: str | None  # masked
    return_address: str
    locale: str  # the customer's, as the request gave it
    # An exchange's replacement (None: the request is no exchange); `amount` is then the
    # price difference, refunded only when it is above zero (`refund_due`).
    replacement: Replacement | None = None
    refund_due: bool = True

    @property
    def is_exchange(self) -> bool:
        return self.replacement is not None

    @property
    def needs_sterile(self) -> bool:
        return any(line.sterile for line in self.lines)

    @property
    def needs_cold_chain(self) -> bool:
        return any(line.cold_chain for line in self.lines)

    @property
    def needs_sharps(self) -> bool:
        return any(line.sharp for line in self.lines)

    @classmethod
    def of(cls, detail: dict[str, Any], policy: ShopPolicy) -> StatusView:
        zone = ZoneInfo(policy.timezone)

        def day(value: Any) -> date | None:
            moment = _when(value)
            if moment is None:
                return None
            return moment.astimezone(zone).date() if moment.tzinfo else moment.date()

        state = str(detail["state"])
        exchange = detail["kind"] in ("exchange", "return_and_exchange")
        is_return = detail["kind"] == "return_and_refund" or exchange
        # `outcome` as stored (store/mapping.py); `decision` as `Decision.as_json` writes it
        final = [d for d in detail.get("decisions", [])
                 if d.get("outcome", d.get("decision")) in ("approve", "deny")]
        decision = final[-1] if final else None
        denied = decision is not None and decision.get(
            "outcome", decision.get("decision")) == "deny"
        reached: dict[str, Any] = {}
        for event in detail.get("timeline", []):
            target = event.get("to_state")
            if target in ("received_goods", "refunded", "replaced") and target not in reached:
                reached[target] = event.get("at")
            if event.get("name") == "replacement_shipped" and "shipped" not in reached:
                reached["shipped"] = event.get("at")
        refunded = _money(detail.get("refunded"))
        if refunded is not None and refunded.amount == 0:
            refunded = None
        approved = _money(detail.get("approved"))
        requested = _money(detail.get("requested"))
        assert requested is not None
        amount = refunded or approved or requested

        replacement = _replacement(detail, state) if exchange else None
        refund_due = not exchange or (amount.amount > 0)
        phase = (_exchange_phase(state, replacement, "received_goods" in reached)
                 if replacement is not None
                 else _phase(state, is_return, refunded is not None, "received_goods" in reached))
        steps = [Step("received", "Request received", True, day(detail.get("created_at")))]
        steps.append(Step("decided", "Request declined" if denied else "Request approved"
                          if decision else "Decision", decision is not None,
                          day(decision["at"]) if decision else None))
        goods_back = Step("goods_back", "Goods received back", "received_goods" in reached,
                          day(reached.get("received_goods")))
        if replacement is not None and not denied:
            ordered = replacement.progress in ("ordered", "shipped")
            shipped = replacement.progress == "shipped"
            made = [Step("replacement_ordered", "Replacement ordered", ordered,
                         day(reached.get("replaced"))),
                    Step("replacement_shipped", "Replacement shipped", shipped,
                         day(reached.get("shipped", reached.get("replaced")))
                         if shipped else None)]
            # The order follows the shop's timing: an advance replacement goes out first.
            replaced_at = _when(reached.get("replaced"))
            back_at = _when(reached.get("received_goods"))
            advance = replaced_at is not None and (back_at is None or replaced_at < back_at)
            steps.extend([*made, goods_back] if advance else [goods_back, *made])
            if refund_due:
                steps.append(Step("refunded", "Price difference refunded",
                                  refunded is not None,
                                  day(reached.get("refunded")) if refunded else None))
        else:
            if is_return and not denied:
                steps.append(goods_back)
            if not denied:
                steps.append(Step("refunded", "Refund paid", refunded is not None,
                                  day(reached.get("refunded")) if refunded else None))
        first_open = next((i for i, s in enumerate(steps) if not s.done), None)
        steps = [Step(s.key, s.label, s.done, s.at, i == first_open)
                 for i, s in enumerate(steps)]

        lines = []
        for item in detail.get("lines", []):
            name = str(item.get("name", ""))
            packing = packing_of(sku=str(item.get("sku", "")), name=name,
                                 sterile=bool(item.get("sterile")),
                                 cold_chain=bool(item.get("cold_chain")), policy=policy)
            lines.append(Line(
                name=name, quantity=int(item.get("quantity", 1)), sterile=packing.sterile,
                cold_chain=packing.cold_chain, sharp=packing.sharp))

        deadline = next((o for o in detail.get("obligations", [])
                         if o.get("kind") == "refund_deadline" and o.get("due")), None)
        messages = tuple(
            Message(str(n["kind"]), day(n.get("last_attempt_at")), _delivery(n))
            for n in detail.get("notifications", []))
        customer = detail.get("customer") or {}
        payment = (detail.get("order") or {}).get("payment") or {}
        return cls(
            case_id=str(detail["id"]), shop_id=str(detail["shop_id"]),
            order_id=str(detail["order_id"]), is_return=is_return, phase=phase,
            steps=tuple(steps), lines=tuple(lines), amount=amount, refunded=refunded,
            paid_with=PAID_WITH.get(str(payment.get("provider", "")), PAID_WITH_DEFAULT),
            expected_by=(date.fromisoformat(deadline["due"]) if deadline and not refunded
                         else None),
            deadline_days=policy.refund_deadline_days,
            customer_message=str(decision.get("customer_message") or "") if decision else "",
            messages=messages,
            email=mask_email(customer.get("email")), phone=mask_phone(customer.get("phone")),
            return_address=policy.return_address,
            locale=str(customer.get("locale") or "en"),
            replacement=replacement, refund_due=refund_due,
        )


def _money(value: Any) -> Money | None:
    if not value:
        return None
    return Money(Decimal(str(value["amount"])), str(value["currency"]))


def _replacement(detail: dict[str, Any], state: str) -> Replacement:
    items = tuple((str(r.get("name", "")), int(r.get("quantity", 1)))
                  for r in detail.get("replacements", []))
    stored = detail.get("replacement") or {}
    progress = str(stored.get("progress") or "")
    if progress not in ("ordered", "shipped"):
        progress = "ordering" if state == "replacing" or stored else "waiting"
    return Replacement(items, progress,
                       str(stored["delivery"]) if progress == "shipped" and stored.get(
                           "delivery") else None)


def _exchange_phase(state: str, replacement: Replacement, goods_back: bool) -> str:
    """What the customer of an exchange is waiting for, or must do, now."""
    if state in ("denied", "cancelled"):
        return state
    if state == "failed":
        return "delayed"
    if state in ("received", "evaluating", "awaiting_review"):
        return "reviewing"
    if state == "awaiting_return":
        return "send_back"
    if replacement.progress in ("ordered", "shipped"):
        return "replaced"
    return "replacing" if goods_back or state == "replacing" else "approved"


def _delivery(notification: dict[str, Any]) -> str:
    status = notification.get("status")
    if status == "sent":
        return "sent"
    if status == "pending":
        return "sending"
    if status == "failed":
        return "not_delivered"
    return "not_sent"  # waived by the shop


def _phase(state: str, is_return: bool, refunded: bool, goods_back: bool) -> str:
    """What the customer is waiting for, or must do, now."""
    if state == "denied":
        return "denied"
    if state == "cancelled":
        return "cancelled"
    if state == "failed":
        return "delayed"
    if state in ("received", "evaluating", "awaiting_review"):
        return "reviewing"
    if state == "awaiting_return":
        return "send_back"
    if state in ("refunded", "closed") and refunded:
        return "refunded"
    if state == "received_goods" or (goods_back and not refunded):
        return "goods_back"
    return "refunding" if is_return or state == "refunding" else "approved"
