"""Receive goods: find the case by what is on the parcel or the unit (references, GS1 scans
in every form, MA codes), record the inspection per line, see where each unit goes. Real
PostgreSQL and Redis; the cases come in through the signed webhook and the worker."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient

from refundbridge.api.console.receive import GS_SIGN, TEXTS, url_scan, visible_scan
from refundbridge.api.console.web import catalog
from refundbridge.bootstrap import Container
from refundbridge.core.udi import parse_udi
from refundbridge.store.receiving import cases_for_unit, gtin_forms
from tests.browser import chromium, needs_chromium, offline_page, serve, shot
from tests.conftest import drain
from tests.console.conftest import OTHER_SHOP, PASSWORD, Session
from tests.factories import SHOP, request_body, signed

GTIN = "09506000134352"
OTHER_GTIN = "04006381333931"
MA_DI = "MA.156.M0.100001.10234567"
EXPIRY = date(2028, 6, 30)
GS = "\x1d"


def _yymmdd(day: date) -> str:
    return day.strftime("%y%m%d")


def _line(**fields: Any) -> dict[str, Any]:
    line: dict[str, Any] = {
        "sku": "GLU-METER-01", "name": "血糖仪 Glucose meter", "quantity": 1,
        "unit_price": "199.00", "device_class": "II", "gtin": GTIN, "lot": "L2401",
        "serial": "S1001", "expiry_date": EXPIRY.isoformat(), "udi": None, "sterile": False,
        "package_opened": False, "cold_chain": False, "custom_made": False}
    line.update(fields)
    return line


def open_return(client: TestClient, erp: Any, container: Container, *, shop: str = SHOP,
                line: dict[str, Any] | None = None, kind: str = "return_and_refund",
                **overrides: Any) -> tuple[str, dict[str, Any]]:
    """A return case, through the signed webhook and the worker, waiting for its goods."""
    unit = line or _line()
    body = request_body(kind=kind, lines=[unit], requested_amount="199.00",
                        **{"order.paid_total": "199.00"}, **overrides)
    erp.add_invoice(body["order"]["id"], [(unit["sku"], unit["quantity"], "199.00")])
    raw, headers = signed(body)
    answer = client.post(f"/webhooks/{shop}/generic", content=raw, headers=headers)
    assert answer.status_code == 202, answer.text
    case_id = str(answer.json()["case_id"])
    drain(container)
    expected = "awaiting_return" if kind == "return_and_refund" else "closed"
    assert container.reads.case_detail(case_id)["state"] == expected
    return case_id, body


@pytest.fixture
def zhao(login_as: Callable[..., Session]) -> Session:
    return login_as("zhao", "warehouse")


def _search(session: Session, text: str) -> Any:
    """The search form, as the scanner fills it in (posted: a URL can carry no GS)."""
    return session.post("/console/receive", {"q": text})


def _form_of(answer: Any) -> tuple[str, dict[str, list[str]]]:
    assert answer.status_code == 303, answer.text
    where = urlsplit(answer.headers["location"])
    return where.path, parse_qs(where.query)


def _good(line: int = 0, **fields: str) -> dict[str, str]:
    form = {f"seal_{line}": "yes", f"condition_{line}": "as_new", f"passed_{line}": "yes",
            f"quantity_{line}": "1", f"udi_{line}": ""}
    form.update({f"{k}_{line}": v for k, v in fields.items()})
    return form


# ---- finding the case ---------------------------------------------------------------------

def test_the_search_field_comes_first_and_keeps_group_separators(zhao: Session) -> None:
    page = zhao.client.get("/console/receive")
    assert page.status_code == 200
    main = page.text.split('<main id="main">', 1)[1]
    first = re.search(r"<input[^>]*>", main)
    assert first is not None
    assert 'name="q"' in first.group() and "data-scan" in first.group()
    assert "autofocus" in first.group()


SCANS: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
    ("GS1 element string with group separator",
     lambda b: f"01{GTIN}17{_yymmdd(EXPIRY)}10L2401{GS}21S1001"),
    ("GS1 DataMatrix with AIM prefix",
     lambda b: f"]d201{GTIN}17{_yymmdd(EXPIRY)}10L2401{GS}21S1001{GS}"),
    ("GS1 HRI", lambda b: f"(01){GTIN}(17){_yymmdd(EXPIRY)}(10)L2401(21)S1001"),
    ("GS1 Digital Link",
     lambda b: f"https://id.gs1.org/01/{GTIN}/10/L2401/21/S1001?17={_yymmdd(EXPIRY)}"),
    ("GS1 HRI with a serial only", lambda b: f"(01){GTIN}(21)S1001"),
    ("case id", lambda b: b["case_id"]),
    ("return id", lambda b: b["external_id"]),
    ("order id", lambda b: b["order"]["id"]),
]


def test_a_scan_or_a_reference_goes_straight_to_the_receipt_form(
        zhao: Session, console_container: Container, providers: Any) -> None:
    _, _, erp = providers
    wanted, body = open_return(zhao.client, erp, console_container)
    # Another unit of the same product, another serial; and the same unit in another shop.
    open_return(zhao.client, erp, console_container, line=_line(serial="S1002"))
    open_return(zhao.client, erp, console_container, shop=OTHER_SHOP)
    for what, scan in SCANS:
        text = scan({**body, "case_id": wanted})
        path, query = _form_of(_search(zhao, text))
        assert path == f"/console/receive/{wanted}", what
        if what.startswith("GS1"):
            # The unit's scan goes with it, for its line of the form.
            assert query == {"line": ["0"], "scan": [url_scan(text.strip())]}, what
            form = zhao.client.get(path, params={"line": 0, "scan": query["scan"][0]})
            assert form.status_code == 200, what
            assert f'value="{text.strip()}"' in form.text, what
        else:
            assert query == {}, what


def test_a_link_may_search_writing_the_group_separator_as_its_symbol(
        zhao: Session, console_container: Container, providers: Any) -> None:
    _, _, erp = providers
    wanted, _ = open_return(zhao.client, erp, console_container)
    answer = zhao.client.get("/console/receive", params={"q": f"01{GTIN}10L2401{GS_SIGN}21S1001"},
                             follow_redirects=False)
    assert _form_of(answer)[0] == f"/console/receive/{wanted}"
    # A real GS in a URL is refused before any page (api/middleware.py).
    assert zhao.client.get("/console/receive", params={"q": f"10L1{GS}21S1"}).status_code == 422


def test_an_ma_code_finds_the_case_through_the_udi_of_its_sales_record(
        zhao: Session, console_container: Container, providers: Any) -> None:
    _, _, erp = providers
    ma_line = _line(gtin=None, serial=None, lot="LA2402", udi=f"{MA_DI}.LLA2402")
    wanted, _ = open_return(zhao.client, erp, console_container, line=ma_line)
    # The same lot of another MA product is not this unit.
    open_return(zhao.client, erp, console_container,
                line=_line(gtin=None, serial=None, lot="LA2402",
                           udi="MA.156.M0.100001.10234568.LLA2402"))
    path, query = _form_of(_search(zhao, f"{MA_DI}.V{EXPIRY:%Y%m%d}.LLA2402.S77"))
    assert path == f"/console/receive/{wanted}" and query["line"] == ["0"]


def test_a_unit_in_several_cases_offers_a_choice_waiting_ones_first(
        zhao: Session, console_container: Container, providers: Any) -> None:
    _, _, erp = providers
    first, _ = open_return(zhao.client, erp, console_container, line=_line(serial=None))
    second, _ = open_return(zhao.client, erp, console_container, line=_line(serial=None))
    for scan in (f"(01){GTIN}(10)L2401", GTIN, GTIN[1:]):  # HRI, bare GTIN-14 and -13
        page = _search(zhao, scan)
        assert page.status_code == 200, scan
        assert first in page.text and second in page.text, scan
        assert page.text.count('class="button primary big"') == 2, scan
    # Once one is received, the scan goes straight to the other.
    assert zhao.post(f"/console/receive/{first}", _good()).status_code == 303
    path, _ = _form_of(_search(zhao, f"(01){GTIN}(10)L2401"))
    assert path == f"/console/receive/{second}"


NOT_FOUND = [
    (f"(01){OTHER_GTIN}(21)S1001", "No case in your shops is about this unit."),
    (f"01{GTIN}21S9999", "No case in your shops is about this unit."),
    ("RMA-NOT-THERE", "it is not a UDI that can be read"),
    ("(01)09506000134353(21)S1", "bad GTIN"),  # bad check digit
    (f"01{GTIN}10L24011727123121S1", "group separator"),  # the GS was dropped
    (f"01{GTIN}\x0021S1", "control character U+0000"),
]


def test_nothing_found_says_why_and_keeps_the_scan(zhao: Session,
                                                   console_container: Container,
                                                   providers: Any) -> None:
    _, _, erp = providers
    open_return(zhao.client, erp, console_container)
    for scan, says in NOT_FOUND:
        page = _search(zhao, scan)
        assert page.status_code == 200, scan
        assert says in page.text, scan
        assert f'value="{scan.replace(chr(0), "")}"' in page.text, scan


def test_another_shops_case_is_not_found_by_any_reference(
        zhao: Session, console_container: Container, providers: Any) -> None:
    _, _, erp = providers
    theirs, body = open_return(zhao.client, erp, console_container, shop=OTHER_SHOP)
    for text in (theirs, body["external_id"], body["order"]["id"], f"(01){GTIN}(21)S1001"):
        page = _search(zhao, text)
        assert page.status_code == 200 and 'data-testid="receive-message"' in page.text
        assert f"/console/receive/{theirs}" not in page.text
    assert zhao.client.get(f"/console/receive/{theirs}").status_code == 404
    assert zhao.post(f"/console/receive/{theirs}", _good()).status_code == 404
    assert zhao.client.get(f"/console/receive?case={theirs}").status_code == 404


def test_the_case_page_link_opens_the_form(zhao: Session, console_container: Container,
                                           providers: Any) -> None:
    _, _, erp = providers
    case_id, _ = open_return(zhao.client, erp, console_container)
    page = zhao.client.get(f"/console/receive?case={case_id}")
    assert page.status_code == 200 and "Record the receipt" in page.text
    assert 'name="seal_0"' in page.text and 'name="temperature_0"' not in page.text


def test_the_lookup_matches_gtins_as_sold_and_ranks_serials_first(
        zhao: Session, console_container: Container, providers: Any) -> None:
    assert gtin_forms("00000095060001") == ["00000095060001", "0000095060001",
                                            "000095060001", "95060001"]
    _, _, erp = providers
    as_13, _ = open_return(zhao.client, erp, console_container,
                           line=_line(gtin=GTIN[1:], serial=None))
    exact, _ = open_return(zhao.client, erp, console_container)
    engine = console_container.reads.engine
    today = date(2026, 12, 1)
    by_serial = cases_for_unit(engine, parse_udi(f"(01){GTIN}(10)L2401(21)S1001",
                                                 today=today), {SHOP}, today=today)
    assert [(m.case_id, m.matched_on) for m in by_serial] == [(exact, ("gtin", "serial"))]
    by_lot = cases_for_unit(engine, parse_udi(f"(01){GTIN}(10)L2401", today=today), {SHOP},
                            today=today)
    assert {m.case_id for m in by_lot} == {as_13, exact}
    assert cases_for_unit(engine, parse_udi(f"(01){GTIN}", today=today), set(),
                          today=today) == []


def test_a_line_without_a_gtin_is_known_by_the_shops_policy_or_by_its_lot(
        zhao: Session, console_container: Container, providers: Any) -> None:
    _, _, erp = providers
    plain, _ = open_return(zhao.client, erp, console_container,
                           line=_line(gtin=None, serial=None, lot="LX77"))
    engine = console_container.reads.engine
    today = date(2026, 12, 1)
    ma = parse_udi(f"{MA_DI}.LLX77", today=today)
    policy = cases_for_unit(engine, ma, {SHOP}, today=today,
                            policy_skus={SHOP: ["GLU-METER-01"]})
    assert [(m.case_id, m.line, m.matched_on) for m in policy] == [(plain, 0, ("gtin", "lot"))]
    # With nothing known of its device identifier, the equal lot alone still finds it …
    by_lot = cases_for_unit(engine, ma, {SHOP}, today=today)
    assert [(m.case_id, m.matched_on) for m in by_lot] == [(plain, ("lot",))]
    # … but never a lot that differs, nor a unit with neither lot nor serial.
    assert cases_for_unit(engine, parse_udi(f"{MA_DI}.LLX78", today=today), {SHOP},
                          today=today) == []
    assert cases_for_unit(engine, parse_udi(MA_DI, today=today), {SHOP}, today=today) == []


# ---- recording the receipt ----------------------------------------------------------------

def test_a_receipt_is_recorded_by_the_operator_and_shows_where_units_go(
        zhao: Session, console_container: Container, providers: Any) -> None:
    _, stripe_fake, erp = providers
    case_id, _ = open_return(zhao.client, erp, console_container)
    scan = f"]d201{GTIN}17{_yymmdd(EXPIRY)}10L2401{GS}21S1001"
    answer = zhao.post(f"/console/receive/{case_id}", _good(udi=scan))
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/console/receive/{case_id}/done"
    done = zhao.client.get(answer.headers["location"])
    assert done.status_code == 200
    assert 'data-disposition="restock"' in done.text and "Back to stock" in done.text
    assert "Next return" in done.text and "Refund deadline" in done.text
    assert html.escape(visible_scan(scan)) in done.text  # ]d2…L2401<GS>21S1001

    case = console_container.reads.case_detail(case_id)
    assert case["inspections"] == [{
        "line": 0, "seal_intact": True, "condition": "as_new", "inspector": "zhao",
        "udi_scan": scan, "passed": True, "quantity": 1, "temperature_log_ok": None}]
    received = [e for e in case["timeline"] if e["to_state"] == "received_goods"]
    assert [e["actor"] for e in received] == ["operator:zhao"]
    drain(console_container)
    assert console_container.reads.case_detail(case_id)["state"] == "closed"
    assert len(stripe_fake.posts) == 1
    # Received once: the form now says so (409), and a second post records nothing.
    again = zhao.client.get(f"/console/receive/{case_id}")
    assert again.status_code == 409 and "already received" in again.text
    assert zhao.post(f"/console/receive/{case_id}", _good()).status_code == 409
    assert len(console_container.reads.case_detail(case_id)["inspections"]) == 1


def test_a_sterile_pack_with_a_broken_seal_is_never_restocked(
        zhao: Session, console_container: Container, providers: Any) -> None:
    _, _, erp = providers
    case_id, _ = open_return(
        zhao.client, erp, console_container,
        line=_line(sku="DRESS-STERILE-10", name="无菌敷料 Sterile dressing", sterile=True),
        **{"reason.code": "damaged_on_arrival", "reason.text": "外包装破损"})
    form = zhao.client.get(f"/console/receive/{case_id}")
    assert "Sterile" in form.text
    answer = zhao.post(f"/console/receive/{case_id}", _good(seal="no", condition="damaged",
                                                             passed="no"))
    assert answer.status_code == 303
    done = zhao.client.get(answer.headers["location"])
    dispositions = re.findall(r'data-disposition="([a-z_]+)"', done.text)
    assert dispositions == ["scrap"]
    assert "Destroy (scrap), never restock" in done.text
    assert [d["disposition"] for d in console_container.reads.case_detail(case_id)[
        "dispositions"]] == ["scrap"]


def test_a_cold_chain_line_asks_for_its_temperature_record(
        zhao: Session, console_container: Container, providers: Any) -> None:
    _, _, erp = providers
    case_id, _ = open_return(zhao.client, erp, console_container,
                             line=_line(cold_chain=True, serial=None))
    form = zhao.client.get(f"/console/receive/{case_id}")
    assert 'name="temperature_0"' in form.text and "Cold chain" in form.text
    missing = zhao.post(f"/console/receive/{case_id}", _good())
    assert missing.status_code == 422
    assert "Line 1 (GLU-METER-01), Temperature record: choose one" in missing.text
    answer = zhao.post(f"/console/receive/{case_id}", _good(temperature="none"))
    assert answer.status_code == 303
    done = zhao.client.get(answer.headers["location"])
    assert re.findall(r'data-disposition="([a-z_]+)"', done.text) == ["quarantine"]
    assert console_container.reads.case_detail(case_id)["inspections"][0][
        "temperature_log_ok"] is None


BAD_FIELDS: list[tuple[dict[str, str | None], str]] = [
    ({"condition_0": None}, "Line 1 (GLU-METER-01), Condition: choose one"),
    ({"seal_0": "maybe"}, "Line 1 (GLU-METER-01), Seal intact: choose yes or no"),
    ({"passed_0": None}, "Line 1 (GLU-METER-01), Inspection passed: choose yes or no"),
    ({"quantity_0": "2"}, "Line 1 (GLU-METER-01), Quantity received: a whole number from 1 to 1"),
    ({"quantity_0": "0"}, "Line 1 (GLU-METER-01), Quantity received: a whole number from 1 to 1"),
    ({"quantity_0": "-1"}, "Line 1 (GLU-METER-01), Quantity received: a whole number from 1 to 1"),
    ({"udi_0": "(01)09506000134353(21)S1"},
     "Line 1 (GLU-METER-01), UDI scan: does not parse: bad GTIN"),
    ({"udi_0": "01" + GTIN + "\x07"}, "Line 1 (GLU-METER-01), UDI scan: does not parse:"),
]


def test_a_bad_field_names_the_line_and_records_nothing(
        zhao: Session, console_container: Container, providers: Any) -> None:
    _, _, erp = providers
    case_id, _ = open_return(zhao.client, erp, console_container)
    for change, names in BAD_FIELDS:
        form = {k: v for k, v in {**_good(), **change}.items() if v is not None}
        answer = zhao.post(f"/console/receive/{case_id}", form)
        assert answer.status_code == 422, names
        assert names in answer.text.replace("&#39;", "'"), names
        # The form comes back as it was filled in, and nothing was stored.
        assert 'value="as_new" required checked' in answer.text or "condition_0" in change
        case = console_container.reads.case_detail(case_id)
        assert case["state"] == "awaiting_return" and case["inspections"] == [], names
    # Every field wrong at once: each is named.
    answer = zhao.post(f"/console/receive/{case_id}", {"quantity_0": "x"})
    assert answer.status_code == 422
    assert answer.text.count('<li><a href="#f-') == 4


def test_a_refund_without_goods_has_nothing_to_receive(
        zhao: Session, console_container: Container, providers: Any) -> None:
    _, _, erp = providers
    case_id, _ = open_return(zhao.client, erp, console_container, kind="refund_only")
    page = zhao.client.get(f"/console/receive/{case_id}")
    assert page.status_code == 409 and "no goods to receive" in page.text
    assert zhao.post(f"/console/receive/{case_id}", _good()).status_code == 409


def test_only_the_warehouse_and_admins_receive(login_as: Callable[..., Session],
                                               console_container: Container,
                                               providers: Any) -> None:
    _, _, erp = providers
    reviewer = login_as("li.na", "reviewer")
    case_id, _ = open_return(reviewer.client, erp, console_container)
    assert reviewer.client.get("/console/receive").status_code == 403
    assert reviewer.client.get(f"/console/receive/{case_id}").status_code == 403
    assert reviewer.post(f"/console/receive/{case_id}", _good()).status_code == 403
    assert console_container.reads.case_detail(case_id)["inspections"] == []
    admin = login_as("root", "admin", ())
    assert admin.post(f"/console/receive/{case_id}", _good()).status_code == 303


def test_a_receipt_needs_the_csrf_token(zhao: Session, console_container: Container,
                                        providers: Any) -> None:
    _, _, erp = providers
    case_id, _ = open_return(zhao.client, erp, console_container)
    answer = zhao.client.post(f"/console/receive/{case_id}", data=_good(),
                              follow_redirects=False)
    assert answer.status_code == 403
    forged = zhao.client.post(f"/console/receive/{case_id}",
                              data={**_good(), "csrf_token": "x" * 40},
                              follow_redirects=False)
    assert forged.status_code == 403
    assert console_container.reads.case_detail(case_id)["inspections"] == []


def test_the_pages_speak_chinese(zhao: Session, console_container: Container,
                                 providers: Any) -> None:
    _, _, erp = providers
    case_id, _ = open_return(zhao.client, erp, console_container)
    zhao.client.cookies.set("rb_lang", "zh-CN")
    assert "扫描包裹或产品" in zhao.client.get("/console/receive").text
    form = zhao.client.get(f"/console/receive/{case_id}").text
    assert "确认收货" in form and "密封完好" in form
    bad = zhao.post(f"/console/receive/{case_id}", {**_good(), "quantity_0": "5"})
    assert "第1行（GLU-METER-01），实收数量：须为 1 到 1 之间的整数" in bad.text
    assert all(text in catalog() for text in TEXTS)


# ---- at the bench, in a real browser ------------------------------------------------------

@needs_chromium
def test_a_scanner_typing_a_gs1_scan_finds_the_case_and_records_the_receipt(
        zhao: Session, console_container: Container, console_app: Any, providers: Any,
        tmp_path: Path) -> None:
    """Chromium at a tablet's size; the "scanner" types the scan, sends GS as Ctrl+] (as
    many scanners do; console.js writes the real character) and ends with Enter."""
    _, _, erp = providers
    case_id, _ = open_return(zhao.client, erp, console_container,
                             line=_line(cold_chain=True))
    elsewhere: list[str] = []
    with serve(console_app) as base_url, chromium() as browser:
        page = offline_page(browser, base_url, elsewhere, width=820, height=1180)
        page.goto(f"{base_url}/console/login?next=/console/receive")
        page.get_by_label("Name").fill("zhao")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url("**/console/receive")
        shot(page, tmp_path, "receive-search.png")
        # The search field has the focus: the scanner types straight into it.
        page.keyboard.type(f"]d201{GTIN}17{_yymmdd(EXPIRY)}10L2401")
        page.keyboard.press("Control+BracketRight")
        page.keyboard.type("21S1001")
        page.keyboard.press("Enter")
        page.wait_for_url(f"**/console/receive/{case_id}?*")
        scanned = page.locator("input[name=udi_0]").input_value()
        assert scanned == f"]d201{GTIN}17{_yymmdd(EXPIRY)}10L2401{GS}21S1001"
        # Enter after a scan in the form moves on instead of sending the form half done.
        page.locator("input[name=udi_0]").press("Enter")
        assert "/done" not in page.url and page.locator("#f-seal-0 input").first.is_visible()
        for group, label in (("seal", "Yes"), ("condition", "As new"),
                             ("temperature", "Record came back, in range"), ("passed", "Yes")):
            page.locator(f"#f-{group}-0").get_by_text(label, exact=True).click()
        shot(page, tmp_path, "receive-form.png", full_page=True)
        page.get_by_role("button", name="Record the receipt").click()
        page.wait_for_url(f"**/console/receive/{case_id}/done")
        assert page.locator('[data-disposition="restock"]').is_visible()
        shot(page, tmp_path, "receive-done.png", full_page=True)
        page.get_by_role("link", name="Next return").click()
        page.wait_for_url("**/console/receive")
    assert elsewhere == []
    case = console_container.reads.case_detail(case_id)
    assert case["inspections"][0]["udi_scan"] == scanned
    assert case["inspections"][0]["temperature_log_ok"] is True
