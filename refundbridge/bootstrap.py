"""The composition root: everything is built here, from settings, and nowhere else."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import httpx
from redis import Redis
from sqlalchemy import Engine

from config.settings import Settings
from connectors.base import ConnectorContext, RetryPolicy
from connectors.registry import ConnectorRegistry
from core.compliance import MedicalDeviceRuleSet
from core.errors import ConfigError, NotFound
from core.ports import Capability, Role
from core.recalls import RecallRegister
from core.rules import RuleSet, ShopPolicy
from core.services import Services, ShopGateways
from store.db import make_engine
from store.recalls import SqlRecallRegister
from store.uow import Dispatch, SqlUnitOfWork
from workers.queue import RqDispatcher


@dataclass
class ShopRuntime:
    shop_id: str
    policy: ShopPolicy
    connectors: dict[Role, Any]
    gateways: ShopGateways
    by_name: dict[str, Any] = field(default_factory=dict)


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

    def shop(self, shop_id: str) -> ShopRuntime:
        try:
            return self.shops[shop_id]
        except KeyError:
            raise NotFound(f"no shop '{shop_id}'") from None

    def close(self) -> None:
        self.engine.dispose()
        for shop in self.shops.values():
            for connector in shop.by_name.values():
                close = getattr(connector, "close", None)
                if callable(close):
                    close()


def make_redis(url: str | None) -> Redis:
    if url:
        return Redis.from_url(url)
    import fakeredis

    # Embedded mode: one in-process server shared by the API and the in-process worker.
    return fakeredis.FakeRedis(server=fakeredis.FakeServer())


def build_shops(settings: Settings, registry: ConnectorRegistry, retry: RetryPolicy,
                transport: httpx.BaseTransport | None = None) -> dict[str, ShopRuntime]:
    shops: dict[str, ShopRuntime] = {}
    for shop_id, shop in settings.shops.items():
        ctx = ConnectorContext(shop_id=shop_id, demo=settings.demo, retry=retry,
                               transport=transport, timeout=settings.http_timeout_seconds)
        by_name: dict[str, Any] = {}
        by_role: dict[Role, Any] = {}
        for role_key, name in shop.connectors_by_role().items():
            role = Role(role_key)
            cls = registry.get(name, role, f"shops.{shop_id}.{role_key}")
            if name not in by_name:
                by_name[name] = cls.from_config(shop.connector_config(name), ctx)
            by_role[role] = by_name[name]
        erp, storefront = by_role[Role.ERP], by_role[Role.STOREFRONT]
        writes_back = Capability.WRITE_BACK in storefront.capabilities
        gateways = ShopGateways(
            by_role[Role.PAYMENT], erp, by_role[Role.NOTIFIER],
            shipments=erp if Capability.SHIPPED_UNITS in erp.capabilities else None,
            storefront=storefront if writes_back else None,
            storefront_name=storefront.name if writes_back else None,
        )
        shops[shop_id] = ShopRuntime(shop_id, shop.policy.to_policy(), by_role, gateways,
                                     by_name)
    return shops


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

    def shop(shop_id: str) -> ShopRuntime:
        try:
            return shops[shop_id]
        except KeyError:
            raise NotFound(f"no shop '{shop_id}'") from None

    services = Services(
        uow=uow,
        policy=lambda shop_id: shop(shop_id).policy,
        gateways=lambda shop_id: shop(shop_id).gateways,
        rules=lambda shop_id: rule_set,
        clock=clock,
    )
    return Container(settings, engine, redis, dispatcher, registry, shops, services,
                     replace(services, uow=api_uow), rule_set, uow,
                     recalls=recalls)
