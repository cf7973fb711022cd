"""How the built-in connectors are laid out: each reads its settings one way (its own typed
settings class, as `self.settings`), no module is too long to take in, and what nothing
calls is gone."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any, get_type_hints

import pytest

from refundbridge.connectors.alipay import AlipayConnector
from refundbridge.connectors.aliyun_sms import AliyunSmsConnector
from refundbridge.connectors.base import ConnectorBase, ConnectorContext, ConnectorSettings
from refundbridge.connectors.erpnext import ERPNextConnector
from refundbridge.connectors.generic.webhooks import GenericStorefrontConnector
from refundbridge.connectors.odoo import OdooConnector
from refundbridge.connectors.sandbox import (
    SandboxErpConnector,
    SandboxNotifier,
    SandboxPaymentConnector,
)
from refundbridge.connectors.shopify import ShopifyConnector
from refundbridge.connectors.smtp import SmtpNotifier
from refundbridge.connectors.stripe import StripeConnector
from refundbridge.connectors.tencent_sms import TencentSmsConnector
from refundbridge.connectors.twilio import TwilioConnector
from refundbridge.connectors.wechatpay import WeChatPayConnector
from refundbridge.connectors.woocommerce import WooCommerceConnector

CONNECTORS = Path(__file__).resolve().parents[2] / "connectors"
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60

BUILT_IN: tuple[type[Any], ...] = (
    GenericStorefrontConnector, StripeConnector, AlipayConnector, WeChatPayConnector,
    ShopifyConnector, WooCommerceConnector, ERPNextConnector, OdooConnector, SmtpNotifier,
    SandboxPaymentConnector, SandboxErpConnector, SandboxNotifier,
    TwilioConnector, AliyunSmsConnector, TencentSmsConnector,
)


def _sources() -> list[Path]:
    return sorted(CONNECTORS.rglob("*.py"))


@pytest.mark.parametrize("connector", BUILT_IN, ids=lambda c: c.name)
def test_a_connector_declares_its_own_settings_class_and_reads_it_typed(
        connector: type[ConnectorBase]) -> None:
    settings_class = connector.Settings
    assert issubclass(settings_class, ConnectorSettings)
    assert settings_class is not ConnectorSettings
    # `self.settings` is typed as that class, so mypy checks every read of a setting.
    assert get_type_hints(connector)["settings"] is settings_class


def test_a_built_connector_holds_its_settings_as_settings_and_nowhere_else() -> None:
    built = StripeConnector.from_config(
        {"api_key": "sk_test_4eC39HqLyjWDarjtT1zdp7dc", "webhook_secret": "whsec_5kd8c1e2f3a4b5"},
        ConnectorContext(shop_id="acme"))
    assert isinstance(built.settings, StripeConnector.Settings)
    assert not hasattr(built, "config")


def test_no_connector_keeps_a_config_attribute_or_checks_the_type_of_its_settings() -> None:
    offenders = [f"{path.relative_to(CONNECTORS)}:{text[:match.start()].count(chr(10)) + 1}"
                 for path in _sources()
                 for text in [path.read_text(encoding="utf-8")]
                 for match in re.finditer(r"self\.config\b|isinstance\(settings\b", text)]
    assert offenders == []


def test_what_nothing_calls_is_gone() -> None:
    assert not hasattr(ConnectorBase, "supports")


def _docstring_says_why_it_is_long(tree: ast.Module) -> bool:
    return f"{MAX_MODULE_LINES} lines" in (ast.get_docstring(tree) or "")


def test_no_connector_module_is_over_500_lines_without_saying_why() -> None:
    long = [f"{path.relative_to(CONNECTORS)}: {lines} lines"
            for path in _sources()
            for text in [path.read_text(encoding="utf-8")]
            if (lines := text.count("\n")) > MAX_MODULE_LINES
            and not _docstring_says_why_it_is_long(ast.parse(text))]
    assert long == []


def test_no_connector_function_is_over_60_lines() -> None:
    long = [f"{path.relative_to(CONNECTORS)}:{node.lineno} {node.name}"
            for path in _sources()
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and (node.end_lineno or node.lineno) - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert long == []
