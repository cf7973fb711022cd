"""Receive goods: the warehouse bench, on a tablet with a USB barcode scanner.

1. `/console/receive`: one search field, the first thing on the page, that takes what is on
   the parcel or the unit: our case id, the storefront's return (RMA) id, the order id, or a
   scanned UDI (GS1 element string with group separators and AIM prefix, GS1 HRI, GS1
   Digital Link, bare GTIN, China MA code; `core.udi.parse_udi`). A reference is tried
   first, then the UDI (`store.receiving`). One case → its receipt form; several → a list;
   none → a message, the scan kept in the field.
2. `/console/receive/{case_id}`: one inspection per request line (UDI of the returned unit,
   seal, condition, temperature record for cold-chain lines, passed, quantity). Posting it
   records the receipt (`services.record_receipt`) under the operator's name; a bad field
   re-renders the form (422) naming the line and the field, and records nothing.
3. `/console/receive/{case_id}/done`: where each unit goes now (the rules' dispositions),
   the deadlines the receipt started, and a big "Next return" button.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.datastructures import FormData

from refundbridge.api.console.labels import DISPOSITIONS, OBLIGATIONS, RULES, STATES
from refundbridge.api.console.web import (
    PREFIX,
    ConsoleContext,
    ConsoleUser,
    ConsoleWriter,
    redirect,
    render,
)
from refundbridge.api.deps import ApiDeps, AppDeps
from refundbridge.api.schemas import InspectionIn
from refundbridge.core import services
from refundbridge.core.access import Permission
from refundbridge.core.errors import IllegalTransition, InvalidUdi
from refundbridge.core.lifecycle import CaseState
from refundbridge.core.model import Inspection
from refundbridge.core.request import MAX_QUANTITY, RequestKind
from refundbridge.core.udi import UdiData, UdiScheme, gtin14, parse_udi
from refundbridge.store.receiving import ReceivingMatch, ReceivingReads

router = APIRouter(prefix=PREFIX, include_in_schema=False)

HOME = f"{PREFIX}/receive"
# What a scan may not contain: control characters other than GS (as `core.request.UdiScan`).
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1c\x1e\x1f\x7f-\x9f]")
SCAN_MAX = 512  # as InspectionIn.udi_scan

# The form's fields per line, in the order of the form, with the label the page shows.
FIELDS: dict[str, str] = {
    "udi": "UDI scan",
    "seal": "Seal intact",
    "condition": "Condition",
    "temperature": "Temperature record",
    "passed": "Inspection passed",
    "quantity": "Quantity received",
}
CONDITIONS: dict[str, str] = {"as_new": "As new", "damaged": "Damaged", "used": "Used"}
TEMPERATURES: dict[str, str] = {"yes": "Record came back, in range",
                                "no": "Record came back, out of range",
                                "none": "No record came back"}

MATCHED_ON: dict[str, str] = {
    "case_id": "case id", "external_id": "return id", "order_id": "order id",
    "gtin": "device identifier", "serial": "serial", "lot": "lot",
}

# Every text above goes through the page's translation (tests check each has its zh-CN).
TEXTS: tuple[str, ...] = (
    *FIELDS.values(), *CONDITIONS.values(), *TEMPERATURES.values(),
    *(label for label, _ in DISPOSITIONS.values()), *RULES.values(), *STATES.values(),
    *OBLIGATIONS.values(), *MATCHED_ON.values())


def _receiving(deps: ApiDeps) -> ReceivingReads:
    return ReceivingReads(deps.reads.engine)


def _today(deps: ApiDeps) -> date:
    return deps.api_services.clock().date()


# A URL may carry no control character (api/middleware.py), so a scan's group separators
# travel in links as the visible symbol for GS, U+241D; the console reads either as GS.
GS = "\x1d"
GS_SIGN = "\u241d"


def url_scan(text: str) -> str:
    """A scan as a URL can carry it: GS written as ␝."""
    return text.replace(GS, GS_SIGN)


def as_scanned(text: str) -> str:
    """The scan as the scanner sent it: ␝ back to GS."""
    return text.replace(GS_SIGN, GS)


def visible_scan(text: str) -> str:
    """A scan as a person reads it: GS shown as <GS> (few fonts draw ␝), any other control
    character as �."""
    return _CONTROL.sub("\ufffd", as_scanned(text)).replace(GS, "<GS>")


def _form_url(case_id: str, *, line: int | None = None, scan: str | None = None) -> str:
    url = f"{HOME}/{quote(case_id, safe='')}"
    if line is not None and scan:
        url += "?" + urlencode({"line": line, "scan": url_scan(scan)})
    return url


# ---- 1. find the case ---------------------------------------------------------------------

@dataclass
class Search:
    """What a scan found: matches, or why none."""

    text: str
    matches: list[ReceivingMatch] = field(default_factory=list)
    udi: UdiData | None = None
    invalid: str | None = None  # the InvalidUdi message, when it is no id and no UDI

    @property
    def by_unit(self) -> bool:
        return self.udi is not None


def _policy_skus(deps: ApiDeps, shops: list[str], udi: UdiData) -> dict[str, list[str]]:
    """Per shop, the SKUs whose policy GTIN is this unit's device identifier."""
    found: dict[str, list[str]] = {}
    for shop in shops:
        for sku, flags in deps.shop_policy(shop).sku_flags.items():
            if flags.gtin is None:
                continue
            if udi.scheme is UdiScheme.MA:
                same = flags.gtin.strip() == udi.gtin
            else:
                try:
                    same = gtin14(flags.gtin) == udi.gtin
                except InvalidUdi:
                    same = False
            if same:
                found.setdefault(shop, []).append(sku)
    return found


def find(deps: ApiDeps, user: ConsoleContext, text: str) -> Search:
    """A reference first (case id, return id, order id), then a UDI."""
    principal = user.principal
    reads = _receiving(deps)
    search = Search(text)
    control = _CONTROL.search(text)
    if control is not None:
        # Nothing to look up (and PostgreSQL cannot even compare a NUL).
        search.invalid = (f"contains the control character U+{ord(control.group()):04X}; "
                          "only the group separator (GS) belongs in a scan")
        return search
    search.matches = reads.cases_for_reference(text, principal.shops)
    if search.matches:
        return search
    try:
        udi = parse_udi(text, today=_today(deps))
    except InvalidUdi as exc:
        search.invalid = exc.message
        return search
    search.udi = udi
    shops = principal.visible(deps.shop_ids)
    search.matches = reads.cases_for_unit(udi, principal.shops, today=_today(deps),
                                          policy_skus=_policy_skus(deps, shops, udi))
    return search


def _expected(deps: ApiDeps, user: ConsoleContext) -> list[dict[str, Any]]:
    """The newest cases of the operator's shops waiting for their goods."""
    listed = deps.reads.list_cases(shop=None, state=CaseState.AWAITING_RETURN.value, limit=20,
                                   cursor=None, shops=user.principal.shops)
    items: list[dict[str, Any]] = listed["items"]
    return items


def _search_page(request: Request, user: ConsoleContext, deps: ApiDeps, *,
                 search: Search | None, status: int = 200) -> Response:
    return render(request, "receive.html", user, status=status, search=search,
                  q=_CONTROL.sub("", search.text) if search else "", shown=visible_scan,
                  expected=_expected(deps, user) if search is None else [],
                  states=STATES, matched_on=MATCHED_ON, form_url=_form_url)


async def _search(request: Request, user: ConsoleContext, deps: ApiDeps,
                  q: str | None) -> Response:
    user.principal.require(Permission.RECEIVE)
    if q is None or not q.strip():
        page: Response = await run_in_threadpool(_search_page, request, user, deps,
                                                 search=None)
        return page
    text = as_scanned(q.strip())[:SCAN_MAX]
    search = await run_in_threadpool(find, deps, user, text)
    if len(search.matches) == 1:
        match = search.matches[0]
        return redirect(_form_url(match.case_id, line=match.line,
                                  scan=text if search.by_unit else None))
    return _search_page(request, user, deps, search=search)


@router.get("/receive")
async def receive_home(request: Request, user: ConsoleUser, deps: AppDeps,
                       q: str | None = None, case: str | None = None) -> Response:
    """The search; `?case=<id>` (the case page's link) opens that case's form, `?q=` searches
    (a link cannot carry a group separator: write it as ␝)."""
    user.principal.require(Permission.RECEIVE)
    if case and case.strip():
        return redirect(_form_url(case.strip()))
    return await _search(request, user, deps, q)


@router.post("/receive")
async def receive_search(request: Request, user: ConsoleWriter, deps: AppDeps) -> Response:
    """The search form: posted, because a scan's group separators cannot go in a URL."""
    form = await request.form()
    q = form.get("q")
    return await _search(request, user, deps, q if isinstance(q, str) else None)


# ---- 2. the receipt form ------------------------------------------------------------------

@dataclass(frozen=True)
class FieldError:
    """One bad field: `text` is English with {placeholders} filled from `values` after
    translation; `detail` (a UDI's parse error) is shown as it is."""

    line: int
    name: str  # a key of FIELDS
    text: str
    values: Mapping[str, Any] = field(default_factory=dict)
    detail: str = ""


def _lines(deps: ApiDeps, case: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The request's lines with the shop's flags folded in (sterile, cold chain)."""
    policy = deps.shop_policy(case["shop_id"])
    lines = []
    for index, line in enumerate(case["lines"]):
        flags = policy.flags(line["sku"])
        lines.append({**line, "index": index,
                      "sterile": bool(line.get("sterile")) or flags.sterile,
                      "cold_chain": bool(line.get("cold_chain")) or flags.cold_chain,
                      "single_use": bool(line.get("single_use")) or flags.single_use,
                      "implantable": bool(line.get("implantable")) or flags.implantable,
                      "gtin": line.get("gtin") or flags.gtin})
    return lines


def _load(deps: ApiDeps, user: ConsoleContext, case_id: str) -> dict[str, Any]:
    """The case, if it is one of the operator's shops (else `NotFound`, as for no case)
    and the operator may receive goods (else `Forbidden`): the shop first, so that a role
    check never tells that another shop's case exists."""
    shop = deps.reads.case_shop(case_id)
    user.principal.require_shop(shop, f"case {case_id}")
    user.principal.require(Permission.RECEIVE)
    case: dict[str, Any] = deps.reads.case_detail(case_id)
    return case


def _blocked(request: Request, user: ConsoleContext, case: Mapping[str, Any]) -> Response:
    """The case has no goods to receive now: say why, with the way on (409)."""
    if case["kind"] == RequestKind.REFUND_ONLY.value:
        why = "This case is a refund without a return: there are no goods to receive."
    elif case["inspections"]:
        why = "The goods of this case were already received."
    else:
        why = "This case is not waiting for its goods."
    return render(request, "receive_blocked.html", user, status=409, case=case, why=why,
                  states=STATES)


def _form_page(request: Request, user: ConsoleContext, deps: ApiDeps,
               case: Mapping[str, Any], values: Mapping[str, str], *,
               errors: list[FieldError] | None = None, status: int = 200) -> Response:
    lines = _lines(deps, case)
    by_field = {(e.line, e.name): e for e in errors or []}
    return render(request, "receive_form.html", user, status=status, case=case, lines=lines,
                  values=values, errors=errors or [], by_field=by_field, fields=FIELDS,
                  conditions=CONDITIONS, temperatures=TEMPERATURES, states=STATES)


def _defaults(case: Mapping[str, Any], line: int | None, scan: str | None) -> dict[str, str]:
    values = {f"quantity_{i}": str(x["quantity"]) for i, x in enumerate(case["lines"])}
    if line is not None and scan and 0 <= line < len(case["lines"]):
        values[f"udi_{line}"] = as_scanned(scan)[:SCAN_MAX]
    return values


@router.get("/receive/{case_id}")
async def receipt_form(case_id: str, request: Request, user: ConsoleUser, deps: AppDeps,
                       line: int | None = None, scan: str | None = None) -> Response:
    case = await run_in_threadpool(_load, deps, user, case_id)
    # A return's or an exchange's goods come back; a refund without a return has none.
    if case["state"] != CaseState.AWAITING_RETURN.value or case["kind"] == \
            RequestKind.REFUND_ONLY.value:
        return _blocked(request, user, case)
    return _form_page(request, user, deps, case, _defaults(case, line, scan))


def _choice(form: FormData, name: str, allowed: Mapping[str, Any]) -> str | None:
    value = form.get(name)
    return value if isinstance(value, str) and value in allowed else None


def read_inspections(form: FormData, lines: list[dict[str, Any]], inspector: str,
                     today: date) -> tuple[list[Inspection], list[FieldError], dict[str, str]]:
    """The form's inspections, or every bad field (then no inspection at all)."""
    inspections: list[Inspection] = []
    errors: list[FieldError] = []
    values = {k: v for k, v in form.items() if isinstance(v, str) and k != "csrf_token"}
    yes_no = {"yes": True, "no": False}
    for line in lines:
        i = line["index"]
        found: list[FieldError] = []
        scan = as_scanned(str(form.get(f"udi_{i}") or "").strip())
        if len(scan) > SCAN_MAX:
            found.append(FieldError(i, "udi", "longer than {max} characters",
                                    {"max": SCAN_MAX}))
        elif scan:
            try:
                parse_udi(scan, today=today)
            except InvalidUdi as exc:
                found.append(FieldError(i, "udi", "does not parse:", detail=exc.message))
        seal = _choice(form, f"seal_{i}", yes_no)
        if seal is None:
            found.append(FieldError(i, "seal", "choose yes or no"))
        condition = _choice(form, f"condition_{i}", CONDITIONS)
        if condition is None:
            found.append(FieldError(i, "condition", "choose one"))
        temperature: bool | None = None
        if line["cold_chain"]:
            answer = _choice(form, f"temperature_{i}", TEMPERATURES)
            if answer is None:
                found.append(FieldError(i, "temperature", "choose one"))
            temperature = None if answer in (None, "none") else answer == "yes"
        passed = _choice(form, f"passed_{i}", yes_no)
        if passed is None:
            found.append(FieldError(i, "passed", "choose yes or no"))
        quantity_text = str(form.get(f"quantity_{i}") or "").strip()
        largest = min(int(line["quantity"]), MAX_QUANTITY)
        quantity = int(quantity_text) if quantity_text.isdigit() and len(quantity_text) < 7 \
            else None
        if quantity is None or not 1 <= quantity <= largest:
            found.append(FieldError(i, "quantity", "a whole number from 1 to {max}",
                                    {"max": largest}))
        if found:
            errors += found
            continue
        try:
            checked = InspectionIn.model_validate({
                "line": i, "seal_intact": yes_no[seal or "no"], "condition": condition,
                "inspector": inspector, "udi_scan": scan or None,
                "passed": yes_no[passed or "no"], "quantity": quantity,
                "temperature_log_ok": temperature})
        except ValidationError as exc:
            for problem in exc.errors():
                name = str(problem["loc"][0]) if problem["loc"] else "udi_scan"
                key = {"udi_scan": "udi", "quantity": "quantity"}.get(name, "udi")
                errors.append(FieldError(i, key, "does not parse:", detail=problem["msg"]))
            continue
        inspections.append(Inspection(**checked.model_dump()))
    return ([] if errors else inspections), errors, values


@router.post("/receive/{case_id}")
async def record_receipt(case_id: str, request: Request, user: ConsoleWriter,
                         deps: AppDeps) -> Response:
    case = await run_in_threadpool(_load, deps, user, case_id)
    # A return's or an exchange's goods come back; a refund without a return has none.
    if case["state"] != CaseState.AWAITING_RETURN.value or case["kind"] == \
            RequestKind.REFUND_ONLY.value:
        return _blocked(request, user, case)
    form = await request.form()
    inspections, errors, values = read_inspections(form, _lines(deps, case),
                                                   user.principal.name, _today(deps))
    if errors:
        return _form_page(request, user, deps, case, values, errors=errors, status=422)
    try:
        await run_in_threadpool(services.record_receipt, deps.api_services, case_id,
                                inspections, user.principal.actor)
    except IllegalTransition:
        # Received meanwhile, from another tablet or the API.
        fresh = await run_in_threadpool(_load, deps, user, case_id)
        return _blocked(request, user, fresh)
    return redirect(f"{HOME}/{quote(case_id, safe='')}/done")


# ---- 3. where the units go ----------------------------------------------------------------

@router.get("/receive/{case_id}/done")
async def receipt_result(case_id: str, request: Request, user: ConsoleUser,
                         deps: AppDeps) -> Response:
    case = await run_in_threadpool(_load, deps, user, case_id)
    if not case["inspections"]:
        return redirect(_form_url(case_id))
    lines = _lines(deps, case)
    inspections = {i["line"]: i for i in case["inspections"]}
    dispositions = {d["line"]: d for d in case["dispositions"]}
    rows = [{"line": line, "inspection": inspections.get(line["index"]),
             "disposition": dispositions.get(line["index"])} for line in lines]
    return render(request, "receive_done.html", user, case=case, rows=rows,
                  obligations=case["obligations"], dispositions=DISPOSITIONS, rules=RULES,
                  states=STATES, obligation_kinds=OBLIGATIONS, conditions=CONDITIONS,
                  shown=visible_scan)
