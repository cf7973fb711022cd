"""RefundBridge's settings.

Read from a TOML file named by `REFUNDBRIDGE_CONFIG` (or `--config`), then overridden by
environment variables with the prefix `REFUNDBRIDGE_` and `__` between nested keys, e.g.
`REFUNDBRIDGE_SHOPS__ACME__STRIPE__API_KEY=sk_live_…`. Each shop is a tenant:

    [shops.acme]
    storefront = "generic"      # connector names, one per role
    payment = "stripe"
    erp = "erpnext"
    notifier = "smtp"
    [shops.acme.policy]
    refund_timing = "on_receipt"
    auto_approve_limits = { CNY = "500.00", USD = "80.00" }
    [shops.acme.generic]        # a table per connector: its credentials and base_url
    secret = "…"
    [shops.acme.stripe]
    api_key = "sk_live_…"
    webhook_secret = "whsec_…"
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from core.errors import ConfigError, InvalidRequest
from core.money import check_currency
from core.request import ReasonCode
from core.rules import NO_REASON_CODES, QUALITY_CODES, ShopPolicy

ROLE_KEYS = ("storefront", "payment", "erp", "notifier")


class PolicySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refund_timing: Literal["on_approval", "on_receipt"] = "on_receipt"
    auto_approve_limits: dict[str, Decimal] = Field(
        default_factory=lambda: {"CNY": Decimal("500"), "USD": Decimal("100"),
                                 "EUR": Decimal("100"), "JPY": Decimal("10000")})
    auto_approve_reasons: list[ReasonCode] = Field(
        default_factory=lambda: sorted(NO_REASON_CODES | QUALITY_CODES))

    @field_validator("auto_approve_limits")
    @classmethod
    def _currencies(cls, value: dict[str, Decimal]) -> dict[str, Decimal]:
        checked = {}
        for code, limit in value.items():
            if limit < 0:
                raise ValueError(f"{code}: a limit cannot be negative")
            try:
                checked[check_currency(code)] = limit
            except InvalidRequest as exc:
                raise ValueError(exc.message) from exc
        return checked

    def to_policy(self) -> ShopPolicy:
        return ShopPolicy(self.refund_timing, dict(self.auto_approve_limits),
                          frozenset(self.auto_approve_reasons))


class ShopSettings(BaseModel):
    """A shop names a connector per role; every other table is a connector's settings."""

    model_config = ConfigDict(extra="allow")

    name: str = ""
    storefront: str = "generic"
    payment: str
    erp: str
    notifier: str
    policy: PolicySettings = Field(default_factory=PolicySettings)

    def connector_config(self, connector: str) -> Mapping[str, Any]:
        extra = self.model_extra or {}
        value = extra.get(connector, {})
        return value if isinstance(value, Mapping) else {}

    def connectors_by_role(self) -> dict[str, str]:
        return {role: getattr(self, role) for role in ROLE_KEYS}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REFUNDBRIDGE_", env_nested_delimiter="__",
                                      extra="forbid")

    database_url: str = "sqlite:///refundbridge.db"
    redis_url: str | None = None  # None: an embedded in-process Redis (fakeredis)
    demo: bool = False
    queue_name: str = "refundbridge"
    operator_tokens: list[SecretStr] = Field(default_factory=list)
    reconcile_interval_seconds: float = 60.0
    stale_after_seconds: float = 300.0
    job_timeout_seconds: int = 120
    http_timeout_seconds: float = 10.0
    # Threads the API runs blocking work (database, signatures) on. More threads than the
    # database pool, or than Python can keep busy on one core, only add contention.
    api_threads: int = Field(default=8, ge=1, le=200)
    database_pool_size: int = Field(default=16, ge=1, le=200)
    retry_attempts: int = 5
    retry_initial_wait: float = 0.25
    retry_max_wait: float = 8.0
    shops: dict[str, ShopSettings] = Field(default_factory=dict)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML file arrives as init kwargs; the environment overrides it.
        return (env_settings, init_settings)


def load_settings(config_path: str | os.PathLike[str] | None = None,
                  **overrides: Any) -> Settings:
    """Read the TOML file (argument, else REFUNDBRIDGE_CONFIG), apply the environment and
    `overrides`, validate, and refuse placeholder secrets outside demo mode.

    Raises `ConfigError` naming the offending key."""
    path = config_path or os.environ.get("REFUNDBRIDGE_CONFIG")
    data: dict[str, Any] = {}
    if path:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError("REFUNDBRIDGE_CONFIG", f"no such file: {path}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(str(path), f"not valid TOML: {exc}") from exc
    data.update(overrides)
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise ConfigError(key, first["msg"]) from exc
    if not settings.demo:
        from connectors.base import is_placeholder

        for index, token in enumerate(settings.operator_tokens):
            if is_placeholder(token):
                raise ConfigError(f"operator_tokens.{index}",
                                  "is a placeholder; set a real token (demo mode only)")
    return settings
