"""SMTP notifier: customer emails rendered from per-locale Jinja2 templates."""

from connectors.smtp.notifier import SmtpNotifier
from connectors.smtp.settings import SmtpSettings

__all__ = ["SmtpNotifier", "SmtpSettings"]
