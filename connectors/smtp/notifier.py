"""`SmtpNotifier`: the core's `Notifier` port over plain SMTP."""

from __future__ import annotations

import html
from typing import ClassVar

from refundbridge.connectors.base import ConnectorBase, ConnectorContext, ConnectorSettings
from refundbridge.connectors.smtp.client import SmtpClient
from refundbridge.connectors.smtp.settings import SmtpSettings
from refundbridge.connectors.smtp.transformers import (
    MessageError,
    RenderedEmail,
    TemplateRenderer,
    plain_email,
    render_status_link,
    to_email,
)
from refundbridge.core.errors import PermanentProviderError
from refundbridge.core.model import CAMPAIGN_KINDS
from refundbridge.core.ports import Capability, OutgoingMessage, Role
from refundbridge.core.signals import QualityAlert
from refundbridge.core.status_links import StatusLinkMessage


class SmtpNotifier(ConnectorBase):
    """Sends the customer emails of a refund case (received, approved, denied, refunded) and
    a recall campaign's notices and reminders, each as text and HTML (multipart/alternative)."""

    name: ClassVar[str] = "smtp"
    roles: ClassVar[frozenset[Role]] = frozenset({Role.NOTIFIER})
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.SEND_EMAIL})
    Settings: ClassVar[type[ConnectorSettings]] = SmtpSettings

    settings: SmtpSettings

    def __init__(self, settings: SmtpSettings, ctx: ConnectorContext) -> None:
        super().__init__(settings, ctx)
        self._renderer = TemplateRenderer()
        self._client = SmtpClient(settings, connector=self.name)

    def send(self, message: OutgoingMessage) -> None:
        # a campaign's message carries the campaign's id where a case's carries the case's
        owner = "campaign" if message.kind in CAMPAIGN_KINDS else "case"
        if not message.email:
            raise PermanentProviderError(
                self.name,
                f"{owner} {message.case_id}: no email address to send the "
                f"'{message.kind.value}' message to",
            )
        s = self.settings
        try:
            rendered = self._renderer.render(
                message.kind, message.locale, message.context, s.sender_name,
                reply_email=s.reply_email,
            )
            email = to_email(message, rendered, sender_email=s.sender_email,
                             sender_name=s.sender_name, reply_to=s.reply_to,
                             now=self.ctx.clock())
        except MessageError as exc:
            raise PermanentProviderError(
                self.name, f"{owner} {message.case_id}, {message.kind.value}: {exc}"
            ) from exc
        # Built once, outside the retry: every attempt sends the same bytes and Message-ID.
        self.ctx.retry.call(lambda: self._client.send(email))

    def send_quality_alert(self, alert: QualityAlert) -> None:
        """A quality signal's notice to the shop's quality contact: our own plain words
        (core/signals.py), as text and escaped HTML."""
        if not alert.email:
            raise PermanentProviderError(self.name, f"signal {alert.signal_id}: no email "
                                                    "address for the quality contact")
        s = self.settings
        rendered = RenderedEmail(alert.locale, " ".join(alert.subject.split()), alert.body,
                                 "<pre>" + html.escape(alert.body) + "</pre>")
        email = plain_email(alert.email, rendered, message_id=alert.message_id,
                            sender_email=s.sender_email, sender_name=s.sender_name,
                            reply_to=s.reply_to, now=self.ctx.clock())
        self.ctx.retry.call(lambda: self._client.send(email))

    def send_status_link(self, message: StatusLinkMessage) -> None:
        """A fresh status link to the address on file (the status page's look-up form)."""
        s = self.settings
        try:
            rendered = render_status_link(self._renderer, message.locale, {
                "order_id": message.order_id, "case_id": message.case_id,
                "status_url": message.status_url}, s.sender_name, reply_email=s.reply_email)
            email = plain_email(message.email, rendered, message_id=message.message_id,
                                sender_email=s.sender_email, sender_name=s.sender_name,
                                reply_to=s.reply_to, now=self.ctx.clock())
        except MessageError as exc:
            raise PermanentProviderError(
                self.name, f"case {message.case_id}, status link: {exc}") from exc
        self.ctx.retry.call(lambda: self._client.send(email))
