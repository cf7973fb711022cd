"""`[shops.<id>.policy.signals]`: the quality-signal thresholds (core/signals.py) and the
shop's quality contact, checked at start-up like every other policy key."""

from __future__ import annotations

import re
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from refundbridge.core.request import ReasonCode
from refundbridge.core.signals import DEFAULT_SIGNAL_QUALITY_REASONS, SignalPolicy

_DEFAULT = SignalPolicy()
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class QualityContactSettings(BaseModel):
    """Who hears of a raised signal: `quality_contact = { email = "…", phone = "+86…" }`."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="", max_length=255)
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=32)
    locale: str = Field(default="en", pattern=r"^(en|zh-CN)$")

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None and not _EMAIL.match(value.strip()):
            raise ValueError(f"{value!r} is not an email address")
        return value.strip() if value else None

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        from refundbridge.core.errors import InvalidRequest
        from refundbridge.core.phones import to_e164

        try:
            return to_e164(value, None)
        except InvalidRequest as exc:
            raise ValueError(f"{exc.message} (write it as +<country code>…)") from None


class SignalSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = _DEFAULT.enabled
    quality_reasons: list[ReasonCode] = Field(
        default_factory=lambda: sorted(DEFAULT_SIGNAL_QUALITY_REASONS), min_length=1)
    quality_count: int = Field(default=_DEFAULT.quality_count, ge=0, le=100_000)
    quality_window_days: int = Field(default=_DEFAULT.quality_window_days, ge=1, le=365)
    quality_rate_percent: Decimal = Field(default=_DEFAULT.quality_rate_percent, ge=0,
                                          le=100)
    rate_min_shipped: int = Field(default=_DEFAULT.rate_min_shipped, ge=1, le=10_000_000)
    rate_shipped_days: int = Field(default=_DEFAULT.rate_shipped_days, ge=1, le=3650)
    adverse_event_count: int = Field(default=_DEFAULT.adverse_event_count, ge=0, le=100_000)
    adverse_event_window_days: int = Field(default=_DEFAULT.adverse_event_window_days, ge=1,
                                           le=365)
    recall_count: int = Field(default=_DEFAULT.recall_count, ge=0, le=100_000)
    recall_window_days: int = Field(default=_DEFAULT.recall_window_days, ge=1, le=365)
    shipped_cache_minutes: int = Field(default=_DEFAULT.shipped_cache_minutes, ge=0,
                                       le=7 * 24 * 60)
    quality_contact: QualityContactSettings = Field(default_factory=QualityContactSettings)

    def to_policy(self) -> SignalPolicy:
        contact = self.quality_contact
        return SignalPolicy(
            enabled=self.enabled, quality_reasons=frozenset(self.quality_reasons),
            quality_count=self.quality_count, quality_window_days=self.quality_window_days,
            quality_rate_percent=self.quality_rate_percent,
            rate_min_shipped=self.rate_min_shipped, rate_shipped_days=self.rate_shipped_days,
            adverse_event_count=self.adverse_event_count,
            adverse_event_window_days=self.adverse_event_window_days,
            recall_count=self.recall_count, recall_window_days=self.recall_window_days,
            shipped_cache_minutes=self.shipped_cache_minutes, contact_name=contact.name,
            contact_email=contact.email, contact_phone=contact.phone,
            contact_locale=contact.locale)
