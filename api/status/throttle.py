"""How often the look-up form may be sent: per address and per order (in Redis).

Every look-up counts, found or not (counting only the ones that match would tell who tries
that an order exists). Either count at its limit refuses further look-ups, without looking,
until its window has passed.
"""

from __future__ import annotations

import hashlib

from redis import Redis

PER_ADDRESS = 10  # look-ups from one address …
ADDRESS_WINDOW = 15 * 60  # … per 15 minutes
PER_ORDER = 3  # look-ups of one order (each may send an email) …
ORDER_WINDOW = 60 * 60  # … per hour


class LookupThrottle:
    def __init__(self, redis: Redis, *, per_address: int = PER_ADDRESS,
                 per_order: int = PER_ORDER) -> None:
        self._redis = redis
        self._limits = {"address": (per_address, ADDRESS_WINDOW),
                        "order": (per_order, ORDER_WINDOW)}

    @staticmethod
    def _key(kind: str, value: str) -> str:
        digest = hashlib.sha256(value.encode()).hexdigest()
        return f"refundbridge:status-lookup:{kind}:{digest}"

    def _keys(self, address: str, shop_id: str, order_id: str) -> list[tuple[str, str]]:
        return [("address", self._key("address", address)),
                ("order", self._key("order", f"{shop_id}\n{order_id.strip().casefold()}"))]

    def try_lookup(self, address: str, shop_id: str, order_id: str) -> bool:
        """Count one look-up; False (and nothing counted) if a limit is reached already."""
        keys = self._keys(address, shop_id, order_id)
        for kind, key in keys:
            if int(self._redis.get(key) or 0) >= self._limits[kind][0]:
                return False
        for kind, key in keys:
            with self._redis.pipeline() as pipe:
                pipe.incr(key)
                pipe.expire(key, self._limits[kind][1], nx=True)
                pipe.execute()
        return True


class FormThrottle:
    """One count per sender of a form (the recall answer): `limit` sends per `window`
    seconds, refused (and not counted) beyond."""

    def __init__(self, redis: Redis, name: str, limit: int, window: int) -> None:
        self._redis = redis
        self._name = name
        self._limit = limit
        self._window = window

    def try_count(self, value: str) -> bool:
        digest = hashlib.sha256(value.encode()).hexdigest()
        key = f"refundbridge:status-{self._name}:{digest}"
        if int(self._redis.get(key) or 0) >= self._limit:
            return False
        with self._redis.pipeline() as pipe:
            pipe.incr(key)
            pipe.expire(key, self._window, nx=True)
            pipe.execute()
        return True
