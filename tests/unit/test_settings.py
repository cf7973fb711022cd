"""Settings: TOML file, environment overrides, validation naming the key, placeholder secrets."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import ClassVar

import pytest
from pydantic import SecretStr

from refundbridge.bootstrap import build_shops, check_settings
from refundbridge.config.settings import load_settings
from refundbridge.connectors.base import (
    ConfigProblems,
    ConnectorBase,
    ConnectorContext,
    ConnectorSettings,
    RetryPolicy,
    is_placeholder,
)
from refundbridge.connectors.generic.webhooks import GenericSettings, GenericStorefrontConnector
from refundbridge.connectors.registry import ConnectorRegistry
from refundbridge.core.errors import ConfigError
from refundbridge.core.ports import Role

REAL_TOKEN = "op_7f3a9c1e5b2d4f60"
EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "example.toml"

BASE_TOML = f"""
operator_tokens = ["{REAL_TOKEN}"]
queue_name = "from-toml"

[shops.acme]
name = "ACME Medical"
payment = "stripe"
erp = "erpnext"
notifier = "smtp"

[shops.acme.policy]
refund_timing = "on_receipt"
auto_approve_limits = {{ CNY = "500.00", USD = "80.00" }}

[shops.acme.stripe]
api_key = "sk_live_from_toml"
webhook_secret = "whsec_from_toml"
"""


# Settings come from the environment too: none of the caller's may leak in.
pytestmark = pytest.mark.usefixtures("clean_environment")


def _write(tmp_path: Path, text: str = BASE_TOML) -> Path:
    path = tmp_path / "refundbridge.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_load_settings_reads_the_toml_file(tmp_path: Path) -> None:
    settings = load_settings(_write(tmp_path))
    assert settings.queue_name == "from-toml"
    assert [t.get_secret_value() for t in settings.operator_tokens] == [REAL_TOKEN]
    shop = settings.shops["acme"]
    assert shop.name == "ACME Medical"
    assert shop.connectors_by_role() == {"storefront": "generic", "payment": "stripe",
                                         "erp": "erpnext", "notifier": "smtp"}
    assert shop.policy.auto_approve_limits == {"CNY": Decimal("500.00"),
                                               "USD": Decimal("80.00")}
    assert shop.connector_config("stripe") == {"api_key": "sk_live_from_toml",
                                               "webhook_secret": "whsec_from_toml"}
    assert shop.connector_config("missing") == {}


def test_the_config_path_can_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REFUNDBRIDGE_CONFIG", str(_write(tmp_path)))
    assert load_settings().queue_name == "from-toml"


def test_policy_becomes_a_shop_policy(tmp_path: Path) -> None:
    policy = load_settings(_write(tmp_path)).shops["acme"].policy.to_policy()
    assert policy.refund_timing == "on_receipt"
    assert policy.auto_approve_limits["USD"] == Decimal("80.00")


def test_environment_overrides_top_level_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REFUNDBRIDGE_QUEUE_NAME", "from-env")
    monkeypatch.setenv("REFUNDBRIDGE_RETRY_ATTEMPTS", "2")
    settings = load_settings(_write(tmp_path))
    assert settings.queue_name == "from-env"
    assert settings.retry_attempts == 2


def test_environment_overrides_nested_keys_and_keeps_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REFUNDBRIDGE_SHOPS__ACME__POLICY__REFUND_TIMING", "on_approval")
    monkeypatch.setenv("REFUNDBRIDGE_SHOPS__ACME__STRIPE__API_KEY", "sk_live_from_env")
    shop = load_settings(_write(tmp_path)).shops["acme"]
    assert shop.policy.refund_timing == "on_approval"
    assert shop.connector_config("stripe") == {"api_key": "sk_live_from_env",
                                               "webhook_secret": "whsec_from_toml"}
    assert shop.payment == "stripe"
    assert shop.policy.auto_approve_limits["CNY"] == Decimal("500.00")


def test_an_invalid_environment_value_names_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REFUNDBRIDGE_SHOPS__ACME__POLICY__REFUND_TIMING", "someday")
    with pytest.raises(ConfigError) as caught:
        load_settings(_write(tmp_path))
    assert caught.value.key == "shops.acme.policy.refund_timing"


@pytest.mark.parametrize(
    ("original", "replacement", "key"),
    [
        ('CNY = "500.00"', 'CNY = "-0.01"', "shops.acme.policy.auto_approve_limits"),
        ('CNY = "500.00"', 'XXY = "500.00"', "shops.acme.policy.auto_approve_limits"),
        ('CNY = "500.00"', 'CNY = "lots"', "shops.acme.policy.auto_approve_limits.CNY"),
        ('refund_timing = "on_receipt"', 'refund_timing = "later"',
         "shops.acme.policy.refund_timing"),
        ('refund_timing = "on_receipt"', 'refund_timing = "on_receipt"\nsurprise = 1',
         "shops.acme.policy.surprise"),
        ('payment = "stripe"\n', "", "shops.acme.payment"),
        ('queue_name = "from-toml"', 'queue_nam = "typo"', "queue_nam"),
    ],
    ids=["negative-limit", "bad-currency", "non-decimal-limit", "bad-refund-timing",
         "unknown-policy-key", "missing-role", "unknown-top-level-key"],
)
def test_invalid_settings_raise_config_error_naming_the_key(
    tmp_path: Path, original: str, replacement: str, key: str
) -> None:
    assert original in BASE_TOML
    with pytest.raises(ConfigError) as caught:
        load_settings(_write(tmp_path, BASE_TOML.replace(original, replacement)))
    assert caught.value.key == key


def test_a_missing_file_names_where_its_path_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as given:
        load_settings(missing)
    assert given.value.key == "config_path"
    with pytest.raises(ConfigError) as typed:
        load_settings(missing, config_origin="--config")
    assert typed.value.key == "--config"
    assert str(missing) in str(typed.value)
    monkeypatch.setenv("REFUNDBRIDGE_CONFIG", str(missing))
    with pytest.raises(ConfigError) as from_environment:
        load_settings()
    assert from_environment.value.key == "REFUNDBRIDGE_CONFIG"


def test_a_directory_is_not_a_settings_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path, config_origin="--config")
    assert caught.value.key == "--config"
    assert "directory" in str(caught.value)


def test_every_invalid_key_is_named_at_once(tmp_path: Path) -> None:
    text = (BASE_TOML.replace('refund_timing = "on_receipt"', 'refund_timing = "later"')
            .replace('queue_name = "from-toml"', 'queue_name = "from-toml"\nretry_attempts = "x"'))
    with pytest.raises(ConfigProblems) as caught:
        load_settings(_write(tmp_path, text))
    assert {p.key for p in caught.value.problems} == {"shops.acme.policy.refund_timing",
                                                      "retry_attempts"}
    assert "shops.acme.policy.refund_timing" in str(caught.value)
    assert "retry_attempts" in str(caught.value)


def test_every_placeholder_token_is_named_at_once(tmp_path: Path) -> None:
    tokens = 'operator_tokens = ["changeme", "op_example_token_12", "op_7f3a9c1e5b2d4f61"]'
    text = BASE_TOML.replace(f'operator_tokens = ["{REAL_TOKEN}"]', tokens)
    with pytest.raises(ConfigProblems) as caught:
        load_settings(_write(tmp_path, text))
    assert [p.key for p in caught.value.problems] == ["operator_tokens.0", "operator_tokens.1"]


@pytest.mark.parametrize("url", ["mysql://rb:pw@127.0.0.1/rb", "mongodb://127.0.0.1/rb",
                                 "127.0.0.1:5432/refundbridge", "postgresql//oops", ""])
def test_a_database_url_we_cannot_run_on_is_refused_naming_the_key(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(None, database_url=url)
    assert caught.value.key == "database_url"
    assert "pw" not in str(caught.value)


@pytest.mark.parametrize("url", ["postgresql://rb@127.0.0.1:5432/rb", "postgres://rb@db/rb",
                                 "postgresql+psycopg://rb:pw@db/rb", "sqlite:///rb.db",
                                 "sqlite://"])
def test_postgresql_and_sqlite_urls_are_accepted(url: str) -> None:
    assert load_settings(None, database_url=url).database_url == url


@pytest.mark.parametrize("url", ["http://127.0.0.1:6379/0", "127.0.0.1:6379", "redis//x"])
def test_a_redis_url_without_a_redis_scheme_is_refused_naming_the_key(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(None, redis_url=url)
    assert caught.value.key == "redis_url"


def test_example_toml_names_every_placeholder_in_one_go() -> None:
    """A newcomer who copies config/example.toml learns every secret to set from one run."""
    settings = load_settings(EXAMPLE, check_secrets=False)
    with pytest.raises(ConfigProblems) as caught:
        check_settings(settings)
    assert [p.key for p in caught.value.problems] == [
        "operator_tokens.0", "operator_tokens.1", "shops.acme.generic.secret",
        "shops.acme.stripe.api_key", "shops.acme.stripe.webhook_secret",
        "shops.acme.erpnext.api_key", "shops.acme.erpnext.api_secret",
        "shops.acme.smtp.password"]
    check_settings(load_settings(EXAMPLE, demo=True))  # demo mode takes them all


def test_every_shops_connector_problems_are_named_at_once() -> None:
    shop = {"payment": "sandbox_payment", "erp": "sandbox_erp", "notifier": "sandbox_notifier"}
    settings = load_settings(None, shops={
        "north": {**shop, "generic": {"secret": "changeme"}},
        "south": {**shop, "erp": "no_such_erp", "generic": {"secret": "gsec_51c0ffee9d2a",
                                                            "tolerance": 3}}})
    with pytest.raises(ConfigProblems) as caught:
        build_shops(settings, ConnectorRegistry.discover(), RetryPolicy())
    assert {p.key for p in caught.value.problems} == {
        "shops.north.generic.secret", "shops.south.erp", "shops.south.generic.tolerance"}


def test_invalid_toml_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_settings(_write(tmp_path, "shops = [unclosed"))


@pytest.mark.parametrize("token", ["changeme-changeme", "demo-operator-token", "short",
                                   "PLACEHOLDER_TOKEN_1234", "op_example_token_12"])
def test_placeholder_operator_token_is_refused_outside_demo(tmp_path: Path, token: str) -> None:
    path = _write(tmp_path, BASE_TOML.replace(REAL_TOKEN, token))
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert caught.value.key == "operator_tokens.0"
    settings = load_settings(path, demo=True)
    assert settings.demo
    assert settings.operator_tokens[0].get_secret_value() == token


def test_the_second_placeholder_token_is_named(tmp_path: Path) -> None:
    tokens = f'operator_tokens = ["{REAL_TOKEN}", "changeme"]'
    text = BASE_TOML.replace(f'operator_tokens = ["{REAL_TOKEN}"]', tokens)
    with pytest.raises(ConfigError) as caught:
        load_settings(_write(tmp_path, text))
    assert caught.value.key == "operator_tokens.1"


def test_demo_can_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REFUNDBRIDGE_DEMO", "true")
    path = _write(tmp_path, BASE_TOML.replace(REAL_TOKEN, "changeme"))
    assert load_settings(path).demo


@pytest.mark.parametrize(
    ("secret", "placeholder"),
    [
        (None, True),
        ("", True),
        ("elevenchars", True),
        ("twelve-chars", False),
        ("whsec_Q7r2Kx91mZ", False),
        ("sk_test_CHANGEME_123", True),
        ("my-sandbox-secret-1", True),
        ("TODO-fill-this-in", True),
        ("xxxxxxxxxxxxxxxx", True),
    ],
)
def test_is_placeholder(secret: str | None, placeholder: bool) -> None:
    assert is_placeholder(secret) is placeholder
    if secret is not None:
        assert is_placeholder(SecretStr(secret)) is placeholder


# ------------------------------------------------------------------ connector settings


class _TwoSecretSettings(ConnectorSettings):
    api_key: SecretStr
    webhook_secret: SecretStr
    base_url: str = "https://pay.invalid"


class _TwoSecretConnector(ConnectorBase):
    name: ClassVar[str] = "paybox"
    roles: ClassVar[frozenset[Role]] = frozenset({Role.PAYMENT})
    Settings = _TwoSecretSettings


def test_connector_settings_parse_real_secrets() -> None:
    settings = GenericStorefrontConnector.parse_settings(
        {"secret": "gsec_51c0ffee9d2a"}, ConnectorContext("acme"))
    assert isinstance(settings, GenericSettings)
    assert settings.secret.get_secret_value() == "gsec_51c0ffee9d2a"
    assert settings.tolerance_seconds == 300


def test_connector_placeholder_secret_is_refused_outside_demo_naming_the_field() -> None:
    with pytest.raises(ConfigError) as caught:
        GenericStorefrontConnector.parse_settings({"secret": "changeme"},
                                                  ConnectorContext("acme"))
    assert caught.value.key == "shops.acme.generic.secret"
    assert "changeme" not in str(caught.value)


def test_connector_placeholder_secret_is_accepted_in_demo() -> None:
    settings = GenericStorefrontConnector.parse_settings(
        {"secret": "changeme"}, ConnectorContext("acme", demo=True))
    assert isinstance(settings, GenericSettings)


def test_every_placeholder_secret_of_a_connector_is_named_at_once() -> None:
    raw = {"api_key": "sk_live_CHANGEME", "webhook_secret": "whsec_example"}
    with pytest.raises(ConfigProblems) as caught:
        _TwoSecretConnector.parse_settings(raw, ConnectorContext("clinic-7"))
    assert [p.key for p in caught.value.problems] == ["shops.clinic-7.paybox.api_key",
                                                      "shops.clinic-7.paybox.webhook_secret"]
    assert caught.value.key == "shops.clinic-7.paybox.api_key"
    assert "CHANGEME" not in str(caught.value) and "whsec_example" not in str(caught.value)


def test_the_offending_secret_of_several_is_named() -> None:
    raw = {"api_key": "sk_live_4eC39HqLyjWD", "webhook_secret": "whsec_example"}
    with pytest.raises(ConfigError) as caught:
        _TwoSecretConnector.parse_settings(raw, ConnectorContext("clinic-7"))
    assert caught.value.key == "shops.clinic-7.paybox.webhook_secret"


def test_a_plain_string_field_is_not_checked_as_a_secret() -> None:
    raw = {"api_key": "sk_live_4eC39HqLyjWD", "webhook_secret": "whsec_4eC39HqLyjWD",
           "base_url": "http://example"}
    settings = _TwoSecretConnector.parse_settings(raw, ConnectorContext("acme"))
    assert isinstance(settings, _TwoSecretSettings)


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({}, "shops.acme.generic.secret"),
        ({"secret": "gsec_51c0ffee9d2a", "surprise": 1}, "shops.acme.generic.surprise"),
        ({"secret": "gsec_51c0ffee9d2a", "tolerance_seconds": "soon"},
         "shops.acme.generic.tolerance_seconds"),
    ],
)
def test_invalid_connector_settings_name_the_key(raw: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        GenericStorefrontConnector.parse_settings(raw, ConnectorContext("acme"))
    assert caught.value.key == key


# ------------------------------------------------------------------ the compliance policy

POLICY_ANCHOR = 'refund_timing = "on_receipt"'


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ("no_reason_window_days = -1", "shops.acme.policy.no_reason_window_days"),
        ("near_expiry_days = \"soon\"", "shops.acme.policy.near_expiry_days"),
        ("frequent_refund_count = 0", "shops.acme.policy.frequent_refund_count"),
        ("jurisdiction = \"MARS\"", "shops.acme.policy.jurisdiction"),
        ("timezone = \"Asia/Atlantis\"", "shops.acme.policy.timezone"),
        ("refund_deadline_days = 30", "shops.acme.policy.refund_deadline_days"),
        ("auto_approve_reasons = [\"because\"]", "shops.acme.policy.auto_approve_reasons.0"),
        ("[shops.acme.policy.skus.DRESS-1]\nsterile = \"very\"",
         "shops.acme.policy.skus.DRESS-1.sterile"),
        ("[shops.acme.policy.skus.DRESS-1]\nsterilised = true",
         "shops.acme.policy.skus.DRESS-1.sterilised"),
        ("[shops.acme.policy.skus.DRESS-1]\ngtin = \"09506000134353\"",
         "shops.acme.policy.skus.DRESS-1.gtin"),
    ],
    ids=["negative-window", "non-number", "zero-count", "jurisdiction", "timezone",
         "deadline-past-penalty-line", "reason", "flag-type", "unknown-flag", "gtin-check-digit"],
)
def test_an_invalid_policy_is_refused_naming_the_key(tmp_path: Path, extra: str,
                                                     key: str) -> None:
    text = BASE_TOML.replace(POLICY_ANCHOR, f"{POLICY_ANCHOR}\n{extra}")
    if extra.startswith("["):  # a table goes after the policy's own keys
        text = BASE_TOML.replace("[shops.acme.stripe]", f"{extra}\n\n[shops.acme.stripe]")
    with pytest.raises(ConfigError) as caught:
        load_settings(_write(tmp_path, text))
    assert caught.value.key == key


def test_policy_thresholds_and_sku_flags_need_no_code_change(tmp_path: Path) -> None:
    text = BASE_TOML.replace(POLICY_ANCHOR, f"""{POLICY_ANCHOR}
no_reason_window_days = 14
near_expiry_days = 60
frequent_refund_count = 5
frequent_refund_days = 90
jurisdiction = "EU"
timezone = "Europe/Berlin"
""").replace("[shops.acme.stripe]", """[shops.acme.policy.skus.DRESS-1]
sterile = true
no_reason_excluded = true
gtin = "09506000134352"

[shops.acme.stripe]""")
    policy = load_settings(_write(tmp_path, text)).shops["acme"].policy.to_policy()
    assert (policy.no_reason_window_days, policy.near_expiry_days) == (14, 60)
    assert (policy.frequent_refund_count, policy.frequent_refund_days) == (5, 90)
    assert (policy.jurisdiction.value, policy.timezone) == ("EU", "Europe/Berlin")
    flags = policy.flags("DRESS-1")
    assert flags.sterile and flags.no_reason_excluded and flags.gtin == "09506000134352"
    assert not policy.flags("OTHER").sterile
