"""Builders for test inputs: normalized requests and signed webhook calls."""

from __future__ import annotations

import copy
import json
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from refundbridge.connectors.generic.webhooks import sign

SHOP = "acme-medical"
GENERIC_SECRET = "gsec_" + secrets.token_hex(16)
OPERATOR_TOKEN = "op_" + secrets.token_hex(16)
AUTH = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
# A named reviewer token (`api_tokens` in the test settings): the audit trail names its
# calls `token:li.na`, so a test can still say who acted.
REVIEWER = "li.na"
REVIEWER_ACTOR = f"token:{REVIEWER}"
REVIEWER_TOKEN = "rv_" + secrets.token_hex(16)
REVIEWER_AUTH = {"Authorization": f"Bearer {REVIEWER_TOKEN}"}


def request_body(**overrides: Any) -> dict[str, Any]:
    """A valid normalized request (a glucose-meter refund); `overrides` replace top-level keys,
    and dotted keys such as `order.paid_total` replace nested ones."""
    now = datetime.now(UTC)
    body: dict[str, Any] = {
        "external_id": "ext-" + secrets.token_hex(6),
        "kind": "refund_only",
        "order": {
            "id": "SO-" + secrets.token_hex(4),
            "currency": "CNY",
            "paid_total": "398.00",
            "placed_at": (now - timedelta(days=5)).isoformat(),
            "delivered_at": (now - timedelta(days=3)).isoformat(),
            "payment": {"provider": "stripe", "reference": "pi_3N" + secrets.token_hex(8)},
        },
        # A customer of their own per request, so the frequent-refund rule (R19) stays quiet.
        "customer": {"id": "cust-" + secrets.token_hex(4), "type": "consumer",
                     "email": "li.wei@example.com", "phone": "+8613800000000",
                     "locale": "zh-CN"},
        "lines": [{
            "sku": "GLU-METER-01", "name": "血糖仪 Glucose meter", "quantity": 2,
            "unit_price": "199.00", "device_class": "II", "lot": "L2401",
            "serial": None, "expiry_date": (now + timedelta(days=400)).date().isoformat(),
            "udi": None, "sterile": False, "package_opened": False, "cold_chain": False,
            "custom_made": False,
        }],
        "reason": {"code": "changed_mind", "text": "不需要了"},
        "requested_amount": "398.00",
        "requested_at": now.isoformat(),
    }
    body = copy.deepcopy(body)
    for key, value in overrides.items():
        target = body
        *path, last = key.split(".")
        for part in path:
            target = target[int(part)] if part.isdigit() else target[part]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value
    return body


def signed(body: dict[str, Any] | bytes, secret: str = GENERIC_SECRET,
           timestamp: int | None = None) -> tuple[bytes, dict[str, str]]:
    raw = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    ts = int(time.time()) if timestamp is None else timestamp
    return raw, {"Content-Type": "application/json",
                 "X-RefundBridge-Signature": sign(secret, raw, ts)}


def config_toml(database_url: str, *, payment: str = "sandbox_payment", header: str = "",
                sections: str = "") -> str:
    """A settings file for one generic-storefront shop on the sandbox ERP and notifier, as
    a process started by a test reads it; `header` adds top-level keys, `sections` tables."""
    return f"""
database_url = "{database_url}"
operator_tokens = ["{OPERATOR_TOKEN}"]
{header}
[shops.{SHOP}]
storefront = "generic"
payment = "{payment}"
erp = "sandbox_erp"
notifier = "sandbox_notifier"

[shops.{SHOP}.generic]
secret = "{GENERIC_SECRET}"
{sections}"""
