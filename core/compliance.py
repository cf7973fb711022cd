"""The medical-device rule set: R01–R20 of compliance.md, how they combine, and where each
returned unit goes.

`MedicalDeviceRuleSet.evaluate` is a pure function of the `EvaluationContext` (request,
policy, recall list, the customer's earlier requests, shipment records, inspections and
"now"): no I/O, so the same inputs always give the same decision, and tests need no database.
What each rule says, in its reasons and in the obligations it sets, is worded in
core/messages.py, in the customer's language.

How the rules combine (README "Compliance rules" says the same in prose):

1. The reason is put in a group: no_reason, quality, recall, adverse_event or other. Free
   text in which core/injury.py finds a word for an injury, certain or doubtful, makes it
   adverse_event whatever the code says: when in doubt, a person reads it.
2. Only the no-reason path can be denied automatically (R02, R03, R04 when the buyer confirmed
   the exclusion at purchase, R05). Quality, recall and adverse-event claims never are.
3. A possible adverse event (R14) always goes to a person.
4. Else a recalled lot or serial (R13) approves the refund whatever the window, amount or
   refund history — unless the unit's identity is in doubt (R01, R15, R16), which a person
   must settle first.
5. Else any deny denies, any review sends the case to a person, and otherwise it is
   approved. The auto-approval limit (R20) and the frequent-refund limit (R19) are reviews
   like any other.

Dispositions, per line, first match wins: adverse event → keep_as_evidence; recall →
quarantine; identity in doubt (R01/R16) → quarantine; expired, or expiry unknown for a
device with a shelf life → scrap; sterile and (opened, or returned by a consumer) → scrap;
seal broken → scrap; cold chain without a continuous temperature record → quarantine; quality
defect → return_to_manufacturer; failed inspection or not as new → scrap; excluded from
no-reason return (by the policy, or confirmed by the buyer on the order line) → scrap; no
inspection yet → pending_inspection; outer box opened and the shop does not resell open-box
devices (R12, `open_box_resale`) → quarantine; else restock. A refund
without goods leaves the unit with the customer (not_returned) unless a rule needs it back.

Over 500 lines on purpose: the rules, the way they combine and the dispositions are one
reading of compliance.md, and an auditor checks them against it side by side.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from enum import StrEnum
from typing import Any

from refundbridge.core.errors import InvalidUdi
from refundbridge.core.injury import NO_INJURY, InjuryFinding, InjuryLevel, detect_injury
from refundbridge.core.messages import text
from refundbridge.core.model import (
    Disposition,
    Inspection,
    LineDisposition,
    Obligation,
    ObligationKind,
    Outcome,
    RuleResult,
)
from refundbridge.core.policy import (
    ADVERSE_EVENT_CODES,
    NO_REASON_CODES,
    QUALITY_CODES,
    Jurisdiction,
    SkuFlags,
)
from refundbridge.core.ports import ShippedUnit
from refundbridge.core.recalls import Recall
from refundbridge.core.request import CustomerType, ReasonCode, RequestLine, Severity
from refundbridge.core.rules import EvaluationContext, Verdict
from refundbridge.core.udi import UdiData, parse_udi, udi_mismatches


class ReasonGroup(StrEnum):
    NO_REASON = "no_reason"
    QUALITY = "quality"
    RECALL = "recall"
    ADVERSE_EVENT = "adverse_event"
    OTHER = "other"


# Quality reasons that say the device itself may be at fault: back to the manufacturer.
MANUFACTURER_FAULT_CODES = frozenset(
    {ReasonCode.DEFECTIVE, ReasonCode.DAMAGED_ON_ARRIVAL, ReasonCode.NOT_AS_DESCRIBED})

# Adverse-event reporting deadlines in calendar days from awareness, by jurisdiction and
# severity (compliance.md "Deadlines and retention"). An unknown severity takes the shortest.
AE_DEADLINE_DAYS: dict[Jurisdiction, dict[Severity, int]] = {
    Jurisdiction.CN: {Severity.DEATH: 7, Severity.SERIOUS_INJURY: 20, Severity.INJURY: 20,
                      Severity.MALFUNCTION: 20},
    Jurisdiction.US: {Severity.DEATH: 30, Severity.SERIOUS_INJURY: 30, Severity.INJURY: 30,
                      Severity.MALFUNCTION: 30},
    Jurisdiction.EU: {Severity.DEATH: 10, Severity.SERIOUS_INJURY: 15, Severity.INJURY: 15,
                      Severity.MALFUNCTION: 15},
}
AE_SOURCE = {Jurisdiction.CN: "医疗器械不良事件监测和再评价管理办法",
             Jurisdiction.US: "21 CFR 803", Jurisdiction.EU: "Regulation (EU) 2017/745 Art 87"}

# Rules whose review means "we are not sure this is the unit we sold": a recall cannot
# approve the refund until a person has settled that.
IDENTITY_RULES = frozenset({"R01", "R15", "R16"})
DENIABLE_RULES = frozenset({"R02", "R03", "R04", "R05"})


def mentions_injury(text: str, extra_terms: Iterable[str] = ()) -> bool:
    """The text may say someone was hurt (core/injury.py): a person must read it."""
    return detect_injury(text, extra_terms).needs_person


def reason_group(code: ReasonCode, text: str, injury: bool,
                 extra_terms: Iterable[str] = ()) -> ReasonGroup:
    if code in ADVERSE_EVENT_CODES or injury or mentions_injury(text, extra_terms):
        return ReasonGroup.ADVERSE_EVENT
    if code is ReasonCode.RECALL:
        return ReasonGroup.RECALL
    if code in QUALITY_CODES:
        return ReasonGroup.QUALITY
    if code in NO_REASON_CODES:
        return ReasonGroup.NO_REASON
    return ReasonGroup.OTHER


# ------------------------------------------------------------------ facts


@dataclass(frozen=True, slots=True)
class LineFacts:
    """A request line with what the policy, the UDI, the ERP and the inspection add to it."""

    index: int
    line: RequestLine
    flags: SkuFlags
    lot: str | None
    serial: str | None
    expiry: date | None
    gtin: str | None
    inspection: Inspection | None
    udis: tuple[tuple[str, UdiData | None, str | None], ...]  # (scan, parsed, error)

    @property
    def sku(self) -> str:
        return self.line.sku

    @property
    def sterile(self) -> bool:
        return self.line.sterile or self.flags.sterile

    @property
    def cold_chain(self) -> bool:
        return self.line.cold_chain or self.flags.cold_chain

    @property
    def custom_made(self) -> bool:
        return self.line.custom_made or self.flags.custom_made

    @property
    def implantable(self) -> bool:
        return self.line.implantable or self.flags.implantable

    @property
    def single_use(self) -> bool:
        return self.line.single_use or self.flags.single_use

    @property
    def has_shelf_life(self) -> bool:
        return self.flags.shelf_life or self.expiry is not None or self.sterile

    @property
    def has_necessary_seal(self) -> bool:
        """A sterile or single-use pack: its seal is what "intact" means for R05."""
        return self.sterile or self.single_use

    @property
    def seal_broken(self) -> bool:
        """The necessary single-use seal is broken (R05): the inspector's finding when there
        is one, else the buyer's word that a sterile or single-use pack was opened. Opening
        the outer box to look inside does not count ([7D] Arts 8, 9): a device with no
        single-use seal has none to break, so `seal_intact: false` on its inspection says
        only that its outer pack was opened (R12, `box_opened`)."""
        if not self.has_necessary_seal:
            return False
        if self.inspection is not None:
            return not self.inspection.seal_intact
        return self.line.package_opened

    @property
    def opened(self) -> bool:
        return self.line.package_opened or (
            self.inspection is not None and not self.inspection.seal_intact)

    @property
    def box_opened(self) -> bool:
        """The outer box was opened, by the buyer's word or the inspector's (R12)."""
        return self.opened

    @property
    def no_reason_excluded(self) -> bool:
        """Excluded from no-reason return (R04): by the shop's policy, or because the order
        line records that the buyer confirmed the exclusion at purchase."""
        return self.flags.no_reason_excluded or self.line.no_reason_exclusion_confirmed


def _first_unit(units: Sequence[ShippedUnit], sku: str) -> ShippedUnit | None:
    """The shipped unit that can fill a blank lot or expiry: only when there is one lot."""
    matching = [u for u in units if u.sku == sku]
    lots = {u.lot for u in matching}
    return matching[0] if len(lots) == 1 else None


def line_facts(ctx: EvaluationContext) -> list[LineFacts]:
    inspections = {i.line: i for i in ctx.inspections}
    facts: list[LineFacts] = []
    for index, line in enumerate(ctx.request.lines):
        flags = ctx.policy.flags(line.sku)
        inspection = inspections.get(index)
        scans = [s for s in (line.udi, inspection.udi_scan if inspection else None) if s]
        udis: list[tuple[str, UdiData | None, str | None]] = []
        for scan in scans:
            try:
                udis.append((scan, parse_udi(scan, today=ctx.today), None))
            except InvalidUdi as exc:
                udis.append((scan, None, exc.message))
        parsed = [u for _, u, _ in udis if u is not None]
        shipped = _first_unit(ctx.shipments or (), line.sku)
        lot = line.lot or next((u.lot for u in parsed if u.lot), None) or (
            shipped.lot if shipped else None)
        serial = line.serial or next((u.serial for u in parsed if u.serial), None)
        expiry = line.expiry_date or next((u.expiry for u in parsed if u.expiry), None) or (
            shipped.expiry_date if shipped else None)
        gtin = line.gtin or flags.gtin or next(
            (u.gtin for u in parsed if u.gtin and u.scheme == "gs1"), None)
        facts.append(LineFacts(index, line, flags, lot, serial, expiry, gtin, inspection,
                               tuple(udis)))
    return facts


# ------------------------------------------------------------------ the rule set


@dataclass
class _Assessment:
    """What the rules found, collected while they run."""

    ctx: EvaluationContext
    group: ReasonGroup
    facts: list[LineFacts]
    results: list[RuleResult] = field(default_factory=list)
    recalls: dict[int, Recall] = field(default_factory=dict)
    # Line -> the rule that doubts the unit is ours; R16 (the scan) names it over R01.
    identity_doubts: dict[int, str] = field(default_factory=dict)
    obligations: list[Obligation] = field(default_factory=list)
    # What core/injury.py read in the reason's text (R14).
    injury: InjuryFinding = NO_INJURY

    @property
    def locale(self) -> str:
        return self.ctx.request.customer.locale

    def add(self, rule: str, outcome: Outcome, message_id: str, line: int | None = None,
            **values: Any) -> None:
        if line is not None:
            values.setdefault("line", line + 1)  # people count lines from 1
        self.results.append(RuleResult(rule, outcome, self.text(message_id, **values), line))

    def text(self, message_id: str, **values: Any) -> str:
        """A message in the customer's language: reasons and obligations alike."""
        return text(message_id, self.locale, **values)

    @property
    def no_reason(self) -> bool:
        return self.group is ReasonGroup.NO_REASON

    @property
    def is_return(self) -> bool:
        """Goods come back: a return, or an exchange (its returned unit follows the same
        inspection and disposition rules)."""
        return self.ctx.request.returns_goods


class MedicalDeviceRuleSet:
    """R01–R20 (compliance.md) over one request; see the module docstring for how they
    combine."""

    def evaluate(self, ctx: EvaluationContext) -> Verdict:
        reason = ctx.request.reason
        injury = detect_injury(reason.text, ctx.policy.injury_terms)
        group = (ReasonGroup.ADVERSE_EVENT if injury.needs_person
                 else reason_group(reason.code, "", reason.injury))
        a = _Assessment(ctx, group, line_facts(ctx), injury=injury)
        for rule in RULES:
            rule(a)
        outcome = _combine(a)
        lines = tuple(_disposition(a, f) for f in a.facts)
        obligations = tuple(a.obligations) + tuple(
            _refund_deadline(a, ctx.decided or outcome))
        return Verdict(outcome, ctx.request.requested, tuple(a.results), lines, obligations)


def _combine(a: _Assessment) -> Outcome:
    reviews = {r.rule_id for r in a.results if r.outcome is Outcome.REVIEW}
    # Only the no-reason path is ever denied by the rules: a quality, recall or adverse-event
    # claim is decided by a person at worst.
    denials = {r.rule_id for r in a.results if r.outcome is Outcome.DENY} & DENIABLE_RULES
    if a.group is ReasonGroup.ADVERSE_EVENT:
        return Outcome.REVIEW
    if a.recalls:
        return Outcome.REVIEW if reviews & IDENTITY_RULES else Outcome.APPROVE
    if denials and a.no_reason:
        return Outcome.DENY
    if reviews:
        return Outcome.REVIEW
    return Outcome.APPROVE


def _days_after(start: date, end: date) -> int:
    return (end - start).days


# Each rule appends what it found to the assessment. They run in this order; the order only
# affects how results are listed, never the outcome.


def r01_shipment(a: _Assessment) -> None:
    units = a.ctx.shipments
    if units is None:
        a.add("R01", Outcome.PASS, "R01.unchecked")
        return
    for f in a.facts:
        if f.lot is None and f.serial is None:
            continue
        shipped = [u for u in units if u.sku == f.sku]
        if not shipped:
            a.identity_doubts.setdefault(f.index, "R01")
            a.add("R01", Outcome.REVIEW, "R01.no_sku", f.index, sku=f.sku)
            continue
        problems = []
        lots = sorted({u.lot for u in shipped if u.lot})
        serials = sorted({u.serial for u in shipped if u.serial})
        if f.lot and lots and f.lot not in lots:
            problems.append(("lot", f.lot, ", ".join(lots)))
        if f.serial and serials and f.serial not in serials:
            problems.append(("serial", f.serial, ", ".join(serials)))
        for name, value, known in problems:
            a.identity_doubts.setdefault(f.index, "R01")
            a.add("R01", Outcome.REVIEW, "R01.mismatch", f.index, field=name, value=value,
                  shipped=known)
        if not problems:
            a.add("R01", Outcome.PASS, "R01.pass", f.index)


def r02_window(a: _Assessment) -> None:
    request = a.ctx.request
    if not a.no_reason:
        a.add("R02", Outcome.PASS, "R02.na")
        return
    if request.customer.type is CustomerType.BUSINESS:
        a.add("R02", Outcome.DENY, "R02.business")
        return
    delivered = request.order.delivered_at
    window = a.ctx.policy.no_reason_window_days
    if delivered is None:
        a.add("R02", Outcome.PASS, "R02.undelivered")
        return
    # Day 1 is the day after delivery, in the shop's calendar.
    day = _days_after(a.ctx.local_date(delivered), a.ctx.local_date(request.requested_at))
    if day > window:
        a.add("R02", Outcome.DENY, "R02.late", day=day, window=window)
    else:
        a.add("R02", Outcome.PASS, "R02.pass", day=max(day, 0), window=window)


def r03_custom_made(a: _Assessment) -> None:
    denied = False
    for f in a.facts:
        if f.custom_made and a.no_reason:
            a.add("R03", Outcome.DENY, "R03.deny", f.index, sku=f.sku)
            denied = True
    if not denied:
        a.add("R03", Outcome.PASS, "R03.pass")


def r04_exclusion(a: _Assessment) -> None:
    found = False
    for f in a.facts:
        if not (f.no_reason_excluded and a.no_reason):
            continue
        found = True
        if f.line.no_reason_exclusion_confirmed:
            # The order line is the record of what the buyer confirmed at checkout; the
            # message says so when the shop's policy does not list the SKU itself.
            key = "R04.deny" if f.flags.no_reason_excluded else "R04.deny_order_line"
            a.add("R04", Outcome.DENY, key, f.index, sku=f.sku)
        else:
            a.add("R04", Outcome.PASS, "R04.accept", f.index, sku=f.sku)
    if not found:
        a.add("R04", Outcome.PASS, "R04.pass")


def r05_seal(a: _Assessment) -> None:
    broken = [f for f in a.facts if f.seal_broken]
    for f in broken:
        if a.no_reason:
            a.add("R05", Outcome.DENY, "R05.deny", f.index, sku=f.sku)
        else:
            a.add("R05", Outcome.PASS, "R05.noted", f.index, sku=f.sku)
    if not broken:
        a.add("R05", Outcome.PASS, "R05.pass")


def r06_quality(a: _Assessment) -> None:
    code = a.ctx.request.reason.code
    if a.group is not ReasonGroup.QUALITY:
        a.add("R06", Outcome.PASS, "R06.pass")
    elif code in a.ctx.policy.auto_approve_reasons:
        a.add("R06", Outcome.PASS, "R06.auto", code=code.value)
    else:
        a.add("R06", Outcome.REVIEW, "R06.review", code=code.value)
    if a.group is ReasonGroup.OTHER:
        a.add("A00", Outcome.REVIEW, "A00.other", code=code.value)


def r08_inspection(a: _Assessment) -> None:
    if not a.is_return:
        return
    for f in a.facts:
        i = f.inspection
        if i is None:
            a.add("R08", Outcome.PASS, "R08.pending", f.index)
        elif i.passed:
            a.add("R08", Outcome.PASS, "R08.pass", f.index, inspector=i.inspector)
        else:
            a.add("R08", Outcome.PASS, "R08.fail", f.index, inspector=i.inspector,
                  condition=i.condition)


def r09_expiry(a: _Assessment) -> None:
    today = a.ctx.today
    near = a.ctx.policy.near_expiry_days
    for f in a.facts:
        if f.expiry is None:
            if f.has_shelf_life:
                a.add("R09", Outcome.PASS, "R09.unknown", f.index, sku=f.sku)
            continue
        expiry = f.expiry.isoformat()
        if f.expiry < today:
            a.add("R09", Outcome.PASS, "R09.expired", f.index, expiry=expiry)
        elif (f.expiry - today).days <= near and a.is_return:
            # Only a unit that would go back on the shelf needs a person's look.
            a.add("R09", Outcome.REVIEW, "R09.near", f.index, expiry=expiry, days=near)
        else:
            a.add("R09", Outcome.PASS, "R09.pass", f.index, expiry=expiry)


def r10_r11_r12_storage(a: _Assessment) -> None:
    consumer = a.ctx.request.customer.type is CustomerType.CONSUMER
    for f in a.facts:
        if f.sterile and (f.opened or consumer) and a.is_return:
            why = a.text("R10.opened" if f.opened else "R10.consumer")
            a.add("R10", Outcome.PASS, "R10.scrap", f.index, sku=f.sku, why=why)
        if f.cold_chain and a.is_return:
            if f.inspection is None:
                a.add("R11", Outcome.PASS, "R11.pending", f.index, sku=f.sku)
            elif f.inspection.temperature_log_ok is not True:
                a.add("R11", Outcome.PASS, "R11.quarantine", f.index, sku=f.sku)
        if f.inspection is not None and f.inspection.condition != "as_new":
            a.add("R12", Outcome.PASS, "R12.not_restorable", f.index,
                  condition=f.inspection.condition)
        elif (a.is_return and f.box_opened
              and not a.ctx.policy.open_box_resale_for(f.sku)):
            a.add("R12", Outcome.PASS, "R12.open_box", f.index, sku=f.sku)


def r13_recall(a: _Assessment) -> None:
    today = a.ctx.today
    for f in a.facts:
        recall = a.ctx.recalls.match(sku=f.sku, gtin=f.gtin, lot=f.lot, serial=f.serial)
        if recall is None:
            continue
        # One notice per recall, however many of its lines came back.
        noticed = any(r.reference == recall.reference for r in a.recalls.values())
        a.recalls[f.index] = recall
        a.add("R13", Outcome.APPROVE, "R13.approve", f.index, reference=recall.reference,
              cls=recall.recall_class.value)
        if not noticed:
            a.obligations.append(Obligation(
                ObligationKind.RECALL_NOTICE,
                today + timedelta(days=recall.recall_class.notice_days),
                a.text("R13.notice", reference=recall.reference,
                       cls=recall.recall_class.value),
                "R13"))
    if not a.recalls:
        if a.group is ReasonGroup.RECALL:
            # The customer speaks of a recall we do not know: a person checks the notice.
            a.add("R13", Outcome.REVIEW, "R13.unknown")
        else:
            a.add("R13", Outcome.PASS, "R13.pass")


def r14_adverse_event(a: _Assessment) -> None:
    if a.group is not ReasonGroup.ADVERSE_EVENT:
        a.add("R14", Outcome.PASS, "R14.pass")
        return
    reason = a.ctx.request.reason
    said = reason.code in ADVERSE_EVENT_CODES or reason.injury
    # Only the customer's own words (a code, the injury flag, or a certain term) make it an
    # adverse event outright; a doubtful word asks a person to decide, with the same hold on
    # the unit and the same deadline, since the clock runs from the day we were told.
    doubtful = not said and a.injury.level is InjuryLevel.POSSIBLE
    if said or not a.injury.terms:
        a.add("R14", Outcome.REVIEW, "R14.review")
    else:
        terms = "、".join(f"“{t}”" for t in a.injury.terms[:5])
        a.add("R14", Outcome.REVIEW, "R14.possible" if doubtful else "R14.words", terms=terms)
    jurisdiction = a.ctx.policy.jurisdiction
    severity = reason.severity
    deadlines = AE_DEADLINE_DAYS[jurisdiction]
    days = deadlines[severity] if severity else min(deadlines.values())
    what = a.text(f"R14.severity.{severity.value if severity else 'unknown'}")
    aware = a.ctx.local_date(a.ctx.request.requested_at)
    a.obligations.append(Obligation(
        ObligationKind.ADVERSE_EVENT_REPORT, aware + timedelta(days=days),
        a.text("R14.report_if_harmed" if doubtful else "R14.report", severity=what, days=days,
               source=AE_SOURCE[jurisdiction]), "R14"))


def r15_qualification(a: _Assessment) -> None:
    customer = a.ctx.request.customer
    before = len(a.results)
    if customer.type is CustomerType.BUSINESS:
        licence = customer.licence
        if licence is None:
            a.add("R15", Outcome.REVIEW, "R15.no_licence")
        else:
            if licence.expires_on is not None and licence.expires_on < a.ctx.today:
                a.add("R15", Outcome.REVIEW, "R15.expired", number=licence.number,
                      expires=licence.expires_on.isoformat())
            for f in a.facts:
                cls = f.line.device_class
                if cls is not None and cls != "I" and cls not in licence.scope_classes:
                    a.add("R15", Outcome.REVIEW, "R15.scope", f.index, cls=cls)
    else:
        for f in a.facts:
            if f.flags.professional_only:
                a.add("R15", Outcome.REVIEW, "R15.professional", f.index, sku=f.sku)
    if len(a.results) == before:
        a.add("R15", Outcome.PASS, "R15.pass")


def r16_udi(a: _Assessment) -> None:
    for f in a.facts:
        for scan, udi, error in f.udis:
            if udi is None:
                a.identity_doubts[f.index] = "R16"
                a.add("R16", Outcome.REVIEW, "R16.invalid", f.index, scan=scan, error=error)
                continue
            mismatches = udi_mismatches(udi, gtin=f.line.gtin or f.flags.gtin,
                                        lot=f.line.lot, serial=f.line.serial,
                                        expiry=f.line.expiry_date)
            for name, detail in mismatches:
                a.identity_doubts[f.index] = "R16"
                a.add("R16", Outcome.REVIEW, "R16.mismatch", f.index, field=name,
                      detail=detail)
            if not mismatches:
                a.add("R16", Outcome.PASS, "R16.pass", f.index)


def r17_retention(a: _Assessment) -> None:
    for f in a.facts:
        if f.implantable:
            a.add("R17", Outcome.PASS, "R17.permanent", f.index, sku=f.sku)


def r19_frequent(a: _Assessment) -> None:
    policy = a.ctx.policy
    since = a.ctx.now - timedelta(days=policy.frequent_refund_days)
    count = sum(1 for at in a.ctx.previous_requests if since <= at <= a.ctx.now)
    if count >= policy.frequent_refund_count:
        a.add("R19", Outcome.REVIEW, "R19.review", count=count,
              days=policy.frequent_refund_days, limit=policy.frequent_refund_count)
    else:
        a.add("R19", Outcome.PASS, "R19.pass", count=count, days=policy.frequent_refund_days)


def r20_amount(a: _Assessment) -> None:
    # An exchange gives the returned lines' worth back, in goods and money together.
    request = a.ctx.request
    requested = request.lines_value if request.is_exchange else request.requested
    limit = a.ctx.policy.auto_approve_limits.get(requested.currency)
    if limit is None:
        a.add("R20", Outcome.REVIEW, "R20.no_limit", currency=requested.currency)
    elif requested.amount > limit:
        a.add("R20", Outcome.REVIEW, "R20.over", amount=str(requested), limit=limit,
              currency=requested.currency)
    else:
        a.add("R20", Outcome.PASS, "R20.pass", amount=str(requested))


RULES = (r14_adverse_event, r13_recall, r01_shipment, r16_udi, r15_qualification,
         r02_window, r03_custom_made, r04_exclusion, r05_seal, r06_quality, r08_inspection,
         r09_expiry, r10_r11_r12_storage, r17_retention, r19_frequent, r20_amount)


# ------------------------------------------------------------------ dispositions


def _disposition(a: _Assessment, f: LineFacts) -> LineDisposition:
    disposition, rule = _where(a, f)
    return LineDisposition(f.index, f.sku, disposition, rule, f.lot, f.serial)


def _where(a: _Assessment, f: LineFacts) -> tuple[Disposition, str]:
    if a.group is ReasonGroup.ADVERSE_EVENT:
        return Disposition.KEEP_AS_EVIDENCE, "R14"
    if f.index in a.recalls:
        return Disposition.QUARANTINE, "R13"
    if not a.is_return:
        return Disposition.NOT_RETURNED, "R08"
    if f.index in a.identity_doubts:
        return Disposition.QUARANTINE, a.identity_doubts[f.index]
    if f.expiry is not None and f.expiry < a.ctx.today:
        return Disposition.SCRAP, "R09"
    if f.expiry is None and f.has_shelf_life:
        return Disposition.SCRAP, "R09"
    consumer = a.ctx.request.customer.type is CustomerType.CONSUMER
    if f.sterile and (f.opened or consumer):
        return Disposition.SCRAP, "R10"
    if f.seal_broken:
        return Disposition.SCRAP, "R05"
    if f.cold_chain and f.inspection is not None and f.inspection.temperature_log_ok is not True:
        return Disposition.QUARANTINE, "R11"
    if a.ctx.request.reason.code in MANUFACTURER_FAULT_CODES:
        return Disposition.RETURN_TO_MANUFACTURER, "R06"
    if f.inspection is not None and (not f.inspection.passed
                                     or f.inspection.condition != "as_new"):
        return Disposition.SCRAP, "R08" if not f.inspection.passed else "R12"
    if f.no_reason_excluded:
        return Disposition.SCRAP, "R04"
    if f.inspection is None:
        return Disposition.PENDING_INSPECTION, "R08"
    if f.box_opened and not a.ctx.policy.open_box_resale_for(f.sku):
        return Disposition.QUARANTINE, "R12"
    return Disposition.RESTOCK, "R08"


def _refund_deadline(a: _Assessment, outcome: Outcome) -> Iterable[Obligation]:
    if outcome is Outcome.DENY:
        return
    if a.ctx.request.is_exchange and not a.ctx.request.requested.is_positive():
        return  # a straight swap pays nothing back: no refund is due by any date
    days = a.ctx.policy.refund_deadline_days
    if not a.is_return:
        if outcome is Outcome.APPROVE:
            yield Obligation(ObligationKind.REFUND_DEADLINE, a.ctx.today + timedelta(days=days),
                             a.text("R07.approved", days=days), "R07")
        return
    if a.ctx.inspections:
        yield Obligation(ObligationKind.REFUND_DEADLINE, a.ctx.today + timedelta(days=days),
                         a.text("R07.received", days=days), "R07")
    else:
        yield Obligation(ObligationKind.REFUND_DEADLINE, None,
                         a.text("R07.waiting", days=days), "R07")


__all__ = ["MedicalDeviceRuleSet", "ReasonGroup", "mentions_injury",
           "reason_group"]
