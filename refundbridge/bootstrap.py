"""The composition root: everything is built here, from settings, and nowhere else."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any, cast

import httpx
from redis import Redis
from sqlalchemy import Engine

from refundbridge.config.settings import ROLE_KEYS, Settings, placeholder_tokens
from refundbridge.connectors.base import ConfigProblems, ConnectorContext, RetryPolicy
from refundbridge.connectors.registry import ConnectorRegistry
from refundbridge.connectors.telemetry import meter_messages
from refundbridge.core.compliance import MedicalDeviceRuleSet
from refundbridge.core.errors import ConfigError, NotFound
from refundbridge.core.ports import AsyncIntakeWriter, Capability, Role, WebhookReceiver
from refundbridge.core.recalls import RecallRegister
from refundbridge.core.rules import RuleSet, ShopPolicy
from refundbridge.core.services import Services, ShopGateways
from refundbridge.core.status_links import StatusLinks
from refundbridge.store.campaigns import SqlCampaignRepository
from refundbridge.store.capa import SqlCapaRepository
from refundbridge.store.db import make_engine
from refundbridge.store.intake import AsyncPgIntakeWriter
from refundbridge.store.metrics import StoreGauges
from refundbridge.store.operators import SqlOperatorDirectory
from refundbridge.store.outbox import Dispatch, OutboxStore
from refundbridge.store.queries import CaseReads
from refundbridge.store.recalls import SqlRecallRegister
from refundbridge.store.signals import SqlSignalStore
from refundbridge.store.uow import SqlUnitOfWork
from refundbridge.workers.queue import RqDispatcher

log = logging.getLogger("refundbridge.store")


@dataclass
class ShopRuntime:
    shop_id: str
    policy: ShopPolicy
    connectors: dict[Role, Any]
    gateways: ShopGateways
    by_name: dict[str, Any] = field(default_factory=dict)


def find_shop(shops: Mapping[str, ShopRuntime], shop_id: str) -> ShopRuntime:
    try:
        return shops[shop_id]
    except KeyError:
        raise NotFound(f"no shop '{shop_id}'") from None


@dataclass
class Container:
    settings: Settings
    engine: Engine
    redis: Redis
    dispatcher: RqDispatcher
    registry: ConnectorRegistry
    shops: dict[str, ShopRuntime]
    services: Services  # for workers: work is enqueued as soon as it is committed
    api_services: Services  # for the API: work waits in the outbox for the relay
    rules: RuleSet
    uow: Callable[[], SqlUnitOfWork]
    recalls: RecallRegister
    outbox: OutboxStore
    reads: CaseReads
    operators: SqlOperatorDirectory
    campaigns: SqlCampaignRepository  # the API's: its new work waits for the relay

    @property
    def shop_ids(self) -> list[str]:
        return sorted(self.shops)

    def shop(self, shop_id: str) -> ShopRuntime:
        return find_shop(self.shops, shop_id)

    def shop_policy(self, shop_id: str) -> ShopPolicy:
        return find_shop(self.shops, shop_id).policy

    def webhook_receiver(self, shop_id: str, connector: str) -> WebhookReceiver | None:
        """The shop's storefront or payment connector of that name, if it takes webhooks."""
        shop = self.shops.get(shop_id)
        for role in (Role.STOREFRONT, Role.PAYMENT):
            candidate = shop.connectors.get(role) if shop else None
            if candidate is not None and candidate.name == connector and hasattr(
                    candidate, "parse_webhook"):
                return cast(WebhookReceiver, candidate)
        return None

    def async_intake(self) -> AsyncIntakeWriter | None:
        """A webhook intake for one run of the API's event loop; None on SQLite (its
        handler takes a thread, as every other write does)."""
        if self.engine.dialect.name != "postgresql":
            return None
        return AsyncPgIntakeWriter(self.engine, self.settings.database_pool_size)

    @cached_property
    def store_gauges(self) -> StoreGauges:
        return StoreGauges(self.engine, self.shop_ids)

    def close(self) -> None:
        self.engine.dispose()
        for shop in self.shops.values():
            _close_connectors(shop)


def make_redis(url: str | None) -> Redis:
    if url:
        return Redis.from_url(url)
    import fakeredis

    # Embedded mode: one in-process server shared by the API and the in-process worker.
    return fakeredis.FakeRedis(server=fakeredis.FakeServer())


def build_shops(settings: Settings, registry: ConnectorRegistry, retry: RetryPolicy,
                transport: httpx.BaseTransport | None = None) -> dict[str, ShopRuntime]:
    shops: dict[str, ShopRuntime] = {}
    # Every shop's every connector is tried, so one start names all refused settings.
    problems: list[ConfigError] = []
    for shop_id, shop in settings.shops.items():
        ctx = ConnectorContext(shop_id=shop_id, demo=settings.demo, retry=retry,
                               transport=transport, timeout=settings.http_timeout_seconds)
        by_name: dict[str, Any] = {}
        by_role: dict[Role, Any] = {}
        for role_key, name in shop.connectors_by_role().items():
            role = Role(role_key)
            try:
                cls = registry.get(name, role, f"shops.{shop_id}.{role_key}")
                if name not in by_name:
                    by_name[name] = cls.from_config(shop.connector_config(name), ctx)
            except ConfigError as exc:
                problems.append(exc)
                continue
            by_role[role] = by_name[name]
        sms = _sms_connector(shop_id, shop.sms, shop.connector_config, registry, ctx, by_name,
                             problems)
        if len(by_role) < len(ROLE_KEYS):
            continue
        erp, storefront = by_role[Role.ERP], by_role[Role.STOREFRONT]
        writes_back = Capability.WRITE_BACK in storefront.capabilities
        gateways = ShopGateways(
            # Messages are counted by channel and outcome for /metrics.
            by_role[Role.PAYMENT], erp, meter_messages(by_role[Role.NOTIFIER], shop_id),
            shipments=erp if Capability.SHIPPED_UNITS in erp.capabilities else None,
            storefront=storefront if writes_back else None,
            storefront_name=storefront.name if writes_back else None,
            sms=meter_messages(sms, shop_id) if sms is not None else None,
            consignees=erp if Capability.CONSIGNEES in erp.capabilities else None,
            quarantine=erp if Capability.QUARANTINE in erp.capabilities else None,
            replacement=erp if Capability.REPLACEMENT in erp.capabilities else None,
            orders=(storefront if Capability.LOOKUP_ORDER in storefront.capabilities
                    else None),
        )
        shops[shop_id] = ShopRuntime(shop_id, shop.policy.to_policy(), by_role, gateways,
                                     by_name)
    if problems:
        for runtime in shops.values():
            _close_connectors(runtime)
        raise ConfigProblems.combine(problems)
    return shops


def _sms_connector(shop_id: str, name: str | None,
                   config: Callable[[str], Mapping[str, Any]], registry: ConnectorRegistry,
                   ctx: ConnectorContext, by_name: dict[str, Any],
                   problems: list[ConfigError]) -> Any:
    """The shop's SMS connector (`sms = "…"`), built once like the others; it must declare
    `notifier.sms`."""
    if not name:
        return None
    key = f"shops.{shop_id}.sms"
    try:
        cls = registry.get(name, Role.NOTIFIER, key)
        if Capability.SEND_SMS not in cls.capabilities:
            raise ConfigError(key, f"connector '{name}' does not send SMS (it does not "
                                   f"declare {Capability.SEND_SMS.value})")
        if name not in by_name:
            by_name[name] = cls.from_config(config(name), ctx)
    except ConfigError as exc:
        problems.append(exc)
        return None
    return by_name[name]


def _close_connectors(shop: ShopRuntime) -> None:
    for connector in shop.by_name.values():
        close = getattr(connector, "close", None)
        if callable(close):
            close()


def check_settings(settings: Settings, registry: ConnectorRegistry | None = None) -> None:
    """Refuse, all at once, what only a start would refuse one by one: placeholder operator
    tokens and every shop's connector settings (building a connector opens nothing)."""
    problems: list[ConfigError] = placeholder_tokens(settings)
    try:
        shops = build_shops(settings, registry or ConnectorRegistry.discover(), RetryPolicy())
    except ConfigProblems as exc:
        problems.extend(exc.problems)
    except ConfigError as exc:
        problems.append(exc)
    else:
        for runtime in shops.values():
            _close_connectors(runtime)
    if problems:
        raise ConfigProblems.combine(problems)


def check_database(url: str, *, require_schema: bool = True) -> None:
    """Connect once and (unless `require_schema=False`, as before migrating) look for the
    current schema; a refusal is a `ConfigError` naming `database_url`, with the driver's
    one-line reason and the password hidden."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import DBAPIError, SQLAlchemyError

    from refundbridge.store.db import alembic_config, planner_warning

    parsed = make_url(url)
    shown = parsed.render_as_string(hide_password=True)
    if parsed.get_backend_name() == "sqlite":
        file = parsed.database or ""
        if file and file != ":memory:" and not file.startswith("file:"):
            path = Path(file)
            if not path.parent.is_dir():
                raise ConfigError("database_url", f"{shown}: no such directory {path.parent}")
            if require_schema and not path.exists():
                # Connecting would create an empty file and leave it behind.
                raise ConfigError("database_url", f"{shown}: no such file (`refundbridge db "
                                                  "upgrade` creates it)")
    elif "connect_timeout" not in parsed.query:
        # A host that drops packets would otherwise hold the check for minutes.
        url = parsed.update_query_dict({"connect_timeout": "5"}).render_as_string(
            hide_password=False)
    engine = make_engine(url, pool_size=1)
    try:
        with engine.connect() as conn:
            revision = MigrationContext.configure(conn).get_current_revision()
            warning = planner_warning(conn)
            if warning is not None:
                log.warning(warning)
    except (DBAPIError, SQLAlchemyError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        raise ConfigError("database_url", f"cannot connect to {shown}: "
                                          f"{reason[0] if reason else type(exc).__name__}"
                          ) from exc
    finally:
        engine.dispose()
    if not require_schema:
        return
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    if revision != head:
        found = f"at revision {revision}" if revision else "has no RefundBridge schema"
        raise ConfigError("database_url", f"{shown} {found} (the code needs {head}): run "
                                          "`refundbridge db upgrade`")


def check_redis(url: str | None) -> None:
    """Ping the configured Redis; no answer is a `ConfigError` naming `redis_url`."""
    from redis.exceptions import RedisError

    if url is None:
        return
    client = Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
    try:
        client.ping()
    except RedisError as exc:
        raise ConfigError("redis_url", f"no answer from Redis at {_hide_password(url)}: "
                                       f"{exc}") from exc
    finally:
        client.close()


def _hide_password(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def status_links(settings: Settings,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> StatusLinks | None:
    """The signer of customers' status links: `status_link_secret`, or in demo mode (one
    process runs the API and the worker) a random key for this start. None: no links."""
    import secrets

    secret = settings.status_link_secret
    if secret is None and not settings.demo:
        return None
    key = secret.get_secret_value() if secret is not None else secrets.token_urlsafe(32)
    return StatusLinks(key, settings.public_base_url, clock=clock)


def bootstrap(
    settings: Settings,
    *,
    redis: Redis | None = None,
    engine: Engine | None = None,
    registry: ConnectorRegistry | None = None,
    rules: RuleSet | None = None,
    transport: httpx.BaseTransport | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    dispatch: Dispatch | None = None,
) -> Container:
    """Build the app's object graph. Tests pass their own Redis/engine/rules; nothing else
    differs between the demo, production and tests."""
    if not settings.shops:
        raise ConfigError("shops", "configure at least one shop")
    engine = engine or make_engine(settings.database_url, pool_size=settings.database_pool_size)
    redis = redis or make_redis(settings.redis_url)
    registry = registry or ConnectorRegistry.discover()
    retry = RetryPolicy(settings.retry_attempts, settings.retry_initial_wait,
                        settings.retry_max_wait)
    shops = build_shops(settings, registry, retry, transport)
    dispatcher = RqDispatcher(redis, settings.queue_name, settings.job_timeout_seconds)
    hand_over: Dispatch = dispatch or dispatcher
    rule_set: RuleSet = rules or MedicalDeviceRuleSet()

    recalls = SqlRecallRegister(engine, clock)

    def uow() -> SqlUnitOfWork:
        return SqlUnitOfWork(engine, hand_over)

    def api_uow() -> SqlUnitOfWork:
        return SqlUnitOfWork(engine, None)

    services = Services(
        uow=uow,
        policy=lambda shop_id: find_shop(shops, shop_id).policy,
        gateways=lambda shop_id: find_shop(shops, shop_id).gateways,
        rules=lambda shop_id: rule_set,
        clock=clock,
        booking_lease=timedelta(seconds=2 * settings.job_timeout_seconds),
        status_links=status_links(settings, clock),
        campaigns=SqlCampaignRepository(engine, hand_over),
        capas=SqlCapaRepository(engine),
        signals=SqlSignalStore(engine),
    )
    api_campaigns = SqlCampaignRepository(engine)
    api_services = replace(services, uow=api_uow, campaigns=api_campaigns)
    return Container(settings, engine, redis, dispatcher, registry, shops, services,
                     api_services, rule_set, uow,
                     recalls=recalls, outbox=OutboxStore(engine),
                     reads=CaseReads(engine, stale_after=settings.stale_after_seconds,
                                     max_dispatches=settings.max_dispatches),
                     operators=SqlOperatorDirectory(engine), campaigns=api_campaigns)
