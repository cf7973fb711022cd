"""The `smtp` table of a shop's settings."""

from __future__ import annotations

from typing import Self

from pydantic import Field, SecretStr, field_validator, model_validator

from refundbridge.connectors.base import ConnectorSettings
from refundbridge.connectors.smtp.transformers import MessageError, mailbox


class SmtpSettings(ConnectorSettings):
    host: str = "127.0.0.1"
    port: int = Field(default=25, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    starttls: bool = False
    sender_email: str
    sender_name: str = "RefundBridge"
    # Where the customer's replies go (the Reply-To header, shown in the HTML part's
    # footer), with `sender_name` as its display name; unset, replies go to sender_email.
    reply_to: str | None = None
    timeout: float = Field(default=10.0, gt=0)

    @field_validator("sender_email", "reply_to")
    @classmethod
    def _parseable_address(cls, value: str | None) -> str | None:
        # Checked here so a typo surfaces as a ConfigError at startup, naming the key,
        # rather than as a failed send for every customer.
        if value is None:
            return None
        try:
            mailbox(value)
        except MessageError as exc:
            raise ValueError(str(exc)) from exc
        return value

    @property
    def reply_email(self) -> str:
        """The address a customer's reply reaches."""
        return self.reply_to or self.sender_email

    @model_validator(mode="after")
    def _credentials_come_in_pairs(self) -> Self:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password must be set together")
        return self
