"""A stateful Odoo fake for respx: JSON-RPC (`/jsonrpc`) and the /json/2 API of Odoo 19.

It keeps sale orders, delivery pickings with their moves and move lines (lots and serials,
with the product_expiry module's `expiration_date`), posted invoices, return pickings made by
the `stock.return.picking` wizard, and credit notes made by `account.move.reversal`, and it
answers in Odoo's shapes: many2one as `[id, "name"]`, empty fields as `false`, JSON-RPC errors
inside an HTTP 200, /json/2 errors with an HTTP status. It enforces the database, uid and
api key (JSON-RPC) or the bearer key and `X-Odoo-Database` (/json/2), and it records every
call. `version` switches what differs between 16, 17, 18 and 19: `qty_done`/`quantity`,
`create_returns`/`action_create_returns`, `reverse_moves`/`refund_moves`, `res.partner`'s
`mobile` (gone in 18).

For recalls it also keeps customers (`res.partner`, companies and their delivery contacts),
deliveries to them, returns and vendor returns, stock on hand per location (`stock.quant`,
moved when a picking is validated), and internal transfers made by `stock.picking.create`,
`action_confirm` and `button_validate`. Domains may follow many2one paths
(`location_id.usage`) and name the related `stock.move.line.picking_code`; a search leaves
archived records out unless its domain names `active`, as Odoo's does.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import httpx
import respx

from tests.fakes.common import hooked_answer
from tests.fakes.odoo_exchanges import SALE_ORDER_FIELDS, SellingDesk

BASE = "https://odoo.acme-medical.test"
DATABASE = "acme-medical"
LOGIN = "refundbridge-bot"
API_KEY = "6f1d2c3b4a5e6f708192a3b4c5d6e7f801234567"
UID = 7

CUSTOMERS, STOCK, QUARANTINE, SCRAP, RTM, EVIDENCE = 5, 8, 30, 31, 32, 33
VENDORS, SHELF, SHOP = 4, 9, 40
LOCATIONS = {CUSTOMERS: "Partners/Customers", STOCK: "WH/Stock", QUARANTINE: "WH/Quarantine",
             SCRAP: "Virtual Locations/Scrap", RTM: "WH/Return to Manufacturer",
             EVIDENCE: "WH/Evidence", VENDORS: "Partners/Vendors", SHELF: "WH/Stock/Shelf 2",
             SHOP: "SHOP/Stock"}
USAGE = {CUSTOMERS: "customer", VENDORS: "supplier", SCRAP: "inventory"}  # others: internal
RECEIPTS, DELIVERIES, INTERNAL = 1, 2, 3
PICKING_TYPES = {RECEIPTS: ("Receipts", "incoming", "WH/IN/"),
                 DELIVERIES: ("Delivery Orders", "outgoing", "WH/OUT/"),
                 INTERNAL: ("Internal Transfers", "internal", "WH/INT/")}
UNITS = 1
# Fields a model has even while no record of it is seeded.
SCHEMA = {
    "stock.quant": {"product_id", "location_id", "lot_id", "package_id", "quantity",
                    "reserved_quantity"},
    "res.partner": {"name", "email", "phone", "lang", "parent_id", "commercial_partner_id",
                    "active"},
    "stock.picking": {"name", "origin", "state", "picking_type_code", "picking_type_id",
                      "location_id", "location_dest_id", "partner_id", "sale_id", "note",
                      "move_ids", "return_id"},
    "stock.lot": {"name", "product_id"},
    "sale.order": SALE_ORDER_FIELDS,
}
# Related fields: what they read through.
RELATED = {("stock.move.line", "picking_code"): "picking_id.picking_type_code"}

MANY2ONE = {
    "picking_id": "stock.picking", "move_id": "stock.move", "product_id": "product.product",
    "lot_id": "stock.lot", "location_id": "stock.location", "location_dest_id": "stock.location",
    "currency_id": "res.currency", "origin_returned_move_id": "stock.move",
    "return_id": "stock.picking", "sale_id": "sale.order", "reversed_entry_id": "account.move",
    "partner_id": "res.partner", "commercial_partner_id": "res.partner",
    "picking_type_id": "stock.picking.type", "package_id": "stock.quant.package",
    "uom_id": "uom.uom", "product_uom": "uom.uom",
}


class OdooError(Exception):
    """What Odoo would raise server-side; `name` as `serialize_exception` spells it."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name
        self.message = message


def user_error(message: str) -> OdooError:
    return OdooError("odoo.exceptions.UserError", message)


JSON2_STATUS = {"odoo.exceptions.UserError": 422, "odoo.exceptions.ValidationError": 422,
                "odoo.exceptions.AccessError": 403, "odoo.exceptions.MissingError": 404,
                "odoo.exceptions.AccessDenied": 401, "werkzeug.exceptions.NotFound": 404}


@dataclass(frozen=True)
class Call:
    api: str  # "jsonrpc" or "json2"
    model: str  # "common" for the common service
    method: str
    args: list[Any]
    kwargs: dict[str, Any]


Hook = Callable[[str, str, str], httpx.Response | None]  # (phase, model, method)


def _compare(op: str, actual: Any, value: Any) -> bool:
    text = str(actual or "").lower()
    match op:
        case "=":
            return bool(actual == value)
        case "!=":
            return bool(actual != value)
        case "in":
            return actual in value
        case "not in":
            return actual not in value
        case "ilike":
            return str(value).lower() in text
        case "not ilike":
            return str(value).lower() not in text
        case ">" | ">=" | "<" | "<=":
            if actual is None or actual is False:
                return False
            return bool({">": actual > value, ">=": actual >= value, "<": actual < value,
                         "<=": actual <= value}[op])
        case _:
            raise AssertionError(f"operator {op} not faked")


def _money(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


class OdooFake(SellingDesk):  # sale orders and their deliveries: exchanges
    def __init__(self, version: int = 17, product_expiry: bool = True) -> None:
        self.version = version
        self.product_expiry = product_expiry
        self.records: dict[str, dict[int, dict[str, Any]]] = {}
        self._ids = itertools.count(100)
        self._seq: dict[str, itertools.count[int]] = {}
        self.calls: list[Call] = []
        self.requests: list[httpx.Request] = []
        # Called before a call ("before") and after it committed ("after"); a Response returned
        # is answered instead (a 503 before or after the work was done, say).
        self.hooks: list[Hook] = []
        self.today = date(2026, 3, 2)
        for currency_id, code in ((1, "CNY"), (2, "USD"), (3, "EUR")):
            self._table("res.currency")[currency_id] = {"id": currency_id, "name": code}
        for location_id, name in LOCATIONS.items():
            self._table("stock.location")[location_id] = {
                "id": location_id, "complete_name": name, "name": name.rsplit("/", 1)[-1],
                "usage": USAGE.get(location_id, "internal")}
        for type_id, (name, code, _) in PICKING_TYPES.items():
            self._table("stock.picking.type")[type_id] = {"id": type_id, "name": name,
                                                          "code": code, "active": True}
        self._table("uom.uom")[UNITS] = {"id": UNITS, "name": "Units"}

    # ------------------------------------------------------------- seeding
    def _table(self, model: str) -> dict[int, dict[str, Any]]:
        return self.records.setdefault(model, {})

    def _new(self, model: str, **values: Any) -> int:
        record_id = next(self._ids)
        self._table(model)[record_id] = {"id": record_id, **values}
        return record_id

    def _name(self, prefix: str) -> str:
        counter = self._seq.setdefault(prefix, itertools.count(1))
        return f"{prefix}{next(counter):05d}"

    @property
    def qty_field(self) -> str:
        return "quantity" if self.version >= 17 else "qty_done"

    def add_product(self, sku: str, tracking: str = "none", barcode: str | None = None) -> int:
        for product in self._table("product.product").values():
            if product["default_code"] == sku:
                return int(product["id"])
        return self._new("product.product", name=f"[{sku}] {sku}", default_code=sku,
                         tracking=tracking, barcode=barcode or False, uom_id=UNITS,
                         active=True)

    def add_partner(self, name: str, email: str | None = None, phone: str | None = None,
                    mobile: str | None = None, lang: str | None = "en_US",
                    company: int | None = None) -> int:
        """A customer; with `company`, one of its contacts (a delivery address), whose
        commercial partner is the company. Odoo 18 has no `mobile`."""
        values: dict[str, Any] = {"name": name, "email": email or False,
                                  "phone": phone or False, "lang": lang or False,
                                  "parent_id": company or False, "active": True}
        if self.version < 18:
            values["mobile"] = mobile or False
        partner = self._new("res.partner", **values)
        self._table("res.partner")[partner]["commercial_partner_id"] = company or partner
        return partner

    def add_quant(self, sku: str, location: int, quantity: int | str,
                  lot: str | None = None) -> int:
        return self._new("stock.quant", product_id=self.product_id(sku), location_id=location,
                         lot_id=self.add_lot(sku, lot) if lot else False, package_id=False,
                         quantity=Decimal(quantity), reserved_quantity=Decimal(0))

    def on_hand(self, sku: str, location: int, lot: str | None = None) -> Decimal:
        lot_id = next((int(r["id"]) for r in self.of("stock.lot", name=lot,
                                                      product_id=self.product_id(sku))), None)
        return sum((q["quantity"] for q in self.of(
            "stock.quant", product_id=self.product_id(sku), location_id=location,
            lot_id=lot_id or False)), Decimal(0))

    def add_delivery(self, ship: Sequence[tuple[str, str | None, int]], *,
                     partner: int | None = None, origin: str | None = None,
                     state: str = "done", code: str = "outgoing", source: int = STOCK,
                     destination: int = CUSTOMERS, done_on: str = "2026-02-01 10:00:00",
                     sale_order: int | None = None) -> int:
        """A picking of `ship` ((sku, lot or serial, qty)): by default a done delivery to a
        customer; `code`, `source`, `destination` and `state` make a return from a customer,
        a return to a vendor or one not yet done."""
        prefix = {"outgoing": "WH/OUT/", "incoming": "WH/IN/", "internal": "WH/INT/"}[code]
        picking = self._new("stock.picking", name=self._name(prefix), origin=origin or False,
                            state=state, picking_type_code=code, location_id=source,
                            location_dest_id=destination, return_id=False, move_ids=[],
                            partner_id=partner or False, sale_id=sale_order or False,
                            date_done=done_on if state == "done" else False)
        moves: dict[str, int] = {}
        for sku, lot, qty in ship:
            product = self.add_product(sku, tracking="lot" if lot else "none")
            if sku not in moves:
                moves[sku] = self._new(
                    "stock.move", picking_id=picking, product_id=product, product_uom_qty=0,
                    quantity=0, state=state, location_id=source, location_dest_id=destination,
                    origin_returned_move_id=False, move_line_ids=[], picked=True)
                self._table("stock.picking")[picking]["move_ids"].append(moves[sku])
            move = self._table("stock.move")[moves[sku]]
            move["product_uom_qty"] += qty
            move["quantity"] += qty
            line = self._new("stock.move.line", picking_id=picking, move_id=moves[sku],
                             product_id=product,
                             lot_id=self.add_lot(sku, lot) if lot else False,
                             quantity=qty, state=state, location_id=source,
                             location_dest_id=destination, date=done_on)
            move["move_line_ids"].append(line)
        return picking

    def product_id(self, sku: str) -> int:
        return next(int(p["id"]) for p in self._table("product.product").values()
                    if p["default_code"] == sku)

    def add_lot(self, sku: str, name: str, expiry: date | None = None) -> int:
        product = self.product_id(sku)
        for lot in self._table("stock.lot").values():
            if lot["name"] == name and lot["product_id"] == product:
                return int(lot["id"])
        return self._new("stock.lot", name=name, product_id=product,
                         expiration_date=f"{expiry.isoformat()} 00:00:00" if expiry else False)

    def add_order(self, ref: str, ship: Sequence[tuple[str, str | None, int]],
                  prices: Mapping[str, str], currency: str = "CNY", tax_percent: int = 0,
                  name: str | None = None, partner: int | None = None) -> int:
        """A confirmed sale order, its done delivery of `ship` ((sku, lot or serial, qty)),
        and its posted invoice at `prices` (tax-excluded unit prices)."""
        currency_id = next(c["id"] for c in self._table("res.currency").values()
                           if c["name"] == currency)
        order_name = name or self._name("S")
        picking = self.add_delivery(ship, partner=partner, origin=order_name)
        quantities: dict[str, int] = {}
        for sku, _, qty in ship:
            quantities[sku] = quantities.get(sku, 0) + qty
        invoice = self._new("account.move", name=self._name("INV/2026/"), move_type="out_invoice",
                            state="posted", ref=False, currency_id=currency_id,
                            invoice_origin=order_name, invoice_line_ids=[],
                            reversed_entry_id=False)
        for sku, qty in quantities.items():
            line = self._new("account.move.line", move_id=invoice, display_type="product",
                             product_id=self.product_id(sku), quantity=Decimal(qty),
                             price_unit=Decimal(prices[sku]), tax_percent=tax_percent)
            self._table("account.move")[invoice]["invoice_line_ids"].append(line)
        self._recompute(invoice)
        order = self._new("sale.order", name=order_name, client_order_ref=ref, state="sale",
                          picking_ids=[picking], invoice_ids=[invoice], currency_id=currency_id,
                          partner_id=partner or False)
        self._table("stock.picking")[picking]["sale_id"] = order
        return order

    # ------------------------------------------------------------- inspection
    def of(self, model: str, **match: Any) -> list[dict[str, Any]]:
        return [r for r in self._table(model).values()
                if all(r.get(k) == v for k, v in match.items())]

    def return_pickings(self) -> list[dict[str, Any]]:
        # Those the return wizard made (a seeded return from a customer has no `return_id`).
        return [p for p in self.of("stock.picking", picking_type_code="incoming")
                if p["return_id"]]

    def transfers(self) -> list[dict[str, Any]]:
        return self.of("stock.picking", picking_type_code="internal")

    def credit_notes(self) -> list[dict[str, Any]]:
        return self.of("account.move", move_type="out_refund")

    def lines_of(self, move_id: int) -> list[dict[str, Any]]:
        return [self._table("account.move.line")[i]
                for i in self._table("account.move")[move_id]["invoice_line_ids"]]

    def move_lines_of(self, picking_id: int) -> list[dict[str, Any]]:
        return self.of("stock.move.line", picking_id=picking_id)

    def executed(self) -> list[tuple[str, str]]:
        return [(c.model, c.method) for c in self.calls if c.model != "common"]

    # ------------------------------------------------------------- routes
    def install(self, router: respx.MockRouter) -> None:
        router.post(f"{BASE}/jsonrpc").mock(side_effect=self._jsonrpc)
        router.route(url__regex=rf"{re.escape(BASE)}/json/2/(?P<model>[\w.]+)/(?P<method>\w+)"
                     ).mock(side_effect=self._json2)

    def _hooks(self, phase: str, model: str, method: str) -> httpx.Response | None:
        return hooked_answer(self.hooks, phase, model, method)

    def _jsonrpc(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        envelope = json.loads(request.content)
        assert envelope["jsonrpc"] == "2.0" and envelope["method"] == "call", envelope
        params = envelope["params"]
        service, method, args = params["service"], params["method"], params["args"]
        model = "common" if service == "common" else (args[3] if len(args) > 3 else "?")
        rpc_method = method if service == "common" else (args[4] if len(args) > 4 else "?")
        if (early := self._hooks("before", model, rpc_method)) is not None:
            return early
        try:
            with self.serial:  # one database: calls from racing threads take turns
                result = self._common(method, args) if service == "common" else \
                    self._execute_kw(args)
        except OdooError as exc:
            return httpx.Response(200, json={"jsonrpc": "2.0", "id": envelope.get("id"),
                                             "error": {"code": 200,
                                                       "message": "Odoo Server Error",
                                                       "data": self._serialize(exc)}})
        if (late := self._hooks("after", model, rpc_method)) is not None:
            return late
        return httpx.Response(200, json={"jsonrpc": "2.0", "id": envelope.get("id"),
                                         "result": result})

    @staticmethod
    def _serialize(exc: OdooError) -> dict[str, Any]:
        return {"name": exc.name, "message": exc.message, "arguments": [exc.message],
                "context": {}, "debug": f"Traceback (most recent call last):\n{exc.name}: "
                                        f"{exc.message}\n"}

    def _common(self, method: str, args: list[Any]) -> Any:
        self.calls.append(Call("jsonrpc", "common", method, args, {}))
        if method == "version":
            return {"server_version": f"{self.version}.0",
                    "server_version_info": [self.version, 0, 0, "final", 0, ""],
                    "server_serie": f"{self.version}.0", "protocol_version": 1}
        if method in ("authenticate", "login"):
            database, login, password = args[0], args[1], args[2]
            ok = (database, login, password) == (DATABASE, LOGIN, API_KEY)
            return UID if ok else False
        raise OdooError("builtins.AttributeError", f"no method {method} in service common")

    def _execute_kw(self, args: list[Any]) -> Any:
        database, uid, password, model, method = args[:5]
        positional = args[5] if len(args) > 5 else []
        named = dict(args[6]) if len(args) > 6 else {}
        self.calls.append(Call("jsonrpc", model, method, positional, dict(named)))
        if database != DATABASE or uid != UID or password != API_KEY:
            raise OdooError("odoo.exceptions.AccessDenied", "Access Denied")
        context = named.pop("context", {}) or {}
        return self._dispatch(model, method, positional, named, context)

    def _json2(self, request: httpx.Request, model: str, method: str) -> httpx.Response:
        self.requests.append(request)
        if self.version < 19:
            return httpx.Response(404, text="<html>Not Found</html>")
        body = json.loads(request.content) if request.content else {}
        self.calls.append(Call("json2", model, method, [], dict(body)))
        auth = request.headers.get("Authorization", "")
        if (auth.lower() != f"bearer {API_KEY}".lower()
                or request.headers.get("X-Odoo-Database") != DATABASE):
            return httpx.Response(401, json={
                "name": "werkzeug.exceptions.Unauthorized", "message": "Invalid apikey",
                "arguments": ["Invalid apikey", 401], "context": {}, "debug": ""})
        if (early := self._hooks("before", model, method)) is not None:
            return early
        context = body.pop("context", {}) or {}
        ids = body.pop("ids", None)
        positional: list[Any] = [ids] if ids is not None else []
        if method == "create":
            positional = [body.pop("vals_list")]
        elif method == "write":
            positional = [ids, body.pop("vals")]
        elif method == "search_read":
            positional = [body.pop("domain", [])]
        try:
            with self.serial:
                result = self._dispatch(model, method, positional, body, context)
        except OdooError as exc:
            return httpx.Response(JSON2_STATUS.get(exc.name, 500), json=self._serialize(exc))
        if (late := self._hooks("after", model, method)) is not None:
            return late
        if method == "create" and isinstance(result, int):
            result = [result]
        return httpx.Response(200, json=result)

    # ------------------------------------------------------------- the ORM
    def _fields(self, model: str) -> set[str]:
        table = self._table(model)
        names = {"id"} | SCHEMA.get(model, set()) | {k for r in table.values() for k in r}
        if model == "res.partner" and self.version < 18:
            names.add("mobile")
        if model == "stock.move.line":
            names.discard("quantity")
            names |= {self.qty_field, "picking_code", "date"}
        if model == "stock.lot" and not self.product_expiry:
            names.discard("expiration_date")
        if model == "account.move":
            names |= {"amount_total", "amount_untaxed"}
        if model == "account.move.line":
            names |= {"price_subtotal", "price_total"}
        if model == "product.product":
            names |= {"default_code", "tracking", "barcode", "name"}
        return names

    def _value(self, model: str, record: dict[str, Any], field: str) -> Any:
        if field not in self._fields(model):
            raise OdooError("builtins.ValueError", f"Invalid field {field!r} on model {model!r}")
        value = record.get("quantity" if field == "qty_done" else field)
        if field in MANY2ONE:
            if not value:
                return False
            target = self._table(MANY2ONE[field])[value]
            return [value, target.get("complete_name") or target.get("name")
                    or f"{MANY2ONE[field]},{value}"]
        if isinstance(value, Decimal):
            return float(value)
        return False if value is None else value

    def _read(self, model: str, ids: Sequence[int], fields: Sequence[str]) -> list[Any]:
        table = self._table(model)
        missing = [i for i in ids if i not in table]
        if missing:
            raise OdooError("odoo.exceptions.MissingError",
                            f"Record does not exist or has been deleted. ({model}: {missing})")
        return [{"id": i, **{f: self._value(model, table[i], f) for f in fields if f != "id"}}
                for i in ids]

    def _path(self, model: str, record: dict[str, Any] | None, path: str) -> Any:
        """A domain's field, followed through many2one fields (`location_id.usage`) and
        related fields as Odoo does; a missing field is Odoo's "Invalid field"."""
        field, _, rest = path.partition(".")
        if field not in self._fields(model):
            raise OdooError("builtins.ValueError", f"Invalid field {model}.{field}")
        if record is None:
            return None
        if (model, field) in RELATED:
            return self._path(model, record, RELATED[(model, field)] + (f".{rest}" * bool(rest)))
        value = record.get("quantity" if field == "qty_done" else field)
        if not rest:
            return value
        if field not in MANY2ONE:
            raise OdooError("builtins.ValueError", f"{model}.{field} is not a relation")
        target = MANY2ONE[field]
        return self._path(target, self._table(target).get(value) if value else None, rest)

    def _matches(self, model: str, record: dict[str, Any], domain: Sequence[Any]) -> bool:
        for term in domain:
            if isinstance(term, str):
                continue  # '&' is implied; the connector uses no '|'
            field, op, value = term
            if not _compare(op, self._path(model, record, field), value):
                return False
        return True

    def _search(self, model: str, domain: Sequence[Any]) -> list[dict[str, Any]]:
        # As Odoo's: archived records only when the domain asks about `active`.
        archived = any(not isinstance(t, str) and t[0] == "active" for t in domain)
        return [r for r in self._table(model).values()
                if (archived or r.get("active", True)) and self._matches(model, r, domain)]

    def _dispatch(self, model: str, method: str, args: list[Any], kwargs: dict[str, Any],
                  context: dict[str, Any]) -> Any:
        if method == "search_read":
            domain = args[0] if args else kwargs.get("domain", [])
            rows = self._search(model, domain)
            rows.sort(key=lambda r: r["id"], reverse="desc" in (kwargs.get("order") or ""))
            if kwargs.get("limit"):
                rows = rows[: kwargs["limit"]]
            return self._read(model, [r["id"] for r in rows], kwargs.get("fields") or ["id"])
        if method == "read":
            return self._read(model, args[0], args[1] if len(args) > 1 else kwargs["fields"])
        if method == "fields_get":
            return {name: {"type": "char"} for name in self._fields(model)}
        if method == "create":
            values = args[0]
            if isinstance(values, list):
                return [self._create(model, v, context) for v in values]
            return self._create(model, values, context)
        if method == "write":
            for record_id in args[0]:
                self._write(model, record_id, args[1])
            return True
        handler = {
            ("stock.return.picking", "create_returns"): self._create_returns,
            ("stock.return.picking", "action_create_returns"): self._create_returns,
            ("stock.picking", "button_validate"): self._button_validate,
            ("stock.picking", "action_confirm"): self._action_confirm,
            ("sale.order", "action_confirm"): self.confirm_sale_orders,
            ("stock.picking", "action_assign"): self.assign_pickings,
            ("account.move.reversal", "refund_moves"): self._reverse,
            ("account.move.reversal", "reverse_moves"): self._reverse,
            ("account.move", "action_post"): self._post,
        }.get((model, method))
        available = {
            "create_returns": self.version < 18, "action_create_returns": self.version >= 18,
            "refund_moves": self.version >= 17, "reverse_moves": self.version < 17,
        }
        if handler is None or not available.get(method, True):
            raise OdooError("builtins.AttributeError",
                            f"The method '{method}' does not exist on the model '{model}'")
        return handler(args[0], context)

    def _create(self, model: str, values: dict[str, Any], context: dict[str, Any]) -> int:
        if model == "stock.return.picking":
            if context.get("active_id") != values["picking_id"]:
                raise user_error("the return wizard needs active_id = the picking")
            lines = [cmd[2] for cmd in values.get("product_return_moves", [])]
            return self._new(model, picking_id=values["picking_id"], lines=lines)
        if model == "account.move.reversal":
            command = values["move_ids"][0]
            assert command[0] == 6, command
            if context.get("active_ids") != command[2]:
                raise user_error("the reversal wizard needs active_ids = the moves")
            if self.version < 17 and values.get("refund_method") != "refund":
                raise user_error("refund_method must be 'refund' for a draft credit note")
            return self._new(model, move_ids=command[2], reason=values.get("reason", ""),
                             journal_id=values.get("journal_id", False))
        if model == "stock.picking":
            return self._create_picking(values)
        if model == "sale.order":
            return self.create_sale_order(values)
        raise OdooError("odoo.exceptions.AccessError",
                        f"You are not allowed to create '{model}' records.")

    def _create_picking(self, values: dict[str, Any]) -> int:
        values = dict(values)
        kind = self._table("stock.picking.type").get(values.pop("picking_type_id", 0))
        if kind is None:
            raise OdooError("odoo.exceptions.ValidationError",
                            "The operation type of a transfer is required.")
        for field in ("location_id", "location_dest_id"):
            if values.get(field) not in self._table("stock.location"):
                raise OdooError("odoo.exceptions.ValidationError", f"{field} is required.")
        commands = values.pop("move_ids", [])
        picking = self._new("stock.picking", name=self._name(PICKING_TYPES[kind["id"]][2]),
                            state="draft", picking_type_code=kind["code"],
                            picking_type_id=kind["id"], return_id=False, move_ids=[],
                            partner_id=False, sale_id=False, **values)
        for command in commands:
            assert command[0] == 0, command
            move = dict(command[2])
            product = self._table("product.product").get(move.get("product_id", 0))
            if product is None or (not move.get("name") and self.version < 18):
                raise OdooError("odoo.exceptions.ValidationError",
                                "Missing required fields on stock.move: product, description")
            if move.get("product_uom", product["uom_id"]) != product["uom_id"]:
                raise user_error("The unit of measure of the move is not the product's.")
            move.setdefault("product_uom", product["uom_id"])
            move_id = self._new("stock.move", picking_id=picking, state="draft", quantity=0,
                                origin_returned_move_id=False, move_line_ids=[], picked=False,
                                **move)
            self._table("stock.picking")[picking]["move_ids"].append(move_id)
        return picking

    def _action_confirm(self, ids: list[int], context: dict[str, Any]) -> bool:
        for picking_id in ids:
            picking = self._table("stock.picking")[picking_id]
            if not picking["move_ids"]:
                raise user_error("Please add some items to move.")
            if picking["state"] == "draft":  # Odoo confirms draft moves only: a no-op after
                picking["state"] = "confirmed"
                for move_id in picking["move_ids"]:
                    self._table("stock.move")[move_id]["state"] = "confirmed"
        return True

    def _move_quants(self, line: dict[str, Any]) -> None:
        """What a done move line does to stock on hand: less at its source, more at its
        destination (internal locations only, as Odoo keeps quants)."""
        quants = self._table("stock.quant")
        for location, sign in ((line["location_id"], -1), (line["location_dest_id"], 1)):
            if self._table("stock.location")[location]["usage"] != "internal":
                continue
            lot = line.get("lot_id") or False
            found = next((q for q in quants.values() if q["product_id"] == line["product_id"]
                          and q["location_id"] == location and q["lot_id"] == lot
                          and q["package_id"] == (line.get("package_id") or False)), None)
            if found is None:
                found = quants[self._new("stock.quant", product_id=line["product_id"],
                                         location_id=location, lot_id=lot,
                                         package_id=line.get("package_id") or False,
                                         quantity=Decimal(0), reserved_quantity=Decimal(0))]
            found["quantity"] += sign * Decimal(line["quantity"])

    def _write(self, model: str, record_id: int, values: dict[str, Any]) -> None:
        record = self._table(model)[record_id]
        for field, value in values.items():
            if field == "move_line_ids":
                self._commands("stock.move.line", record, field, value,
                               {"move_id": record_id, "state": "assigned"})
            elif field == "invoice_line_ids":
                if record["state"] != "draft":
                    raise user_error("You cannot modify a posted entry.")
                self._commands("account.move.line", record, field, value,
                               {"move_id": record_id, "display_type": "product"})
                self._recompute(record_id)
            elif field == self.qty_field or field in ("quantity", "qty_done"):
                record["quantity"] = value
            elif field == "location_dest_id" and model == "stock.picking":
                record[field] = value
                for move_id in record["move_ids"]:  # as Odoo's picking.write does
                    self._table("stock.move")[move_id][field] = value
            else:
                record[field] = value

    def _commands(self, model: str, parent: dict[str, Any], field: str,
                  commands: list[list[Any]], defaults: dict[str, Any]) -> None:
        table = self._table(model)
        for command in commands:
            code = command[0]
            if code == 0:
                values = dict(command[2])
                if "qty_done" in values or "quantity" in values:
                    if self.qty_field not in values:
                        raise OdooError("builtins.ValueError",
                                        f"Invalid field {model}.{next(iter(values))}")
                    values["quantity"] = values.pop(self.qty_field)
                parent[field].append(self._new(model, **defaults, **values))
            elif code == 1:
                values = dict(command[2])
                if "price_unit" in values:
                    values["price_unit"] = Decimal(str(values["price_unit"]))
                if "quantity" in values:
                    values["quantity"] = Decimal(values["quantity"])
                table[command[1]].update(values)
            elif code == 2:
                parent[field].remove(command[1])
                del table[command[1]]
            else:
                raise AssertionError(f"command {code} not faked")

    # ------------------------------------------------------------- business methods
    def _create_returns(self, ids: list[int], context: dict[str, Any]) -> dict[str, Any]:
        wizard = self._table("stock.return.picking")[ids[0]]
        source = self._table("stock.picking")[wizard["picking_id"]]
        lines = [line for line in wizard["lines"] if line["quantity"] > 0]
        if not lines:
            raise user_error("Please specify at least one non-zero quantity.")
        picking = self._new("stock.picking", name=self._name("WH/IN/"),
                            origin=f"Return of {source['name']}", state="assigned",
                            picking_type_code="incoming", location_id=CUSTOMERS,
                            location_dest_id=source["location_id"], return_id=source["id"],
                            move_ids=[])
        for line in lines:
            original = self._table("stock.move")[line["move_id"]]
            returned = sum(m["product_uom_qty"] for m in self.of(
                "stock.move", origin_returned_move_id=original["id"]))
            if returned + line["quantity"] > original["quantity"]:
                raise user_error(f"You cannot return more than was delivered "
                                 f"({original['quantity']}).")
            move = self._new("stock.move", picking_id=picking, product_id=line["product_id"],
                             product_uom_qty=line["quantity"], quantity=line["quantity"],
                             state="assigned", location_id=CUSTOMERS,
                             location_dest_id=source["location_id"],
                             origin_returned_move_id=original["id"], move_line_ids=[],
                             picked=False)
            self._table("stock.picking")[picking]["move_ids"].append(move)
            reserved = self._new("stock.move.line", picking_id=picking, move_id=move,
                                 product_id=line["product_id"], lot_id=False,
                                 quantity=line["quantity"], state="assigned",
                                 location_id=CUSTOMERS, location_dest_id=source["location_id"])
            self._table("stock.move")[move]["move_line_ids"].append(reserved)
        return {"type": "ir.actions.act_window", "res_model": "stock.picking",
                "res_id": picking, "view_mode": "form", "context": context}

    def _button_validate(self, ids: list[int], context: dict[str, Any]) -> Any:
        for picking_id in ids:
            picking = self._table("stock.picking")[picking_id]
            if picking["state"] in ("done", "cancel"):
                raise user_error(f"{picking['name']} is already {picking['state']}.")
            for move_id in picking["move_ids"]:
                move = self._table("stock.move")[move_id]
                product = self._table("product.product")[move["product_id"]]
                lines = [self._table("stock.move.line")[i] for i in move["move_line_ids"]]
                if self.version >= 17 and not move["picked"]:
                    return {"res_model": "stock.backorder.confirmation", "type":
                            "ir.actions.act_window"}
                if sum(line["quantity"] for line in lines) != move["product_uom_qty"] and \
                        not context.get("skip_backorder"):
                    return {"res_model": "stock.backorder.confirmation",
                            "type": "ir.actions.act_window"}
                for line in lines:
                    if product["tracking"] != "none" and not line.get("lot_id"):
                        raise user_error("You need to supply a Lot/Serial number for product:"
                                         f" {product['name']}")
                    if product["tracking"] == "serial" and line["quantity"] != 1:
                        raise user_error("A serial number must have a quantity of 1.")
                    lot = self._table("stock.lot").get(line.get("lot_id") or 0)
                    expiry = lot.get("expiration_date") if lot else None
                    if (self.product_expiry and expiry and not context.get("skip_expired")
                            and datetime.fromisoformat(expiry).date() < self.today):
                        return {"res_model": "expiry.picking.confirmation",
                                "type": "ir.actions.act_window"}
            picking["state"] = "done"
            for move_id in picking["move_ids"]:
                move = self._table("stock.move")[move_id]
                move["state"] = "done"
                for line_id in move["move_line_ids"]:
                    line = self._table("stock.move.line")[line_id]
                    line["state"] = "done"
                    self._move_quants(line)
        return True

    def _reverse(self, ids: list[int], context: dict[str, Any]) -> dict[str, Any]:
        wizard = self._table("account.move.reversal")[ids[0]]
        invoice = self._table("account.move")[wizard["move_ids"][0]]
        if invoice["state"] != "posted":
            raise user_error("You can only reverse posted moves.")
        credit_note = self._new(
            "account.move", name="/", move_type="out_refund", state="draft",
            ref=f"Reversal of: {invoice['name']}, {wizard['reason']}",
            currency_id=invoice["currency_id"], invoice_origin=invoice["invoice_origin"],
            invoice_line_ids=[], reversed_entry_id=invoice["id"],
            journal_id=wizard["journal_id"])
        for line in self.lines_of(invoice["id"]):
            copy = {k: v for k, v in line.items() if k not in ("id", "move_id")}
            line_id = self._new("account.move.line", move_id=credit_note, **copy)
            self._table("account.move")[credit_note]["invoice_line_ids"].append(line_id)
        self._recompute(credit_note)
        return {"name": "Reverse Moves", "type": "ir.actions.act_window",
                "res_model": "account.move", "res_id": credit_note, "view_mode": "form"}

    def _post(self, ids: list[int], context: dict[str, Any]) -> bool:
        for move_id in ids:
            move = self._table("account.move")[move_id]
            if move["state"] == "posted":
                raise user_error(f"The entry {move['name']} is already posted.")
            move["state"] = "posted"
            move["name"] = self._name("RINV/2026/")
        return False  # what action_post answers in 17

    def _recompute(self, move_id: int) -> None:
        move = self._table("account.move")[move_id]
        untaxed = total = Decimal(0)
        for line in self.lines_of(move_id):
            subtotal = _money(line["quantity"] * line["price_unit"])
            line["price_subtotal"] = subtotal
            line["price_total"] = _money(subtotal * (100 + line["tax_percent"]) / 100)
            untaxed += subtotal
            total += line["price_total"]
        move["amount_untaxed"], move["amount_total"] = untaxed, total
