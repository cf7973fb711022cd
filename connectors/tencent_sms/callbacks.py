"""What Tencent Cloud SMS pushes to us: delivery reports (短信下发状态通知, a JSON array) and
customers' replies (短信回复, one JSON object).

Tencent signs neither, and documents no signature for them. So the callback URL configured
in Tencent's console carries a per-shop secret as its last path segment
(`…/tencent_sms/<callback_secret>`), compared in constant time; no secret, or a wrong one,
and nothing in the body is read.
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime
from typing import Final, Literal
from urllib.parse import unquote, urlsplit

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError

from refundbridge.connectors.base import SIGNED_AT_LIMIT, validation_error
from refundbridge.connectors.tencent_sms.transformers import CHINA, NAME
from refundbridge.core.errors import WebhookRejected
from refundbridge.core.ports import DeliveryReport, DeliveryState, InboundSms, SmsCallback
from refundbridge.core.request import WireModel, loads_strict

# Tencent's answer to a callback it should not push again.
ACKNOWLEDGEMENT: Final = b'{"result":0,"errmsg":"OK"}'
REPORT_STATES: Final = {"SUCCESS": DeliveryState.DELIVERED, "FAIL": DeliveryState.FAILED}
# Replies that opt a number out: the port's STOP and 退订, and what Tencent's templates ask
# for ("回复TD退订", and "拒收请回复R" on marketing SMS). Matched on the whole reply, any
# case, so "STOP" opts out and "stop sending the wrong size" does not.
OPT_OUT_WORDS: Final = frozenset({"STOP", "TD", "R", "退订", "UNSUBSCRIBE"})


class _Wire(WireModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class StatusReport(_Wire):
    user_receive_time: str
    nationcode: str
    mobile: str
    report_status: Literal["SUCCESS", "FAIL"]
    errmsg: str = ""
    description: str = ""
    sid: str
    ext: str | None = None  # our SessionContext, where Tencent echoes it for the account


class Reply(_Wire):
    extend: str | None = None
    mobile: str
    nationcode: str
    sign: str = ""
    text: str
    time: int = Field(ge=0, lt=SIGNED_AT_LIMIT)  # unix seconds


_REPORTS: Final = TypeAdapter(tuple[StatusReport, ...])


def check_secret(url: str, secret: str | None) -> None:
    """Raise `WebhookRejected` unless the URL's last path segment is the shop's secret."""
    if secret is None:
        raise WebhookRejected(NAME, "no callback_secret is set for this shop, so no callback "
                                    "can be trusted")
    segment = unquote(urlsplit(url).path.rstrip("/").rpartition("/")[2])
    if not hmac.compare_digest(segment.encode("utf-8"), secret.encode("utf-8")):
        raise WebhookRejected(NAME, "the callback URL does not end with this shop's "
                                    "callback_secret")


def parse(body: bytes) -> SmsCallback:
    """A verified callback's body, read strictly; `InvalidRequest` names a bad field."""
    document = loads_strict(body)
    if isinstance(document, list):
        try:
            reports = _REPORTS.validate_python(document)
        except ValidationError as exc:
            raise validation_error(exc) from exc
        return SmsCallback(reports=tuple(_report(r) for r in reports))
    try:
        reply = Reply.model_validate(document)
    except ValidationError as exc:
        raise validation_error(exc) from exc
    if not is_opt_out(reply.text):
        # Nothing reads other replies (no inbox for customers' SMS): acknowledged, dropped.
        return SmsCallback()
    return SmsCallback(replies=(InboundSms(phone=_e164(reply.nationcode, reply.mobile),
                                           text=reply.text.strip(),
                                           at=datetime.fromtimestamp(reply.time, UTC)),))


def is_opt_out(text: str) -> bool:
    return text.strip().strip("。.!！").strip().upper() in OPT_OUT_WORDS


def _report(report: StatusReport) -> DeliveryReport:
    state = REPORT_STATES[report.report_status]
    error = "" if state is DeliveryState.DELIVERED else " ".join(
        part for part in (report.errmsg, report.description) if part)
    return DeliveryReport(provider_id=report.sid, message_id=report.ext or None,
                          phone=_e164(report.nationcode, report.mobile), state=state,
                          error=error, at=_beijing_time(report.user_receive_time))


def _e164(nationcode: str, mobile: str) -> str:
    return f"+{nationcode.lstrip('+')}{mobile}"


def _beijing_time(text: str) -> datetime | None:
    # "2015-10-17 08:03:04": no zone given; Tencent's clock is Beijing time.
    try:
        return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=CHINA)
    except ValueError:
        return None
