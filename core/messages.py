"""Every sentence the rules, the guards and the obligations say, in each language we speak.

A decision's reasons and the obligations it sets are read by the customer (through the
storefront and the emails) and by the shop's operators, in the customer's language:
`customer.locale` picks the table, `zh-CN` for any Chinese locale and English for the rest.
`core/compliance.py` and `core/rules.py` name a message by its id ("R02.late": rule, then
what it found) and fill its placeholders; they hold no wording of their own. A new rule adds
its ids to both tables; `tests/unit/test_messages.py` checks that every id is in both with
the same placeholders.

Plain tables rather than gettext catalogs: the core stays standard-library only, there is no
`.po` to compile into the wheel or before the tests, and mypy and the test above read the
wording where the code is. A translator edits one table per language.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

ENGLISH: Final = "en"
CHINESE: Final = "zh-CN"

_EN: dict[str, str] = {
    "G01.deny": "Refusing to refund {requested}: the order can refund at most {refundable} more "
                "(paid total minus what other requests already hold).",
    "G01.pass": "{requested} is within what the order can refund.",

    "G03.deny": "{unit}: {requested} asked for, but only {remaining} of the {shipped} shipped on "
                "this order remain (its other requests hold {held}).",
    "G03.deny_serial": "{unit}: a serial number names one unit; {requested} asked for here, "
                       "{held} held by other requests on this order.",
    "G03.review_pending": "{unit}: {remaining} of the {shipped} shipped remain and {requested} "
                          "are asked for, but requests on this order waiting for a person ask "
                          "for {pending} more; a person decides which.",
    "G03.review_unknown": "{unit}: other requests on this order hold or ask for {held} and this "
                          "one asks for {requested}, but the ERP's shipment record does not say "
                          "how many were shipped; a person must confirm.",
    "G03.pass": "Every unit asked for is within what the order shipped, less what its other "
                "requests hold.",
    "G03.unchecked": "No shipment record of these SKUs to count units against; no other request "
                     "on this order asks for them.",
    "G03.unit.sku": "SKU {sku}",
    "G03.unit.lot": "SKU {sku} lot {lot}",
    "G03.unit.serial": "SKU {sku} serial {serial}",

    "G02.pass": "Refunded through {payment}, as the order was paid.",
    "G02.review": "The order was paid through '{provider}', but this shop refunds through "
                  "'{payment}': a person must confirm where the money goes.",

    "R01.pass": "Line {line}: lot/serial match what was shipped on this order.",
    "R01.unchecked": "The ERP has no shipment record for this order, so lots and serials could "
                     "not be checked against it.",
    "R01.no_sku": "Line {line}: no unit of SKU {sku} was shipped on this order; a person must "
                  "confirm this is our unit.",
    "R01.mismatch": "Line {line}: {field} {value} is not among the units shipped on this order "
                    "({shipped}); a person must confirm this is our unit.",

    "R02.pass": "Asked on day {day} after delivery, within the {window}-day no-reason window.",
    "R02.undelivered": "Not delivered yet, so the no-reason window has not started.",
    "R02.late": "Asked on day {day} after delivery; the no-reason window is {window} days "
                "counted from the day after delivery.",
    "R02.business": "No-reason return is for consumers; this buyer is a business.",
    "R02.na": "Not a no-reason return: the no-reason window does not apply.",

    "R03.deny": "Line {line} ({sku}) is custom-made and excluded from no-reason return.",
    "R03.pass": "No custom-made device is returned without a reason.",

    "R04.deny": "Line {line} ({sku}) is excluded from no-reason return, and the buyer confirmed "
                "that at purchase.",
    "R04.accept": "Line {line} ({sku}) is excluded from no-reason return, but the buyer did not "
                  "confirm that at purchase: the return must be accepted, and the unit is never "
                  "restocked.",
    "R04.deny_order_line": "Line {line} ({sku}): the order records that the buyer confirmed at "
                           "purchase that it is excluded from no-reason return, so it is (the "
                           "shop's policy does not list this SKU).",
    "R04.pass": "No line is excluded from no-reason return.",

    "R05.deny": "Line {line} ({sku}): its single-use seal is broken, so it is not intact for a "
                "no-reason return.",
    "R05.pass": "No necessary seal is reported broken.",
    "R05.noted": "Line {line} ({sku}): its single-use seal is broken; that bars only a no-reason "
                 "return, not this claim.",

    "R06.review": "A quality claim ({code}): a person reviews it, and the unit goes back to the "
                  "manufacturer after inspection.",
    "R06.auto": "A quality claim ({code}) the shop approves without review.",
    "R06.pass": "Not a quality claim.",

    "R07.received": "Refund due within {days} days of receiving the goods.",
    "R07.approved": "Refund due within {days} days of approval (no goods to wait for).",
    "R07.waiting": "Refund due within {days} days of receiving the goods; the clock starts at "
                   "receipt.",

    "R08.pending": "Line {line}: not inspected yet; returned units wait in quarantine until an "
                   "inspection passes.",
    "R08.pass": "Line {line}: inspection by {inspector} passed.",
    "R08.fail": "Line {line}: inspection by {inspector} did not pass ({condition}); the unit is "
                "nonconforming.",

    "R09.expired": "Line {line}: expired on {expiry}; it must not be sold again.",
    "R09.unknown": "Line {line} ({sku}) has a shelf life but no known expiry; it must not be "
                   "sold again.",
    "R09.near": "Line {line}: expires on {expiry}, within {days} days.",
    "R09.pass": "Line {line}: expires on {expiry}.",

    "R10.scrap": "Line {line} ({sku}) is sterile and {why}: it is never restocked.",
    "R10.opened": "its pack was opened",
    "R10.consumer": "was returned by a consumer",

    "R11.quarantine": "Line {line} ({sku}) needs the cold chain, and no continuous temperature "
                      "record came back with it.",
    "R11.pending": "Line {line} ({sku}) needs the cold chain: restock only with a continuous "
                   "temperature record for the return.",

    "R12.not_restorable": "Line {line}: condition '{condition}' cannot be restored to its "
                          "first-sale state; it is not sold as new.",
    "R12.open_box": "Line {line} ({sku}): its outer box was opened, and this shop does not "
                    "resell opened devices as new: it is not restocked; if nothing else decides "
                    "where it goes, it waits in quarantine for a person.",

    "R13.approve": "Line {line}: lot/serial is under recall {reference} (class {cls}): refund "
                   "without question, quarantine the unit and notify the registrant.",
    "R13.pass": "No returned lot or serial is under recall.",
    "R13.unknown": "The customer cites a recall, but no returned lot or serial is on the shop's "
                   "recall list; a person checks the notice.",
    "R13.notice": "Notify the registrant that a unit under recall {reference} (class {cls}) came "
                  "back; keep it in quarantine.",

    "R14.review": "The reason suggests someone was harmed: a possible adverse event. A person "
                  "must review it; the unit is kept as evidence.",
    "R14.words": "The reason says someone may have been harmed ({terms}): a possible adverse "
                 "event. A person must review it; the unit is kept as evidence.",
    "R14.possible": "The reason may describe someone being harmed ({terms}): a person reads it "
                    "and decides whether it is an adverse event; until then the unit is kept as "
                    "evidence.",
    "R14.pass": "Nothing in the reason suggests an injury.",
    "R14.report": "Report the possible adverse event ({severity}) within {days} days of learning "
                  "of it ({source}).",
    "R14.report_if_harmed": "If a person finds that someone was harmed, report the possible "
                            "adverse event ({severity}) within {days} days of learning of it "
                            "({source}).",
    "R14.severity.death": "death",
    "R14.severity.serious_injury": "serious injury",
    "R14.severity.injury": "injury",
    "R14.severity.malfunction": "malfunction",
    "R14.severity.unknown": "severity not known, so the deadline for a death applies",

    "R15.no_licence": "A business buyer with no licence on file.",
    "R15.expired": "The buyer's licence {number} expired on {expires}.",
    "R15.scope": "Line {line}: class {cls} is outside the buyer's licence scope.",
    "R15.professional": "Line {line} ({sku}) is not for consumer self-use, yet a consumer bought "
                        "it.",
    "R15.pass": "The buyer may hold these devices.",

    "R16.invalid": "Line {line}: the UDI {scan!r} does not parse ({error}): possible counterfeit.",
    "R16.mismatch": "Line {line}: the UDI's {field} does not match the sales record ({detail}).",
    "R16.pass": "Line {line}: the UDI parses and matches the sales record.",

    "R17.permanent": "Line {line} ({sku}) is implantable: its records are kept permanently.",

    "R19.review": "The customer made {count} refund requests in the last {days} days (limit "
                  "{limit}).",
    "R19.pass": "{count} earlier refund requests in the last {days} days.",

    "R20.no_limit": "No auto-approval limit is set for {currency}.",
    "R20.over": "{amount} is above the auto-approval limit of {limit} {currency}.",
    "R20.pass": "{amount} is within the auto-approval limit.",

    # Exchanges (core/exchanges.py): the price difference between what comes back and
    # what goes out, and the lots a replacement must not come from.
    "X01.refund": "The returned units are worth {returned} and the replacements {replacements}: "
                  "{difference} is refunded.",
    "X01.even": "The replacements are worth what the returned units are ({returned}): nothing "
                "is refunded or charged.",
    "X01.owed": "The replacements ({replacements}) cost {owed} more than the returned units "
                "({returned}), and no payment connector of this shop can charge it: a person "
                "collects or waives it before the exchange is approved.",
    "X02.avoid": "Line {line}: lot {lot} is recalled; the replacement must come from another "
                 "lot.",

    "A00.other": "Reason '{code}' is not one the rules can decide; a person reviews it.",
}

_ZH_CN: dict[str, str] = {
    "G01.deny": "拒绝退款 {requested}：该订单最多还能退 {refundable}"
                "（实付金额减去其他申请已占用的金额）。",
    "G01.pass": "{requested} 未超出该订单可退金额。",

    "G03.deny": "{unit}：申请 {requested} 件，但本订单发货 {shipped} 件中仅剩 {remaining} 件可退"
                "（其他申请已占用 {held} 件）。",
    "G03.deny_serial": "{unit}：一个序列号只对应一件；本申请要 {requested} 件，"
                       "本订单其他申请已占用 {held} 件。",
    "G03.review_pending": "{unit}：发货 {shipped} 件中剩 {remaining} 件，"
                          "本申请要 {requested} 件，"
                          "但本订单其他待人工审核的申请还要 {pending} 件，需人工决定。",
    "G03.review_unknown": "{unit}：本订单其他申请已占用或申请 {held} 件，"
                          "本申请又要 {requested} 件，但 ERP 发货记录无法确认发货数量，"
                          "需人工确认。",
    "G03.pass": "申请件数未超出本订单发货数量减去其他申请已占用的件数。",
    "G03.unchecked": "没有这些商品的发货记录可核对件数；本订单无其他申请涉及这些商品。",
    "G03.unit.sku": "SKU {sku}",
    "G03.unit.lot": "SKU {sku} 批号 {lot}",
    "G03.unit.serial": "SKU {sku} 序列号 {serial}",

    "G02.pass": "按原支付渠道 {payment} 退款。",
    "G02.review": "订单通过“{provider}”支付，但本店经“{payment}”退款：需人工确认退款去向。",

    "R01.pass": "第{line}行：批号/序列号与本订单发货记录一致。",
    "R01.unchecked": "ERP 中没有本订单的发货记录，无法核对批号和序列号。",
    "R01.no_sku": "第{line}行：本订单未发出 SKU {sku}，需人工确认是否为本店售出的产品。",
    "R01.mismatch": "第{line}行：{field} {value} 不在本订单发货记录中（{shipped}），需人工确认。",

    "R02.pass": "在签收后第{day}天申请，处于{window}天无理由退货期内。",
    "R02.undelivered": "尚未签收，无理由退货期尚未开始。",
    "R02.late": "在签收后第{day}天申请，超过自签收次日起算的{window}天无理由退货期。",
    "R02.business": "无理由退货仅适用于消费者，该买家为企业客户。",
    "R02.na": "非无理由退货，不适用无理由退货期限。",

    "R03.deny": "第{line}行（{sku}）为定制器械，不适用无理由退货。",
    "R03.pass": "无定制器械以无理由方式退货。",

    "R04.deny": "第{line}行（{sku}）不适用无理由退货，且买家在购买时已确认。",
    "R04.accept": "第{line}行（{sku}）属于不适用无理由退货的商品，但买家购买时未确认："
                  "必须接受退货，且该件不得重新入库销售。",
    "R04.deny_order_line": "第{line}行（{sku}）："
                           "订单记录显示买家在购买时已确认该商品不适用无理由退货，"
                           "故不予无理由退货（本店政策未列出该 SKU）。",
    "R04.pass": "无不适用无理由退货的商品。",

    "R05.deny": "第{line}行（{sku}）：一次性密封已破损，不符合无理由退货的完好要求。",
    "R05.pass": "未发现必要的密封破损。",
    "R05.noted": "第{line}行（{sku}）：一次性密封已破损；这只影响无理由退货，不影响本次申请。",

    "R06.review": "质量问题（{code}）：需人工审核，验收后退回生产企业。",
    "R06.auto": "质量问题（{code}），本店允许自动审批。",
    "R06.pass": "非质量问题。",

    "R07.received": "须在收到退货后{days}天内退款。",
    "R07.approved": "无需退货，须在批准后{days}天内退款。",
    "R07.waiting": "须在收到退货后{days}天内退款，自收货时起算。",

    "R08.pending": "第{line}行：尚未验收，退回商品在验收合格前置于待验区。",
    "R08.pass": "第{line}行：{inspector} 验收合格。",
    "R08.fail": "第{line}行：{inspector} 验收不合格（{condition}），按不合格品处理。",

    "R09.expired": "第{line}行：已于{expiry}过期，不得再销售。",
    "R09.unknown": "第{line}行（{sku}）有效期未知，不得再销售。",
    "R09.near": "第{line}行：将于{expiry}过期（{days}天内），近效期需人工审核。",
    "R09.pass": "第{line}行：有效期至{expiry}。",

    "R10.scrap": "第{line}行（{sku}）为无菌产品且{why}，不得重新入库。",
    "R10.opened": "包装已开启",
    "R10.consumer": "由消费者退回",

    "R11.quarantine": "第{line}行（{sku}）为冷链产品，退回途中无完整温度记录。",
    "R11.pending": "第{line}行（{sku}）为冷链产品，须有完整的退货温度记录方可入库。",

    "R12.not_restorable": "第{line}行：状态为“{condition}”，无法恢复原状，不得作为新品销售。",
    "R12.open_box": "第{line}行（{sku}）：外包装已开启，本店不将已开封器械作为新品销售，"
                    "不得重新入库；如无其他规则决定去向，则置于待处理区由人工处理。",

    "R13.approve": "第{line}行：批号/序列号在召回 {reference}（{cls}级）范围内：无条件退款，"
                   "隔离该件并通知注册人。",
    "R13.pass": "退货批号/序列号不在召回范围内。",
    "R13.unknown": "客户称产品被召回，但退货批号/序列号不在本店召回清单中，需人工核实召回通知。",
    "R13.notice": "通知注册人：召回 {reference}（{cls}级）范围内的一件产品已退回；该件须隔离存放。",

    "R14.review": "退货原因提示可能有人受到伤害，属可疑不良事件：须人工审核，该件留存作为证据。",
    "R14.words": "退货原因提到可能有人受到伤害（{terms}），属可疑不良事件：须人工审核，"
                 "该件留存作为证据。",
    "R14.possible": "退货原因可能涉及人身伤害（{terms}）：须人工判断是否属于不良事件，"
                    "在此之前该件留存作为证据。",
    "R14.pass": "退货原因未提示有人受伤。",
    "R14.report": "须在获知之日起{days}天内报告该可疑不良事件（{severity}；依据：{source}）。",
    "R14.report_if_harmed": "如经人工判断确有人受到伤害，"
                            "须在获知之日起{days}天内报告该可疑不良事件（{severity}；依据："
                            "{source}）。",
    "R14.severity.death": "死亡",
    "R14.severity.serious_injury": "严重伤害",
    "R14.severity.injury": "伤害",
    "R14.severity.malfunction": "器械故障",
    "R14.severity.unknown": "严重程度未知，按死亡事件的时限",

    "R15.no_licence": "企业客户未提供经营许可或备案。",
    "R15.expired": "买家许可证 {number} 已于{expires}过期。",
    "R15.scope": "第{line}行：{cls}类器械超出买家许可范围。",
    "R15.professional": "第{line}行（{sku}）非消费者自用器械，却售予了消费者。",
    "R15.pass": "买家资质符合。",

    "R16.invalid": "第{line}行：UDI {scan!r} 无法解析（{error}），可能为假冒产品。",
    "R16.mismatch": "第{line}行：UDI 中的{field}与销售记录不符（{detail}）。",
    "R16.pass": "第{line}行：UDI 解析正常，与销售记录一致。",

    "R17.permanent": "第{line}行（{sku}）为植入器械，记录永久保存。",

    "R19.review": "该客户近{days}天内已有{count}次退款申请（上限{limit}次）。",
    "R19.pass": "近{days}天内有{count}次退款申请。",

    "R20.no_limit": "未设置{currency}的自动审批限额。",
    "R20.over": "{amount} 超过自动审批限额 {limit} {currency}。",
    "R20.pass": "{amount} 在自动审批限额内。",

    "X01.refund": "退回商品价值 {returned}，换货商品价值 {replacements}："
                  "差价 {difference} 退还给您。",
    "X01.even": "换货商品与退回商品价值相同（{returned}）：无需退款或补款。",
    "X01.owed": "换货商品（{replacements}）比退回商品（{returned}）贵 {owed}，"
                "本店的支付渠道无法收取差价：需人工收取或免除差价后再批准换货。",
    "X02.avoid": "第 {line} 行：批次 {lot} 已召回，换货商品须出自其他批次。",

    "A00.other": "退货原因“{code}”无法自动判断，需人工审核。",
}

CATALOGS: Final[Mapping[str, Mapping[str, str]]] = MappingProxyType({
    ENGLISH: MappingProxyType(_EN), CHINESE: MappingProxyType(_ZH_CN)})


def language(locale: str) -> str:
    """The catalogue a customer's locale reads: Chinese for any `zh` locale, else English."""
    return CHINESE if locale.lower().startswith("zh") else ENGLISH


def text(message_id: str, locale: str, **values: object) -> str:
    """Message `message_id` in the customer's language, its placeholders filled.

    An unknown id is a programming error and raises `KeyError`; an unknown locale reads
    English.
    """
    return CATALOGS[language(locale)][message_id].format(**values)


__all__ = ["CATALOGS", "CHINESE", "ENGLISH", "language", "text"]
