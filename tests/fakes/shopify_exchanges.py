"""The Shopify fake's exchanges: exchange lines on a return (`Return.exchangeLineItems`,
each with the order line Shopify adds for it), answered to `RefundBridgeReturnExchanges`
and listed in the `returns/request` body as Shopify lists them (ids only). Mixed into
`tests.fakes.shopify.ShopifyFake`.
"""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any


class ExchangeDesk:
    """Needs the fake's `orders`, `returns`, `_gid`, `_bag` (see ShopifyFake)."""

    orders: dict[str, dict[str, Any]]
    returns: dict[str, dict[str, Any]]

    def _gid(self, kind: str) -> str:  # ShopifyFake's
        raise NotImplementedError

    @staticmethod
    def _bag(amount: Decimal, currency: str) -> dict[str, Any]:  # ShopifyFake's
        raise NotImplementedError

    def add_exchange(self, return_id: str, sku: str | None, name: str, quantity: int,
                     unit_price: str, *, currency: str | None = None, variant: bool = True,
                     line: bool = True) -> str:
        """An exchange line on `return_id`: `quantity` units of a variant (`variant=False`:
        none), with the order line Shopify made for it (`line=False`: none yet)."""
        ret = self.returns[return_id]
        order = self.orders[ret["orderId"]]
        money = self._bag(Decimal(unit_price), currency or order["presentmentCurrencyCode"])
        exchange_id = self._gid("ExchangeLineItem")
        line_item = {"id": self._gid("LineItem"), "sku": sku, "name": name,
                     "quantity": quantity, "discountedUnitPriceAfterAllDiscountsSet": money}
        ret.setdefault("exchangeLineItems", []).append({
            "id": exchange_id, "quantity": quantity,
            "variantId": self._gid("ProductVariant") if variant else None,
            "lineItems": [line_item] if line else [],
        })
        return exchange_id

    def exchange_webhook_items(self, return_id: str) -> list[dict[str, Any]]:
        return [{"id": int(item["id"].rsplit("/", 1)[1]), "admin_graphql_api_id": item["id"],
                 "line_item": None}
                for item in self.returns[return_id].get("exchangeLineItems", [])]

    def _return_exchanges(self, variables: dict[str, Any], _: str) -> dict[str, Any]:
        ret = self.returns.get(variables["id"])
        if ret is None:
            return {"return": None}
        return {"return": {"id": ret["id"], "order": {"id": ret["orderId"]},
                           "exchangeLineItems": {"nodes": copy.deepcopy(
                               ret.get("exchangeLineItems", []))}}}
