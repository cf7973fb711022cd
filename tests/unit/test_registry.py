"""The connector registry: entry points loaded lazily, broken ones reported without breaking
the others, and classes that break the connector contract refused, naming the entry point."""

from __future__ import annotations

import sys
import textwrap
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any, ClassVar

import pytest

from refundbridge.connectors.registry import GROUP, ConnectorRegistry, check_connector_class
from refundbridge.core.errors import ConfigError
from refundbridge.core.ports import Capability, Role

PLUGIN = textwrap.dedent('''
    class Plugin:
        name = "lazy_one"
        roles = frozenset({"erp"})
        capabilities = frozenset({"erp.book_return"})

        @classmethod
        def from_config(cls, raw, ctx):
            return cls()

        def book_return(self, booking):
            return "RET-1"
''')


def entry(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group=GROUP)


@pytest.fixture
def plugin_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A plugin module on sys.path that nobody has imported yet."""
    name = f"rb_registry_plugin_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    return name


class Base:
    """Just enough of a connector for the registry: the class is what is checked."""

    name: ClassVar[str] = "base"
    roles: ClassVar[frozenset[Role]] = frozenset()
    capabilities: ClassVar[frozenset[Capability]] = frozenset()

    @classmethod
    def from_config(cls, raw: Any, ctx: Any) -> Base:
        return cls()


class GoodPayment(Base):
    name = "good_payment"
    roles = frozenset({Role.PAYMENT})
    capabilities = frozenset({Capability.ISSUE_REFUND, Capability.REFUND_STATUS})

    def issue_refund(self, order: Any) -> Any: ...
    def find_refund(self, order: Any) -> Any: ...
    def refund_status(self, ref: str, order: Any) -> Any: ...


class NoName:
    roles = frozenset({Role.ERP})


class NoFromConfig:
    name = "no_from_config"
    roles = frozenset({Role.ERP})
    capabilities = frozenset({Capability.BOOK_RETURN})

    def book_return(self, booking: Any) -> str: ...


class MissingMethod(Base):
    name = "missing_method"
    roles = frozenset({Role.PAYMENT})
    capabilities = frozenset({Capability.ISSUE_REFUND, Capability.REFUND_STATUS})

    def issue_refund(self, order: Any) -> Any: ...  # and no find_refund
    def refund_status(self, ref: str, order: Any) -> Any: ...


class CapabilityOfAnotherRole(Base):
    name = "wrong_role"
    roles = frozenset({Role.ERP})
    capabilities = frozenset({Capability.BOOK_RETURN, Capability.ISSUE_REFUND})

    def book_return(self, booking: Any) -> str: ...
    def issue_refund(self, order: Any) -> Any: ...
    def find_refund(self, order: Any) -> Any: ...


class RoleWithoutItsNeeds(Base):
    name = "half_payment"
    roles = frozenset({Role.PAYMENT})
    capabilities = frozenset({Capability.ISSUE_REFUND})

    def issue_refund(self, order: Any) -> Any: ...
    def find_refund(self, order: Any) -> Any: ...


class SilentNotifier(Base):
    name = "silent"
    roles = frozenset({Role.NOTIFIER})


class UnknownCapability(Base):
    name = "unknown_capability"
    roles = frozenset({Role.ERP})
    capabilities = frozenset({"erp.teleport"})  # type: ignore[arg-type]


HERE = __name__


# ---------------------------------------------------------------- lazy loading


def test_entry_points_are_imported_only_when_asked_for(plugin_module: str) -> None:
    registry = ConnectorRegistry(entries=[entry("lazy_one", f"{plugin_module}:Plugin")])

    assert registry.names() == ["lazy_one"]
    assert plugin_module not in sys.modules

    cls = registry.get("lazy_one", Role.ERP, "shops.s1.erp")

    assert cls.name == "lazy_one"
    assert plugin_module in sys.modules


def test_a_loaded_class_is_kept(plugin_module: str) -> None:
    registry = ConnectorRegistry(entries=[entry("lazy_one", f"{plugin_module}:Plugin")])

    first = registry.load("lazy_one")
    del sys.modules[plugin_module]  # a second import would make a second class

    assert registry.load("lazy_one") is first


def test_getting_one_connector_does_not_import_the_others(plugin_module: str) -> None:
    registry = ConnectorRegistry(entries=[entry("lazy_one", f"{plugin_module}:Plugin"),
                                          entry("good", f"{HERE}:GoodPayment")])

    registry.get("good", Role.PAYMENT, "shops.s1.payment")

    assert plugin_module not in sys.modules


def test_discover_finds_the_built_ins_through_the_entry_point_group() -> None:
    registry = ConnectorRegistry.discover()

    assert {"generic", "stripe", "erpnext", "smtp", "sandbox_payment"} <= set(registry.names())
    assert registry.get("stripe", Role.PAYMENT, "shops.s1.payment").name == "stripe"


def test_discover_adds_extra_entry_points() -> None:
    registry = ConnectorRegistry.discover(extra=[entry("good", f"{HERE}:GoodPayment")])

    assert registry.get("good", Role.PAYMENT, "shops.s1.payment") is GoodPayment


# ---------------------------------------------------------------- broken entry points


@pytest.mark.parametrize(("value", "why"), [
    ("rb_no_such_module_anywhere:Thing", "ModuleNotFoundError"),
    (f"{HERE}:NoSuchClass", "AttributeError"),
])
def test_broken_entry_point_is_reported_and_the_others_still_work(value: str, why: str) -> None:
    registry = ConnectorRegistry(entries=[entry("broken", value),
                                          entry("good", f"{HERE}:GoodPayment")])

    infos = {info.name: info for info in registry.describe()}

    assert infos["broken"].error is not None
    assert "entry point broken" in infos["broken"].error and why in infos["broken"].error
    assert infos["broken"].source == value
    assert infos["good"].error is None
    assert infos["good"].roles == {Role.PAYMENT}
    assert infos["good"].capabilities == {Capability.ISSUE_REFUND, Capability.REFUND_STATUS}
    assert registry.get("good", Role.PAYMENT, "shops.s1.payment") is GoodPayment
    with pytest.raises(ConfigError) as info:
        registry.get("broken", Role.PAYMENT, "shops.s1.payment")
    assert info.value.key == "entry point broken"


def test_entry_point_that_raises_on_import_is_reported(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "rb_exploding_plugin.py").write_text("raise RuntimeError('no licence key')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "rb_exploding_plugin", raising=False)
    registry = ConnectorRegistry(entries=[entry("boom", "rb_exploding_plugin:Connector")])

    (info,) = registry.describe()

    assert info.error is not None and "RuntimeError: no licence key" in info.error


def test_unknown_connector_names_what_is_installed() -> None:
    registry = ConnectorRegistry(entries=[entry("good", f"{HERE}:GoodPayment")])

    with pytest.raises(ConfigError) as info:
        registry.get("stirpe", Role.PAYMENT, "shops.s1.payment")

    assert info.value.key == "shops.s1.payment"
    assert "stirpe" in str(info.value) and "good" in str(info.value)


def test_connector_asked_for_a_role_it_lacks_names_the_key() -> None:
    registry = ConnectorRegistry(entries=[entry("good", f"{HERE}:GoodPayment")])

    with pytest.raises(ConfigError) as info:
        registry.get("good", Role.ERP, "shops.s1.erp")

    assert info.value.key == "shops.s1.erp"
    assert "cannot act as erp" in str(info.value) and "payment" in str(info.value)


# ---------------------------------------------------------------- class checks


@pytest.mark.parametrize(("cls", "message"), [
    (NoName, "declares `name` and `roles`"),
    (SilentNotifier, "notifier needs notifier.email or notifier.sms"),
    (NoFromConfig, "has `from_config`"),
    (MissingMethod, "needs a method `find_refund`"),
    (CapabilityOfAnotherRole, "payment.issue_refund needs the role payment"),
    (RoleWithoutItsNeeds, "role payment needs the capabilities payment.refund_status"),
    (UnknownCapability, "'erp.teleport' is not a valid Capability"),
], ids=lambda v: v.__name__ if isinstance(v, type) else "")
def test_bad_classes_are_refused_naming_the_entry_point(cls: type[Any], message: str) -> None:
    registry = ConnectorRegistry(entries=[entry("acme_plugin", f"{HERE}:{cls.__name__}")])

    with pytest.raises(ConfigError) as info:
        registry.load("acme_plugin")

    assert info.value.key == "entry point acme_plugin"
    assert message in str(info.value)
    (described,) = registry.describe()
    assert described.error is not None and message in described.error


def test_a_good_class_passes() -> None:
    check_connector_class("good", GoodPayment)
