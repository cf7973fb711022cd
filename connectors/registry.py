"""Find connectors through the `refundbridge.connectors` entry point group.

The built-ins register the same way a third party's package does, so nothing here names a
provider. A class is accepted only if it declares its name and roles and has the methods its
roles need.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from core.errors import ConfigError
from core.ports import Role

GROUP = "refundbridge.connectors"

REQUIRED_METHODS: dict[Role, tuple[str, ...]] = {
    Role.STOREFRONT: ("parse_webhook",),
    Role.PAYMENT: ("issue_refund", "find_refund", "refund_status"),
    Role.ERP: ("book_return",),
    Role.NOTIFIER: ("send",),
}


class ConnectorRegistry:
    def __init__(self, classes: dict[str, type[Any]]) -> None:
        self._classes = classes

    @classmethod
    def discover(cls, extra: Iterable[EntryPoint] = ()) -> ConnectorRegistry:
        classes: dict[str, type[Any]] = {}
        for entry in [*entry_points(group=GROUP), *extra]:
            connector = entry.load()
            check_connector_class(entry.name, connector)
            classes[entry.name] = connector
        return cls(classes)

    def get(self, name: str, role: Role, key: str) -> type[Any]:
        connector = self._classes.get(name)
        if connector is None:
            known = ", ".join(sorted(self._classes)) or "none"
            raise ConfigError(key, f"no connector named '{name}' is installed (installed: "
                                   f"{known})")
        if role not in connector.roles:
            raise ConfigError(key, f"connector '{name}' cannot act as {role.value}; its roles: "
                                   f"{', '.join(sorted(r.value for r in connector.roles))}")
        return connector



def check_connector_class(entry_name: str, connector: Any) -> None:
    roles = getattr(connector, "roles", None)
    if not isinstance(getattr(connector, "name", None), str) or not roles:
        raise ConfigError(f"entry point {entry_name}", "a connector declares `name` and `roles`")
    if not hasattr(connector, "from_config"):
        raise ConfigError(f"entry point {entry_name}", "a connector has `from_config`")
    for role in roles:
        for method in REQUIRED_METHODS[Role(role)]:
            if not callable(getattr(connector, method, None)):
                raise ConfigError(f"entry point {entry_name}",
                                  f"role {role} needs a method `{method}`")
