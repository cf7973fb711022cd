"""The injury detector (core/injury.py) over a corpus of customer reasons, and the policy
keys that feed it and R12 (`injury_terms`, `open_box_resale`) as the settings load them."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from refundbridge.config.settings import load_settings
from refundbridge.core.errors import ConfigError
from refundbridge.core.injury import InjuryLevel, detect_injury, normalize
from refundbridge.core.policy import ShopPolicy

CORPUS = Path(__file__).resolve().parents[1] / "data" / "injury_corpus.tsv"


def _corpus() -> list[tuple[str, str, bool]]:
    with CORPUS.open(encoding="utf-8", newline="") as handle:
        rows = csv.DictReader((line for line in handle if not line.startswith("#")),
                              delimiter="\t", quoting=csv.QUOTE_NONE)
        return [(row["text"], row["language"], row["injury"] == "yes") for row in rows]


PHRASES = _corpus()


def test_the_corpus_is_large_and_balanced() -> None:
    languages = {language for _, language, _ in PHRASES}
    harmful = sum(1 for *_, injury in PHRASES if injury)
    assert len(PHRASES) >= 150
    assert languages == {"zh-CN", "en"}
    assert 0.4 <= harmful / len(PHRASES) <= 0.6
    for language in languages:
        assert sum(1 for _, lang, injury in PHRASES if lang == language and not injury) >= 30
        assert sum(1 for _, lang, injury in PHRASES if lang == language and injury) >= 30


@pytest.mark.parametrize(("text", "language", "injury"), PHRASES,
                         ids=[f"{i:03d}-{lang}" for i, (_, lang, _) in enumerate(PHRASES)])
def test_corpus(text: str, language: str, injury: bool) -> None:
    finding = detect_injury(text)
    assert finding.needs_person is injury, (text, finding)


@pytest.mark.parametrize(
    ("text", "level"),
    [
        # certain: the words alone say someone was hurt
        ("手指一直出血", InjuryLevel.LIKELY),
        ("用了以后过敏", InjuryLevel.LIKELY),
        ("she was admitted to the hospital", InjuryLevel.LIKELY),
        ("the pad burned him", InjuryLevel.LIKELY),
        # doubtful alone, certain next to a body part
        ("不小心扎到了", InjuryLevel.POSSIBLE),
        ("不小心扎到了手指", InjuryLevel.LIKELY),
        ("外壳很烫", InjuryLevel.POSSIBLE),
        ("烫到了手", InjuryLevel.LIKELY),
        ("my father died last week", InjuryLevel.POSSIBLE),
        ("it started smoking", InjuryLevel.POSSIBLE),
        # contextual: harm only next to a body part
        ("盒子破了", InjuryLevel.NONE),
        ("手指破了", InjuryLevel.LIKELY),
        ("the seal was cut", InjuryLevel.NONE),
        ("cut his finger", InjuryLevel.LIKELY),
        # the longest term wins: 损伤 is doubtful though 伤 is certain; 死亡 certain
        ("有损伤", InjuryLevel.POSSIBLE),
        ("死亡", InjuryLevel.LIKELY),
        # hypoglycaemia is read before 血糖 (a measurement) is blanked
        ("结果低血糖了", InjuryLevel.POSSIBLE),
    ],
)
def test_levels(text: str, level: InjuryLevel) -> None:
    assert detect_injury(text).level is level


@pytest.mark.parametrize(
    "text",
    ["血压计读数偏高", "血糖仪开不了机", "血氧仪数值乱跳", "采血笔弹簧坏了", "试纸不够用",
     "让人很伤心", "太麻烦了", "血压计死机了", "blood pressure cuff is too small",
     "blood glucose strips expired", "the blister pack was empty", "the battery died"],
)
def test_harmless_compounds_do_not_trigger(text: str) -> None:
    assert detect_injury(text).level is InjuryLevel.NONE


def test_a_harmless_compound_does_not_hide_an_injury_beside_it() -> None:
    # 血压计 is blanked, the bleeding it caused is not.
    finding = detect_injury("血压计袖带把胳膊夹出血了")
    assert finding.level is InjuryLevel.LIKELY
    assert "血" in finding.terms
    # A device part named next to damage is harmless, unless someone was hurt by it.
    assert detect_injury("包装上有划伤").level is InjuryLevel.NONE
    assert detect_injury("被包装里的铁片划伤了").needs_person
    assert detect_injury("打开盒子时划伤了手").level is InjuryLevel.LIKELY


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("手上皮膚紅腫", "手上皮肤红肿"),  # traditional forms of the characters read
        ("流 血", "流血"),  # a space between two Chinese characters
        ("ＢＵＲＮ", "burn"),  # full-width, upper case
        ("bl\u200beed", "bleed"),  # a zero-width space
    ],
)
def test_text_is_normalised_before_it_is_read(text: str, expected: str) -> None:
    assert normalize(text) == expected
    assert detect_injury(text).needs_person


def test_english_stems_must_start_a_word() -> None:
    for text in ("the box went in the trash", "I studied the manual", "heartburn pills",
                 "the number is wrong", "the display is faint", "a stable reading",
                 "the handle came loose"):
        assert detect_injury(text).level is InjuryLevel.NONE, text
    assert detect_injury("被burn了").needs_person  # no space between 了 and a Latin word


def test_a_shops_own_terms_are_certain_and_cannot_be_blanked() -> None:
    text = "用了以后眼睛发干，视物模糊"
    assert detect_injury(text).level is InjuryLevel.NONE
    finding = detect_injury(text, ("视物模糊",))
    assert (finding.level, finding.terms) == (InjuryLevel.LIKELY, ("视物模糊",))
    # A shop term is read before the harmless compounds are blanked out.
    assert detect_injury("血压计爆表", ("血压计爆表",)).level is InjuryLevel.LIKELY
    # English shop terms start a word, like the built-in stems.
    assert detect_injury("my eyes went blurry", ("blurr",)).needs_person
    assert not detect_injury("the screen is unblurred", ("blurr",)).needs_person


def test_empty_and_blank_text_is_no_injury() -> None:
    assert detect_injury("").level is InjuryLevel.NONE
    assert detect_injury("   ", ("  ",)).level is InjuryLevel.NONE


# ------------------------------------------------------------------ the policy keys

TOML = """
operator_tokens = ["op_7f3a9c1e5b2d4f60"]

[shops.acme]
payment = "stripe"
erp = "erpnext"
notifier = "smtp"

[shops.acme.policy]
{policy}

[shops.acme.policy.skus.BP-MONITOR-01]
{sku}

[shops.acme.stripe]
api_key = "sk_live_from_toml"
webhook_secret = "whsec_from_toml"
"""


def _load(tmp_path: Path, policy: str = "", sku: str = "") -> ShopPolicy:
    path = tmp_path / "refundbridge.toml"
    path.write_text(TOML.format(policy=policy, sku=sku), encoding="utf-8")
    return load_settings(path).shops["acme"].policy.to_policy()


def test_policy_keys_default_to_no_open_box_resale_and_no_extra_terms(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REFUNDBRIDGE_CONFIG", raising=False)
    policy = _load(tmp_path)
    assert policy.open_box_resale is False
    assert policy.injury_terms == ()
    assert policy.open_box_resale_for("BP-MONITOR-01") is False


def test_policy_keys_load_per_shop_and_per_sku(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REFUNDBRIDGE_CONFIG", raising=False)
    policy = _load(tmp_path, 'open_box_resale = true\ninjury_terms = [" 视物模糊 ", "blurr"]',
                   "open_box_resale = false")
    assert policy.injury_terms == ("视物模糊", "blurr")
    assert policy.open_box_resale_for("BP-MONITOR-01") is False
    assert policy.open_box_resale_for("OTHER") is True


@pytest.mark.parametrize(
    ("policy", "key"),
    [('injury_terms = [""]', "shops.acme.policy.injury_terms"),
     ('injury_terms = ["   "]', "shops.acme.policy.injury_terms"),
     (f'injury_terms = ["{"x" * 65}"]', "shops.acme.policy.injury_terms"),
     ('injury_terms = "受伤"', "shops.acme.policy.injury_terms"),
     ('open_box_resale = "maybe"', "shops.acme.policy.open_box_resale")],
    ids=["empty", "blank", "too-long", "not-a-list", "not-a-bool"],
)
def test_bad_policy_keys_are_refused_naming_the_key(tmp_path: Path, policy: str, key: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REFUNDBRIDGE_CONFIG", raising=False)
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, policy)
    assert caught.value.key.startswith(key)
