"""The demo shop: a small medical-device pharmacy, its catalogue, its policy and its recall list.

The policy flags the awkward SKUs (a sterile dressing excluded from no-reason return, a
cold-chain IVD reagent, a custom-made orthosis, an implantable screw); ordinary shoppers buy
only the `EVERYDAY` ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

SHOP = "demo-pharmacy"


@dataclass(frozen=True, slots=True)
class Product:
    sku: str
    name: str
    price: str  # CNY
    device_class: str
    flags: Mapping[str, Any] = field(default_factory=dict)  # `[policy.skus.<sku>]`


# GS1 China (690–699) GTINs with valid check digits, so scans of them parse.
GTIN_METER = "06901234560015"
GTIN_BP = "06901234560039"
GTIN_DRESSING = "06901234560046"
GTIN_HBA1C = "06901234560060"
GTIN_SCREW = "06901234560077"

CATALOGUE = {p.sku: p for p in (
    Product("GLU-METER-01", "血糖仪 Glucose meter", "199.00", "II", {"gtin": GTIN_METER}),
    # The meter's successor: what a customer exchanges the first one for (`sc-exchange`).
    Product("GLU-METER-02", "蓝牙血糖仪 Bluetooth glucose meter", "179.00", "II"),
    Product("GLU-STRIP-50", "血糖试纸 50 strips", "89.00", "II", {"shelf_life": True}),
    Product("BP-CUFF-ARM", "上臂式电子血压计 BP monitor", "329.00", "II", {"gtin": GTIN_BP}),
    # Opening the pack breaks the sterile barrier: excluded from no-reason return (R04).
    Product("DRESS-STER-10", "无菌敷贴 Sterile dressing x10", "35.50", "II",
            {"sterile": True, "single_use": True, "shelf_life": True,
             "no_reason_excluded": True, "gtin": GTIN_DRESSING}),
    Product("LENS-DAILY-30", "日抛隐形眼镜 Daily lenses 30", "159.00", "III",
            {"sterile": True, "single_use": True, "shelf_life": True}),
    Product("IVD-COVID-AG", "新冠抗原检测试剂 Antigen test", "45.00", "III",
            {"shelf_life": True}),
    # Sold to clinics: stored at 2–8 °C and run on a professional analyser.
    Product("IVD-HBA1C-20", "糖化血红蛋白检测试剂盒 HbA1c reagent kit (2-8 °C)", "420.00", "II",
            {"cold_chain": True, "shelf_life": True, "professional_only": True,
             "gtin": GTIN_HBA1C}),
    Product("ORTHO-KNEE-CM", "定制膝关节矫形器 Custom knee orthosis", "1880.00", "II",
            {"custom_made": True}),
    Product("IMPL-SCREW-45", "空心接骨螺钉 4.5 mm Cannulated bone screw", "260.00", "III",
            {"implantable": True, "sterile": True, "single_use": True, "shelf_life": True,
             "professional_only": True, "gtin": GTIN_SCREW}),
)}
# What ordinary shoppers buy; the special SKUs appear only in the scripted scenarios.
EVERYDAY = ("GLU-METER-01", "GLU-STRIP-50", "BP-CUFF-ARM", "DRESS-STER-10", "LENS-DAILY-30",
            "IVD-COVID-AG")
CURRENCIES = {"CNY": Decimal("1"), "USD": Decimal("0.14"), "EUR": Decimal("0.13"),
              "JPY": Decimal("21")}
REASON_TEXT = {
    "changed_mind": "不想要了 changed my mind",
    "no_longer_needed": "用不上了 no longer needed",
    "ordered_by_mistake": "买错了 ordered the wrong one",
    "defective": "开机无反应 does not switch on",
    "damaged_on_arrival": "收到时外包装破损 box crushed in transit",
    "wrong_item": "发错货 not what I ordered",
    "other": "其他原因 see chat",
}


def shop_policy() -> dict[str, Any]:
    """The shop's `[policy]` table, as it would stand in the TOML file."""
    return {
        "refund_timing": "on_receipt",
        "auto_approve_limits": {"CNY": "500", "USD": "70", "EUR": "70", "JPY": "10000"},
        "no_reason_window_days": 7,
        "frequent_refund_count": 3,
        "frequent_refund_days": 30,
        "jurisdiction": "CN",
        "timezone": "Asia/Shanghai",
        "skus": {p.sku: dict(p.flags) for p in CATALOGUE.values() if p.flags},
        # Told of every quality signal the returns raise (email, and SMS through the sandbox).
        "signals": {"quality_contact": {"name": "Wu", "email": "quality@demo-pharmacy.example.com",
                                        "phone": "+8613900139000", "locale": "zh-CN"}},
    }


def recall_csv(today: date) -> str:
    """The recall notices the shop received, as its spreadsheet exports them. The BP monitor
    row names the product by its GTIN-13, as printed on the notice."""
    return (
        "gtin,sku,lot,serial,class,notice_date,reference\n"
        f"{GTIN_BP[1:]},,BP2403,,II,{today - timedelta(days=10)},NMPA-RC-2025-0117\n"
        f",IVD-COVID-AG,AG2311,,III,{today - timedelta(days=60)},NMPA-RC-2025-0093\n"
        f",GLU-METER-01,GM2401,GM24010731,I,{today - timedelta(days=3)},NMPA-RC-2025-0131\n"
    )


# The recall campaign the demo opens once its cases are done: the BP monitor lot BP2403
# (NMPA-RC-2025-0117 on the recall list), which the sandbox ERP shipped to these customers.
CAMPAIGN_REFERENCE = "NMPA-RC-2025-0117"
CAMPAIGN_LOT = "BP2403"
CAMPAIGN_CONSIGNEES = 40


def campaign_shipments(today: date) -> list[dict[str, Any]]:
    """The sandbox ERP's deliveries of the recalled lot (and one of another lot, which the
    campaign must leave out): consumers with an email, most with a phone, some in Chinese."""
    rows = []
    for i in range(CAMPAIGN_CONSIGNEES):
        rows.append({
            "customer": f"CUST-BP-{i:03d}", "name": f"顾客 {i:03d}" if i % 2 else f"Buyer {i:03d}",
            "sku": "BP-CUFF-ARM", "quantity": 1 + (i % 4 == 0), "lot": CAMPAIGN_LOT,
            "document": f"DN-2025-{4000 + i}", "order_id": f"WEB-BP-{7000 + i}",
            "email": f"bp.buyer{i:03d}@example.com",
            "phone": f"+86139{i:08d}" if i % 3 else None,
            "locale": "zh-CN" if i % 2 else "en",
            "shipped_on": (today - timedelta(days=30 + i)).isoformat()})
    rows.append({"customer": "CUST-BP-OTHER", "name": "Other lot", "sku": "BP-CUFF-ARM",
                 "quantity": 1, "lot": "BP2409", "document": "DN-2025-4999",
                 "email": "other.lot@example.com"})
    return rows


def campaign_stock() -> list[dict[str, Any]]:
    return [{"sku": "BP-CUFF-ARM", "lot": CAMPAIGN_LOT, "quantity": 12, "warehouse": "Stores"},
            {"sku": "BP-CUFF-ARM", "lot": "BP2409", "quantity": 30, "warehouse": "Stores"}]


def campaign_body(today: date) -> dict[str, Any]:
    """`POST /v1/recall-campaigns` for the lot, as the shop's admin would send it."""
    return {"shop": SHOP, "reference": CAMPAIGN_REFERENCE, "class": "II",
            "notice_date": (today - timedelta(days=1)).isoformat(), "sku": "BP-CUFF-ARM",
            "gtin": GTIN_BP, "lots": [CAMPAIGN_LOT], "actions": ["stop_use", "return"],
            "instructions": "袖带气囊可能漏气导致读数偏低。请停止使用并退回。 The cuff bladder may "
                            "leak and read low: stop using it and return it.",
            "check_level": "A"}
