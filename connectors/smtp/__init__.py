"""SMTP notifier: customer emails rendered from per-locale Jinja2 templates."""

from refundbridge.connectors.smtp.notifier import SmtpNotifier
from refundbridge.connectors.smtp.settings import SmtpSettings

__all__ = ["SmtpNotifier", "SmtpSettings"]
