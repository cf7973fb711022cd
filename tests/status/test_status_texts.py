"""Every text of the status page has its Chinese, and the settings behind the links are
checked at start-up like the other secrets."""

from __future__ import annotations

import re

import pytest

from refundbridge.api.status import view
from refundbridge.api.status.web import HERE, catalog, page_locale
from refundbridge.bootstrap import status_links
from refundbridge.config.settings import load_settings, placeholder_tokens

LITERAL = re.compile(r"""\b_\(\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')""")
ERROR = re.compile(r'error="([^"]+)"')


def test_every_text_of_the_pages_has_a_chinese_version() -> None:
    texts: set[str] = set()
    for path in (HERE / "templates").glob("*.html"):
        texts |= {a or b for a, b in LITERAL.findall(path.read_text("utf-8"))}
    texts |= set(ERROR.findall((HERE / "pages.py").read_text("utf-8")))
    texts |= {*view.PAID_WITH.values(), view.PAID_WITH_DEFAULT, *view.MESSAGE_LABELS.values(),
              *view.DELIVERY_LABELS.values(), *view.STEP_LABELS, "Message"}
    missing = sorted(t for t in texts if t not in catalog())
    assert not missing, "no zh-CN text for:\n" + "\n".join(missing)
    placeholders = [t for t in texts if set(re.findall(r"\{(\w+)\}", t)) != set(
        re.findall(r"\{(\w+)\}", catalog()[t]))]
    assert not placeholders


@pytest.mark.parametrize(("tag", "locale"), [("zh-CN", "zh-CN"), ("zh_TW", "zh-CN"),
                                             ("zh", "zh-CN"), ("en-GB", "en"), ("de", "en"),
                                             ("", "en"), (None, "en")])
def test_a_customers_locale_picks_one_of_the_two_languages(tag: str | None,
                                                           locale: str) -> None:
    assert page_locale(tag) == locale


def test_the_link_key_is_checked_like_the_other_secrets() -> None:
    shops = {"acme": {"payment": "sandbox_payment", "erp": "sandbox_erp",
                      "notifier": "sandbox_notifier"}}
    short = load_settings(None, check_secrets=False, shops=shops,
                          status_link_secret="changeme-status-link")
    assert [p.key for p in placeholder_tokens(short)] == ["status_link_secret"]
    fine = load_settings(None, shops=shops, status_link_secret="s" * 8 + "Z7q" * 10)
    assert placeholder_tokens(fine) == []
    # Unset: no links at all outside demo mode, a random key in demo mode.
    assert status_links(load_settings(None, shops=shops)) is None
    demo = load_settings(None, shops=shops, demo=True)
    one, two = status_links(demo), status_links(demo)
    assert one is not None and two is not None
    token = one.token_for("rc_1", "acme")
    assert one.read(token, lambda _: 90) == "rc_1"
    with pytest.raises(Exception, match="public_base_url"):
        load_settings(None, shops=shops, public_base_url="javascript:alert(1)")
