"""Find connectors through the `refundbridge.connectors` entry point group.

The built-ins register the same way a third party's package does, so nothing here names a
provider. Entry points are loaded when a shop first asks for one, so a broken plugin that no
shop uses cannot stop the service. A class is accepted only if it declares its name, roles and
capabilities, has the methods each capability needs, and can fill each role it claims.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from refundbridge.core.errors import ConfigError
from refundbridge.core.ports import CAPABILITY_METHODS, ROLE_NEEDS, Capability, Role

GROUP = "refundbridge.connectors"


@dataclass(frozen=True, slots=True)
class ConnectorInfo:
    """One installed connector as `refundbridge connectors` shows it."""

    name: str
    source: str  # "module:attr" of the entry point
    roles: frozenset[Role]
    capabilities: frozenset[Capability]
    error: str | None = None  # why it could not be loaded or was refused


class ConnectorRegistry:
    def __init__(self, classes: Mapping[str, type[Any]] | None = None,
                 entries: Iterable[EntryPoint] = ()) -> None:
        self._classes: dict[str, type[Any]] = dict(classes or {})
        self._entries: dict[str, EntryPoint] = {e.name: e for e in entries}

    @classmethod
    def discover(cls, extra: Iterable[EntryPoint] = ()) -> ConnectorRegistry:
        return cls(entries=[*entry_points(group=GROUP), *extra])

    def names(self) -> list[str]:
        return sorted({*self._classes, *self._entries})

    def load(self, name: str) -> type[Any]:
        """The connector class registered as `name`; raises `ConfigError` if it is missing,
        does not import, or does not keep the connector contract."""
        if name in self._classes:
            return self._classes[name]
        entry = self._entries.get(name)
        if entry is None:
            raise ConfigError(f"connector {name}", "not installed (installed: "
                                                   f"{', '.join(self.names()) or 'none'})")
        try:
            connector: type[Any] = entry.load()
        except Exception as exc:  # any import failure of a plugin is a configuration problem
            raise ConfigError(f"entry point {name}",
                              f"{entry.value} does not load: {type(exc).__name__}: {exc}"
                              ) from exc
        check_connector_class(name, connector)
        self._classes[name] = connector
        return connector

    def get(self, name: str, role: Role, key: str) -> type[Any]:
        if name not in self.names():
            known = ", ".join(self.names()) or "none"
            raise ConfigError(key, f"no connector named '{name}' is installed (installed: "
                                   f"{known})")
        connector = self.load(name)
        if role not in connector.roles:
            raise ConfigError(key, f"connector '{name}' cannot act as {role.value}; its roles: "
                                   f"{', '.join(sorted(r.value for r in connector.roles))}")
        return connector

    def describe(self) -> list[ConnectorInfo]:
        """Every installed connector, loaded; one that fails says why instead of raising."""
        infos: list[ConnectorInfo] = []
        for name in self.names():
            source = self._entries[name].value if name in self._entries else "(built in)"
            try:
                connector = self.load(name)
            except ConfigError as exc:
                infos.append(ConnectorInfo(name, source, frozenset(), frozenset(), str(exc)))
                continue
            infos.append(ConnectorInfo(name, source, frozenset(connector.roles),
                                       frozenset(connector.capabilities)))
        return infos


def check_connector_class(entry_name: str, connector: Any) -> None:
    where = f"entry point {entry_name}"
    roles = getattr(connector, "roles", None)
    if not isinstance(getattr(connector, "name", None), str) or not roles:
        raise ConfigError(where, "a connector declares `name` and `roles`")
    if not hasattr(connector, "from_config"):
        raise ConfigError(where, "a connector has `from_config`")
    try:
        capabilities = frozenset(Capability(c) for c in getattr(connector, "capabilities", ()))
        role_set = frozenset(Role(r) for r in roles)
    except ValueError as exc:
        raise ConfigError(where, str(exc)) from exc
    for capability in capabilities:
        if capability.role not in role_set:
            raise ConfigError(where, f"capability {capability.value} needs the role "
                                     f"{capability.role.value}")
        for method in CAPABILITY_METHODS[capability]:
            if not callable(getattr(connector, method, None)):
                raise ConfigError(where, f"capability {capability.value} needs a method "
                                         f"`{method}`")
    for role in role_set:
        missing = ROLE_NEEDS[role] - capabilities
        if missing:
            raise ConfigError(where, f"role {role.value} needs the capabilities "
                                     f"{', '.join(sorted(c.value for c in missing))}")
        if role is Role.NOTIFIER and not capabilities & {Capability.SEND_EMAIL,
                                                         Capability.SEND_SMS}:
            raise ConfigError(where, "role notifier needs notifier.email or notifier.sms")
