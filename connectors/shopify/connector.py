"""`ShopifyConnector`: storefront (returns in, decisions back) and payment (refunds) for a
Shopify shop, over the Admin GraphQL API and Shopify's webhooks."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Mapping
from datetime import datetime
from typing import ClassVar, Final

from pydantic import Field, PositiveInt, SecretStr

from refundbridge.connectors.base import ClientConnector, ConnectorContext, ConnectorSettings
from refundbridge.connectors.shopify import webhooks
from refundbridge.connectors.shopify.client import ShopifyClient, raise_user_errors
from refundbridge.connectors.shopify.exchanges import to_exchange_request
from refundbridge.connectors.shopify.transformers import (
    DECLINE_NOTE_MAX,
    NAME,
    RETURN_APPROVED_STATES,
    RETURN_DECLINED_STATES,
    RETURN_REQUESTED,
    read_note,
    refund_input,
    refund_with_key,
    to_external_refund,
    to_refund_result,
    to_request,
    to_snapshot,
    to_webhook_update,
)
from refundbridge.connectors.shopify.wire import RETURN_GID
from refundbridge.core.errors import PermanentProviderError
from refundbridge.core.model import RefundResult
from refundbridge.core.ports import (
    Capability,
    Ignored,
    OrderSnapshot,
    RefundOrder,
    RefundRequested,
    Role,
    StatusOutcome,
    StatusUpdate,
    WebhookEvent,
)

# Redeliveries of a `returns/request` remembered per process, so they neither cost another
# order look-up nor turn into a "changed body" conflict if the order changed in between.
RECENT_DELIVERIES: Final = 1024
DECLINE_REASON: Final = "OTHER"  # ReturnDeclineReason; our reason goes in the note


class ShopifySettings(ConnectorSettings):
    shop_domain: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*\.myshopify\.com$",
                             examples=["acme.myshopify.com"])
    access_token: SecretStr  # Admin API token, sent as X-Shopify-Access-Token
    client_secret: SecretStr  # the app's secret; it signs the webhooks
    # 2026-01 is the first version with `@idempotent` on refundCreate.
    api_version: str = Field(default="2026-01", pattern=r"^\d{4}-\d{2}$")
    base_url: str | None = None  # default https://{shop_domain}
    # Off by default: the signature does not cover X-Shopify-Triggered-At, and Shopify
    # redelivers a failed webhook for hours, so only set this to refuse very old events.
    tolerance_seconds: PositiveInt | None = None
    locale: str = Field(default="en", pattern=r"^[a-z]{2}(-[A-Za-z]{2,4})?$")
    notify_customer: bool = False  # RefundBridge writes to customers itself


class ShopifyConnector(ClientConnector[ShopifyClient]):
    name = NAME
    roles = frozenset({Role.STOREFRONT, Role.PAYMENT})
    capabilities = frozenset({
        Capability.RECEIVE_REQUESTS, Capability.LOOKUP_ORDER, Capability.WRITE_BACK,
        Capability.ISSUE_REFUND, Capability.REFUND_STATUS, Capability.REFUND_NOTIFICATIONS,
    })
    Settings: ClassVar[type[ConnectorSettings]] = ShopifySettings

    settings: ShopifySettings

    def __init__(self, settings: ShopifySettings, ctx: ConnectorContext) -> None:
        super().__init__(settings, ctx)
        self._recent: OrderedDict[str, RefundRequested] = OrderedDict()
        self._recent_lock = threading.Lock()

    def build_client(self) -> ShopifyClient:
        return ShopifyClient(
            self.ctx,
            base_url=self.settings.base_url or f"https://{self.settings.shop_domain}",
            access_token=self.settings.access_token,
            api_version=self.settings.api_version,
        )

    # ---------------------------------------------------------------- storefront
    def lookup_order(self, order_id: str) -> OrderSnapshot:
        return to_snapshot(self.client.get_order(order_id), self.settings.locale)

    # ---------------------------------------------------------------- StatusWriter
    def write_back(self, update: StatusUpdate) -> None:
        """Approve or decline the Shopify return the case came from. Idempotent: a return
        already in the wanted state is left alone, whoever put it there."""
        if update.outcome is StatusOutcome.REFUNDED:
            # The refund is visible on the order already; closing the return is for whoever
            # receives the goods, which may come after the money (refund on approval).
            return
        return_id = update.external_id
        if not return_id.startswith(RETURN_GID):
            raise PermanentProviderError(NAME, f"case {update.case_id}: {return_id!r} is not "
                                               "a Shopify return id", code="not_a_return")
        approve = update.outcome is StatusOutcome.APPROVED
        wanted = RETURN_APPROVED_STATES if approve else RETURN_DECLINED_STATES
        status = self.client.get_return(return_id).status.upper()
        if status in wanted:
            return
        if status != RETURN_REQUESTED:
            raise PermanentProviderError(
                NAME, f"return {return_id} is {status}; it can no longer be "
                      f"{'approved' if approve else 'declined'}", code="return_state")
        if approve:
            payload = self.client.approve_return(return_id, self.settings.notify_customer)
            mutation = "returnApproveRequest"
        else:
            note = (update.note or "Declined by the shop's return policy")[:DECLINE_NOTE_MAX]
            payload = self.client.decline_return(return_id, DECLINE_REASON, note,
                                                 self.settings.notify_customer)
            mutation = "returnDeclineRequest"
        if payload.user_errors:
            # An earlier attempt whose answer we lost, or a person in the admin, may have
            # answered the return between our read and our write.
            if self.client.get_return(return_id).status.upper() in wanted:
                return
            raise_user_errors(payload.user_errors, mutation)

    # ---------------------------------------------------------------- PaymentGateway
    def issue_refund(self, order: RefundOrder) -> RefundResult:
        shop_order = self.client.get_order(order.payment_reference)
        try:
            refund = self.client.create_refund(refund_input(order, shop_order),
                                               order.idempotency_key)
        except PermanentProviderError:
            # A refund made earlier under this key has changed what is left to refund, so
            # the input worked out now is refused before sending (nothing left), or differs
            # from the first and Shopify refuses the key with other input. Either way that
            # refund, not a refusal, is the answer.
            found = self.find_refund(order)
            if found is not None:
                return found
            raise
        return to_refund_result(refund)

    def find_refund(self, order: RefundOrder) -> RefundResult | None:
        # Shopify keeps idempotency keys for 24 hours only; the key in the refund's note
        # lasts as long as the order does.
        found = refund_with_key(self.client.get_order_refunds(order.payment_reference),
                                order.idempotency_key)
        if found is None:
            return None
        return to_refund_result(self.client.get_refund(found.id))

    def refund_status(self, provider_ref: str, order: RefundOrder) -> RefundResult:
        return to_refund_result(self.client.get_refund(provider_ref))

    # ---------------------------------------------------------------- WebhookReceiver
    def parse_webhook(self, headers: Mapping[str, str], body: bytes, now: datetime
                      ) -> WebhookEvent:
        delivery = webhooks.check(headers, body, self.settings.client_secret.get_secret_value(),
                                  self.settings.shop_domain, now, self.settings.tolerance_seconds)
        if delivery.topic == webhooks.RETURNS_REQUEST:
            return self._return_requested(delivery, body, now)
        if delivery.topic == webhooks.REFUNDS_CREATE:
            refund = webhooks.parse_refund(body)
            marker = read_note(refund.note)
            if marker is not None:
                return to_webhook_update(refund, marker, delivery.webhook_id)
            external = to_external_refund(refund)
            if external is None:
                return Ignored(f"shopify refund {refund.gid} moved no money")
            return external
        if delivery.topic == webhooks.ORDERS_UPDATED:
            return Ignored("shopify orders/updated: returns and refunds arrive on their own "
                           "topics")
        return Ignored(f"shopify topic '{delivery.topic}' is not handled")

    def _return_requested(self, delivery: webhooks.Delivery, body: bytes, now: datetime
                          ) -> RefundRequested:
        key = (f"{delivery.webhook_id}:{hashlib.sha256(body).hexdigest()}"
               if delivery.webhook_id else None)
        if key is not None:
            with self._recent_lock:
                seen = self._recent.get(key)
            if seen is not None:
                return seen
        ret = webhooks.parse_return(body)
        # A transient failure here propagates, so the API answers 5xx and Shopify redelivers.
        order = self.client.get_order(ret.order.admin_graphql_api_id)
        # A return with an exchange: what goes out instead is read from the Admin API.
        exchanges = (self.client.get_return_exchanges(ret.admin_graphql_api_id)
                     if ret.exchange_line_items else None)
        # The signed body, not the looked-up order, is what makes two deliveries the same.
        at = delivery.triggered_at or now
        request = (to_exchange_request(ret, order, exchanges, at, self.settings.locale)
                   if exchanges is not None else to_request(ret, order, at, self.settings.locale))
        event = RefundRequested(request, fingerprint=hashlib.sha256(body).hexdigest())
        if key is not None:
            with self._recent_lock:
                self._recent[key] = event
                while len(self._recent) > RECENT_DELIVERIES:
                    self._recent.popitem(last=False)
        return event
