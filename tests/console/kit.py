"""Cases for the console's list, jobs and KPI tests: opened by a signed webhook, as a
storefront opens them, in either test shop."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.factories import SHOP, request_body, signed
from tests.fakes.erpnext import ERPNextFake


def open_in(client: TestClient, erp: ERPNextFake | None, shop: str = SHOP,
            **overrides: Any) -> str:
    """A new case of `shop` (its order known to the ERP fake, when one is given)."""
    body = request_body(**overrides)
    if erp is not None:
        erp.add_invoice(body["order"]["id"], [("GLU-METER-01", 2, "199.00")])
    raw, headers = signed(body)
    answer = client.post(f"/webhooks/{shop}/generic", content=raw, headers=headers)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["case_id"])


def listed(html: str) -> list[str]:
    """The case ids a list page shows, in its order."""
    import re

    return re.findall(r'<tr data-case="([^"]+)"', html)
