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
    [shops.acme.policy.skus.DRESSING-STERILE-10]
    sterile = true
    no_reason_excluded = true
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
from datetime import time
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from refundbridge.config.signal_settings import SignalSettings
from refundbridge.core.access import OperatorRole
from refundbridge.core.errors import ConfigError, InvalidRequest, InvalidUdi
from refundbridge.core.money import check_currency
from refundbridge.core.policy import (
    DEFAULT_AUTO_APPROVE_REASONS,
    Jurisdiction,
    ShopPolicy,
    SkuFlags,
)
from refundbridge.core.request import ReasonCode
from refundbridge.core.udi import gtin14

ROLE_KEYS = ("storefront", "payment", "erp", "notifier")
DATABASE_BACKENDS = ("postgresql", "postgres", "sqlite")


class SkuFlagSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    no_reason_excluded: bool = False
    sterile: bool = False
    cold_chain: bool = False
    custom_made: bool = False
    implantable: bool = False
    single_use: bool = False
    shelf_life: bool = False
    professional_only: bool = False
    gtin: str | None = None
    open_box_resale: bool | None = None  # R12; unset: the shop's `open_box_resale`

    @field_validator("gtin")
    @classmethod
    def _gtin(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return gtin14(value)
        except InvalidUdi as exc:
            raise ValueError(exc.message) from exc

    def to_flags(self) -> SkuFlags:
        return SkuFlags(**self.model_dump())


_DEFAULT = ShopPolicy()  # the thresholds' defaults live in core/policy.py, once


class PolicySettings(BaseModel):
    """`[shops.<id>.policy]`: every threshold the compliance rules read (core/policy.py)."""

    model_config = ConfigDict(extra="forbid")

    refund_timing: Literal["on_approval", "on_receipt"] = "on_receipt"
    replacement_timing: Literal["on_approval", "on_receipt"] = "on_receipt"
    auto_approve_limits: dict[str, Decimal] = Field(
        default_factory=lambda: {"CNY": Decimal("500"), "USD": Decimal("100"),
                                 "EUR": Decimal("100"), "JPY": Decimal("10000")})
    auto_approve_reasons: list[ReasonCode] = Field(
        default_factory=lambda: sorted(DEFAULT_AUTO_APPROVE_REASONS))
    no_reason_window_days: int = Field(default=_DEFAULT.no_reason_window_days, ge=0, le=365)
    near_expiry_days: int = Field(default=_DEFAULT.near_expiry_days, ge=0, le=3650)
    frequent_refund_count: int = Field(default=_DEFAULT.frequent_refund_count, ge=1,
                                       le=10_000)
    frequent_refund_days: int = Field(default=_DEFAULT.frequent_refund_days, ge=1, le=3650)
    jurisdiction: Jurisdiction = _DEFAULT.jurisdiction
    timezone: str = _DEFAULT.timezone
    refund_deadline_days: int = Field(default=_DEFAULT.refund_deadline_days, ge=1, le=15)
    open_box_resale: bool = _DEFAULT.open_box_resale
    injury_terms: list[str] = Field(default_factory=list, max_length=500)
    # Four eyes: `four_eyes_above = { CNY = "2000" }` — a reviewer's decision on a request
    # above this needs a second reviewer (adverse events always do). Empty: never by amount.
    four_eyes_above: dict[str, Decimal] = Field(default_factory=dict)
    skus: dict[str, SkuFlagSettings] = Field(default_factory=dict)
    # The customer's status link (every message carries one) works this many days.
    status_link_days: int = Field(default=_DEFAULT.status_link_days, ge=1, le=3650)
    # Where customers send returned goods, as the status page shows it ("" : the page
    # tells them to use the address in the approval email).
    return_address: str = Field(default="", max_length=500)
    # The default region of customers' phone numbers, ISO 3166 alpha-2 ("CN"); unset: from
    # the jurisdiction (CN → CN, US → US, EU → none: numbers must start with +).
    country: str | None = None
    # Non-urgent SMS are held back in these hours, shop time ("21:00-08:00"); unset: never.
    sms_quiet_hours: str | None = None
    # Quality signals: thresholds and the shop's quality contact (config/signal_settings.py).
    signals: SignalSettings = Field(default_factory=SignalSettings)

    @field_validator("country")
    @classmethod
    def _country(cls, value: str | None) -> str | None:
        import phonenumbers

        if value is None:
            return None
        code = value.strip().upper()
        if code not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"{value!r} is not an ISO 3166 alpha-2 country with phone "
                             "numbers (for example \"CN\")")
        return code

    @field_validator("sms_quiet_hours")
    @classmethod
    def _quiet_hours(cls, value: str | None) -> str | None:
        if value is None:
            return None
        _quiet_span(value)
        return value.strip()

    @field_validator("injury_terms")
    @classmethod
    def _injury_terms(cls, value: list[str]) -> list[str]:
        terms = []
        for index, term in enumerate(value):
            word = term.strip()
            # A blank term would match every reason; a control character none.
            if not word or len(word) > 64 or any(not c.isprintable() for c in word):
                raise ValueError(f"entry {index} ({term!r}) must be 1–64 printable "
                                 "characters")
            terms.append(word)
        return terms

    @field_validator("auto_approve_limits", "four_eyes_above")
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

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as "
                             "\"Asia/Shanghai\")") from exc
        return value

    def to_policy(self) -> ShopPolicy:
        return ShopPolicy(
            refund_timing=self.refund_timing,
            replacement_timing=self.replacement_timing,
            auto_approve_limits=dict(self.auto_approve_limits),
            auto_approve_reasons=frozenset(self.auto_approve_reasons),
            no_reason_window_days=self.no_reason_window_days,
            near_expiry_days=self.near_expiry_days,
            frequent_refund_count=self.frequent_refund_count,
            frequent_refund_days=self.frequent_refund_days,
            jurisdiction=self.jurisdiction,
            timezone=self.timezone,
            refund_deadline_days=self.refund_deadline_days,
            sku_flags={sku: flags.to_flags() for sku, flags in self.skus.items()},
            open_box_resale=self.open_box_resale,
            injury_terms=tuple(self.injury_terms),
            four_eyes_above=dict(self.four_eyes_above),
            status_link_days=self.status_link_days,
            return_address=self.return_address.strip(),
            country=self.country,
            sms_quiet_hours=_quiet_span(self.sms_quiet_hours) if self.sms_quiet_hours else None,
            signals=self.signals.to_policy(),
        )


def _quiet_span(value: str) -> tuple[time, time]:
    """"21:00-08:00" → (21:00, 08:00); a ValueError says what is wrong."""
    parts = value.strip().split("-")
    try:
        if len(parts) != 2:
            raise ValueError
        start, end = (time.fromisoformat(p.strip()) for p in parts)
    except ValueError:
        raise ValueError(f"{value!r}: write the hours as \"HH:MM-HH:MM\", for example "
                         "\"21:00-08:00\"") from None
    if start == end:
        raise ValueError(f"{value!r}: the quiet hours start and end at the same time")
    return start, end


class ShopSettings(BaseModel):
    """A shop names a connector per role; every other table is a connector's settings."""

    model_config = ConfigDict(extra="allow")

    name: str = ""
    storefront: str = "generic"
    payment: str
    erp: str
    notifier: str
    # An SMS connector beside the (email) notifier: `sms = "aliyun_sms"`, its settings in
    # `[shops.<id>.aliyun_sms]`; unset: no SMS.
    sms: str | None = None
    policy: PolicySettings = Field(default_factory=PolicySettings)

    def connector_config(self, connector: str) -> Mapping[str, Any]:
        extra = self.model_extra or {}
        value = extra.get(connector, {})
        return value if isinstance(value, Mapping) else {}

    def connectors_by_role(self) -> dict[str, str]:
        return {role: getattr(self, role) for role in ROLE_KEYS}


class ApiTokenSettings(BaseModel):
    """A machine's bearer token for `/v1`: its name is what the audit trail records, its
    role what it may do, `shops` what it may reach ("*": every shop)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    token: SecretStr
    role: OperatorRole = OperatorRole.ADMIN
    shops: list[str] = Field(min_length=1)

    @field_validator("token")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 16:
            raise ValueError("at least 16 characters")
        return value


class ConsoleSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # A console login lasts this long (then the operator logs in again).
    session_hours: float = Field(default=10.0, gt=0, le=24 * 7)
    # Mark the session cookie Secure even when the request did not arrive over HTTPS (set
    # it behind a proxy that ends TLS without passing X-Forwarded-Proto).
    secure_cookies: bool = False
    # Failed logins allowed per 15 minutes for one name, and from one address.
    login_failures_per_name: int = Field(default=5, ge=1, le=1000)
    login_failures_per_address: int = Field(default=30, ge=1, le=100000)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REFUNDBRIDGE_", env_nested_delimiter="__",
                                      extra="forbid")

    database_url: str = "sqlite:///refundbridge.db"
    redis_url: str | None = None  # None: an embedded in-process Redis (fakeredis)

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            backend = make_url(value).get_backend_name()
        except ArgumentError as exc:
            raise ValueError("is not a database URL (postgresql://user:password@host:5432/"
                             "name or sqlite:///path/to/file.db)") from exc
        if backend not in DATABASE_BACKENDS:
            raise ValueError(f"unknown scheme '{backend}': RefundBridge runs on PostgreSQL "
                             "(postgresql://…) or SQLite (sqlite:///…)")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        from redis import ConnectionPool

        if value is None:
            return None
        try:
            ConnectionPool.from_url(value)  # parses only; connects on first use
        except ValueError as exc:
            # redis-py's message lists the schemes; it never contains the password.
            raise ValueError(str(exc)) from exc
        return value
    demo: bool = False
    queue_name: str = "refundbridge"
    # Tokens with every permission on every shop (the audit trail names them by position);
    # `api_tokens` gives each machine a name, a role and its shops.
    operator_tokens: list[SecretStr] = Field(default_factory=list)
    api_tokens: list[ApiTokenSettings] = Field(default_factory=list)
    console: ConsoleSettings = Field(default_factory=ConsoleSettings)
    # Signs the customers' status links (/status/{token}); at least 32 characters. Unset:
    # a random key per start in demo mode, and no status links otherwise.
    status_link_secret: SecretStr | None = None
    # Where customers reach the API: the start of the links in their messages.
    public_base_url: str = Field(default="http://127.0.0.1:8000",
                                 pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$")
    reconcile_interval_seconds: float = 60.0
    stale_after_seconds: float = 300.0
    # A refund the provider still reports pending is asked about again after this long.
    pending_refund_poll_seconds: float = 600.0
    # A step's job handed to the queue this often without finishing is given up: the case
    # fails for a person (a message is marked failed). Each re-dispatch waits twice as long.
    max_dispatches: int = Field(default=8, ge=1, le=100)
    # A case the reconciler found idle this often without a change of state fails likewise.
    max_revivals: int = Field(default=5, ge=1, le=100)
    job_timeout_seconds: int = 120
    http_timeout_seconds: float = 10.0
    # Threads the API runs blocking work (database, signatures) on. More threads than the
    # database pool, or than Python can keep busy on one core, only add contention.
    api_threads: int = Field(default=8, ge=1, le=200)
    # The largest request body any route reads (webhooks, imports, operator calls); a larger
    # one is refused with 413 before more than this is read. 1 MiB holds the largest real
    # webhook (a Shopify or WooCommerce order with hundreds of lines) many times over.
    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=1_073_741_824)
    database_pool_size: int = Field(default=16, ge=1, le=200)
    retry_attempts: int = 5
    retry_initial_wait: float = 0.25
    retry_max_wait: float = 8.0
    # "json": one JSON object a log line (for a log shipper); "text": a line for people.
    # Either way each line names the request, shop, connector, case and step it is about.
    log_format: Literal["text", "json"] = "text"
    # The scraper's bearer token for GET /metrics (not an operator token: it reads counts
    # only); at least 16 characters. Unset: /metrics answers 404.
    metrics_token: SecretStr | None = None
    # OpenTelemetry spans for the API, the jobs and the provider calls, sent over OTLP/HTTP
    # (OTEL_EXPORTER_OTLP_ENDPOINT). Needs the `otel` extra; without it, tracing stays off.
    tracing: bool = False
    shops: dict[str, ShopSettings] = Field(default_factory=dict)

    @field_validator("metrics_token")
    @classmethod
    def _metrics_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("at least 16 characters")
        return value

    @model_validator(mode="after")
    def _tokens_are_distinct(self) -> Settings:
        """Each token names one caller: a name the trail could confuse with another, a secret
        listed twice (the last would silently win) or a shop that does not exist is refused."""
        names: set[str] = set()
        secrets = {t.get_secret_value() for t in self.operator_tokens}
        if len(secrets) < len(self.operator_tokens):
            raise ValueError("operator_tokens: the same token is listed twice")
        for index, entry in enumerate(self.api_tokens):
            where = f"api_tokens.{index}"
            if entry.name.startswith("operator_tokens") or entry.name in names:
                raise ValueError(f"{where}.name: '{entry.name}' is taken; give each token "
                                 "its own name")
            names.add(entry.name)
            secret = entry.token.get_secret_value()
            if secret in secrets:
                raise ValueError(f"{where}.token: already used by another token")
            secrets.add(secret)
            unknown = sorted(set(entry.shops) - set(self.shops) - {"*"})
            if unknown and self.shops:
                raise ValueError(f"{where}.shops: no shop {', '.join(unknown)} "
                                 f"(known: {', '.join(sorted(self.shops))}, or \"*\")")
        return self

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


def load_settings(config_path: str | os.PathLike[str] | None = None, *,
                  config_origin: str | None = None, check_secrets: bool = True,
                  **overrides: Any) -> Settings:
    """Read the TOML file (argument, else REFUNDBRIDGE_CONFIG), apply the environment and
    `overrides`, validate, and refuse placeholder secrets outside demo mode.

    `config_origin` names where the path came from in an error about the file (the CLI
    says `--config`); `check_secrets=False` leaves the placeholder check to the caller, who
    reports it with the connectors' own (`refundbridge.bootstrap.check_settings`).

    Raises `ConfigError` naming the offending key; several at once as `ConfigProblems`."""
    from refundbridge.connectors.base import ConfigProblems

    env_path = os.environ.get("REFUNDBRIDGE_CONFIG")
    path = config_path or env_path
    origin = config_origin or ("config_path" if config_path else "REFUNDBRIDGE_CONFIG")
    data: dict[str, Any] = {}
    if path:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(origin, f"no such file: {path}") from exc
        except IsADirectoryError as exc:
            raise ConfigError(origin, f"is a directory, not a TOML file: {path}") from exc
        except PermissionError as exc:
            raise ConfigError(origin, f"cannot read {path}: permission denied") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(str(path), f"not UTF-8 text: {exc.reason}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(str(path), f"not valid TOML: {exc}") from exc
    data.update(overrides)
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        raise ConfigProblems.combine([
            _config_error(error)
            for error in exc.errors()]) from exc
    if check_secrets:
        placeholders = placeholder_tokens(settings)
        if placeholders:
            raise ConfigProblems.combine(placeholders)
    return settings


def _config_error(error: ErrorDetails) -> ConfigError:
    key, message = ".".join(str(p) for p in error["loc"]), _message(error)
    if not key and ": " in message:  # a whole-settings check names its key in its message
        key, message = message.split(": ", 1)
    return ConfigError(key, message)


def _message(error: ErrorDetails) -> str:
    # Our validators' own words, without pydantic's "Value error, " in front of them.
    if error["type"] == "value_error" and "error" in error.get("ctx", {}):
        return str(error["ctx"]["error"])
    return error["msg"]


def placeholder_tokens(settings: Settings) -> list[ConfigError]:
    """Every operator token that is a placeholder (none in demo mode)."""
    from refundbridge.connectors.base import is_placeholder

    if settings.demo:
        return []
    secret = settings.status_link_secret
    link_secret = [ConfigError("status_link_secret", "is a placeholder; set a random key of "
                                                     "at least 32 characters (demo mode only)")
                   ] if secret is not None and (is_placeholder(secret) or len(
                       secret.get_secret_value()) < 32) else []
    metrics = settings.metrics_token
    link_secret += [ConfigError("metrics_token", "is a placeholder; set a real token (demo "
                                                 "mode only)")
                    ] if metrics is not None and is_placeholder(metrics) else []
    return link_secret + [ConfigError(f"operator_tokens.{index}",
                        "is a placeholder; set a real token (demo mode only)")
            for index, token in enumerate(settings.operator_tokens) if is_placeholder(token)
            ] + [ConfigError(f"api_tokens.{index}.token",
                             "is a placeholder; set a real token (demo mode only)")
                 for index, entry in enumerate(settings.api_tokens)
                 if is_placeholder(entry.token)]
