"""`WooCommerceConnector`: a WooCommerce shop as storefront (refund requests by webhook, order
look-up, status write-back) and as payment provider (refunds through the shop's gateway)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import ClassVar
from urllib.parse import urlsplit

from pydantic import SecretStr, field_validator, model_validator

from refundbridge.connectors.base import ClientConnector, ConnectorSettings
from refundbridge.connectors.woocommerce import webhooks
from refundbridge.connectors.woocommerce.client import WooCommerceClient
from refundbridge.connectors.woocommerce.refunds import (
    belongs_to,
    deleted_refund_result,
    note_marker,
    note_text,
    refund_body,
    refund_line_items,
    to_refund_result,
)
from refundbridge.connectors.woocommerce.transformers import NAME, OrderMapping, to_snapshot
from refundbridge.connectors.woocommerce.wire import WCNote, WCRefund
from refundbridge.core.errors import InvalidRequest, PermanentProviderError
from refundbridge.core.model import RefundResult
from refundbridge.core.ports import (
    Capability,
    OrderSnapshot,
    RefundOrder,
    Role,
    StatusOutcome,
    StatusUpdate,
    WebhookEvent,
)

LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def _status_slug(value: str | None) -> str | None:
    # The admin shows `wc-refund-requested`; the REST API and webhooks say `refund-requested`.
    if value is None:
        return None
    slug = value.strip().lower().removeprefix("wc-")
    if not slug or not all(c.isalnum() or c in "-_" for c in slug):
        raise ValueError(f"'{value}' is not an order status slug such as 'refund-requested'")
    return slug


class WooCommerceSettings(ConnectorSettings, OrderMapping):
    """The connection, the write-back, and (inherited) where the return plugin keeps its
    request (`transformers.OrderMapping`)."""

    base_url: str  # the shop's site, e.g. https://shop.example.com
    consumer_key: SecretStr  # ck_…
    consumer_secret: SecretStr  # cs_…
    webhook_secret: SecretStr
    # Where write-back moves an order in `refund_requested_status`; None leaves the status
    # alone (a note is added).
    approved_status: str | None = "refund-approved"
    declined_status: str | None = "completed"
    # Whether write-back notes are shown (and emailed) to the customer; ours are not, the
    # notifier does that.
    customer_notes: bool = False

    @field_validator("base_url")
    @classmethod
    def _https(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme == "http" and parts.hostname in LOCAL_HOSTS:
            return value.strip().rstrip("/")
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError("must be the shop's https:// address: WooCommerce accepts the "
                             "consumer key and secret (HTTP Basic) only over HTTPS")
        return value.strip().rstrip("/")

    @field_validator("refund_requested_status")
    @classmethod
    def _required_slug(cls, value: str) -> str:
        slug = _status_slug(value)
        if slug is None:
            raise ValueError("an order status slug is required")
        return slug

    @field_validator("approved_status", "declined_status", "exchange_requested_status")
    @classmethod
    def _optional_slug(cls, value: str | None) -> str | None:
        return _status_slug(value)

    @model_validator(mode="after")
    def _two_statuses(self) -> WooCommerceSettings:
        if self.exchange_requested_status == self.refund_requested_status:
            raise ValueError("exchange_requested_status must differ from "
                             "refund_requested_status: one status cannot ask for both")
        return self


class WooCommerceConnector(ClientConnector[WooCommerceClient]):
    name: ClassVar[str] = NAME
    roles: ClassVar[frozenset[Role]] = frozenset({Role.STOREFRONT, Role.PAYMENT})
    capabilities: ClassVar[frozenset[Capability]] = frozenset({
        Capability.RECEIVE_REQUESTS, Capability.LOOKUP_ORDER, Capability.WRITE_BACK,
        Capability.ISSUE_REFUND, Capability.REFUND_STATUS,
    })
    Settings: ClassVar[type[ConnectorSettings]] = WooCommerceSettings

    settings: WooCommerceSettings

    def build_client(self) -> WooCommerceClient:
        return WooCommerceClient(
            self.ctx, base_url=self.settings.base_url,
            consumer_key=self.settings.consumer_key,
            consumer_secret=self.settings.consumer_secret,
        )

    # ---------------------------------------------------------------- WebhookReceiver
    def parse_webhook(self, headers: Mapping[str, str], body: bytes, now: datetime
                      ) -> WebhookEvent:
        # `now` is unused: WooCommerce signs no timestamp (see `webhooks`).
        return webhooks.parse_delivery(headers, body,
                                       self.settings.webhook_secret.get_secret_value(),
                                       self.settings)

    # ---------------------------------------------------------------- storefront
    def lookup_order(self, order_id: str) -> OrderSnapshot:
        order = self.client.get_order(order_id)
        try:
            return to_snapshot(order, self.settings)
        except InvalidRequest as exc:  # the shop's data, not the caller's, is wrong
            raise PermanentProviderError(NAME, f"order {order_id}: {exc}",
                                         code="invalid_response") from exc

    def write_back(self, update: StatusUpdate) -> None:
        """Move the order on from "refund requested" and leave a private note.

        Idempotent: the status moves only while the order still has the refund-requested
        status (so a late write-back never undoes what happened since, such as WooCommerce
        setting `refunded`), and the note carries a marker per case and outcome that is
        looked for before it is added, and before each retry of adding it.
        """
        client = self.client
        order = client.get_order(update.order_id)
        target = {StatusOutcome.APPROVED: self.settings.approved_status,
                  StatusOutcome.DECLINED: self.settings.declined_status}.get(update.outcome)
        if target and order.status == self.settings.refund_requested_status:
            client.set_status(update.order_id, target)
        marker = note_marker(update.case_id, update.outcome)

        def existing_note() -> WCNote | None:
            return next((n for n in client.list_notes(update.order_id) if marker in n.note),
                        None)

        if existing_note() is None:
            client.add_note(update.order_id,
                            note_text(update.case_id, update.outcome, update.note, update.amount),
                            self.settings.customer_notes, existing_note)

    # ---------------------------------------------------------------- PaymentGateway
    def issue_refund(self, order: RefundOrder) -> RefundResult:
        """Refund through the order's own gateway, once per idempotency key.

        WooCommerce keeps no idempotency key, so the key travels in the refund's reason and
        meta_data, and the order's refunds are searched for it before the first POST and
        before every retry.
        """
        found = self.find_refund(order)
        if found is not None:
            return found
        line_items = (refund_line_items(order, self.client.get_order(order.order_id))
                      if order.lines else [])
        body = refund_body(order, line_items)
        refund = self.client.create_refund(order.order_id, body,
                                           find_existing=lambda: self._find_once(order))
        return to_refund_result(refund, order.amount.currency)

    def find_refund(self, order: RefundOrder) -> RefundResult | None:
        for refund in self.client.list_refunds(order.order_id):
            if belongs_to(refund, order):
                return to_refund_result(refund, order.amount.currency)
        return None

    def refund_status(self, provider_ref: str, order: RefundOrder) -> RefundResult:
        refund = self.client.get_refund(order.order_id, provider_ref)
        if refund is None:
            return deleted_refund_result(provider_ref)
        return to_refund_result(refund, order.amount.currency)

    def _find_once(self, order: RefundOrder) -> WCRefund | None:
        # Called inside the create call's retry loop, so it must not retry by itself.
        return next((r for r in self.client.list_refunds_once(order.order_id)
                     if belongs_to(r, order)), None)
