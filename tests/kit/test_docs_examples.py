"""Every shop in docs/connectors.md builds with the connectors as they are: the examples
name real settings keys, valid values, and connectors that can fill their roles."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from refundbridge.bootstrap import build_shops
from refundbridge.config.settings import load_settings
from refundbridge.connectors.base import RetryPolicy
from refundbridge.connectors.registry import ConnectorRegistry
from refundbridge.core.errors import ConfigError
from refundbridge.core.ports import Role

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "connectors.md"
EXPECTED = {
    "maple": ("shopify", "shopify", "odoo", "smtp"),
    "kangjian": ("woocommerce", "alipay", "erpnext", "smtp"),
    "anxin": ("generic", "wechatpay", "odoo", "smtp"),
}


def example_shops() -> dict[str, Any]:
    shops: dict[str, Any] = {}
    for block in re.findall(r"```toml\n(.*?)```", GUIDE.read_text(encoding="utf-8"), re.S):
        shops.update(tomllib.loads(block).get("shops", {}))
    return shops


def with_real_keys(value: Any, private_pem: str, public_pem: str) -> Any:
    """The guide shows where a PEM goes; key files can't be placeholders, so put real ones."""
    if isinstance(value, dict):
        return {k: with_real_keys(v, private_pem, public_pem) for k, v in value.items()}
    if isinstance(value, str) and value.startswith("-----BEGIN PRIVATE KEY-----"):
        return private_pem
    if isinstance(value, str) and value.startswith("-----BEGIN PUBLIC KEY-----"):
        return public_pem
    return value


@pytest.fixture(scope="module")
def shops() -> dict[str, Any]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return with_real_keys(example_shops(), private_pem, public_pem)


def test_the_guide_has_the_three_setups(shops: dict[str, Any]) -> None:
    assert {shop: tuple(shops[shop][role] for role in ("storefront", "payment", "erp",
                                                        "notifier"))
            for shop in shops} == EXPECTED


@pytest.mark.parametrize("shop", sorted(EXPECTED))
def test_example_shop_builds(shops: dict[str, Any], shop: str) -> None:
    settings = load_settings(None, demo=True, database_url="sqlite://",
                             shops={shop: shops[shop]})

    built = build_shops(settings, ConnectorRegistry.discover(), RetryPolicy())[shop]

    names = tuple(built.connectors[role].name for role in (Role.STOREFRONT, Role.PAYMENT,
                                                           Role.ERP, Role.NOTIFIER))
    assert names == EXPECTED[shop]
    for connector in built.by_name.values():
        close = getattr(connector, "close", None)
        if callable(close):
            close()


@pytest.mark.parametrize("shop", sorted(EXPECTED))
def test_example_placeholders_are_refused_outside_demo_mode(shops: dict[str, Any],
                                                            shop: str) -> None:
    settings = load_settings(None, database_url="sqlite://", shops={shop: shops[shop]})

    with pytest.raises(ConfigError) as refused:
        build_shops(settings, ConnectorRegistry.discover(), RetryPolicy())

    assert refused.value.key.startswith(f"shops.{shop}.")
