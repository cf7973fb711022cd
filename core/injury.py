"""Does a customer's free text say that someone was hurt? (compliance.md R14)

A missed adverse event is the worst error this product can make, so the detector is built to
generalise rather than to list phrases: Chinese is read by injury *morphemes* (伤, 痛, 疼, 血,
肿, 疹, 痒, 脓, 晕 …) that match inside any word, after a short list of harmless compounds
has been blanked out (血压计, 血糖仪, 伤心, 麻烦, 死机 …); English by stems that must start a
word (injur, bleed, allerg …). A shop's policy can add its own terms (`injury_terms`), which
count as certain; it cannot remove any.

Each term is one of three strengths:

- certain (`LIKELY`): the word alone says someone was harmed (出血, 过敏, 住院, "rash");
- doubtful (`POSSIBLE`): it may describe harm, or a device fault that could have harmed
  someone (扎到, 很烫, 冒烟, "died", "in hospital"): a person reads it;
- contextual: it is harm only next to a body part (手指破了, 皮肤发红, "cut my finger"), and
  nothing at all otherwise ("arrived cut open", 盒子破了).

A doubtful or contextual word next to a body part is certain. The result is the strongest
term found. The caller sends anything but `NONE` to a person: when in doubt, review.

Text is first normalised: NFKC (full-width letters and digits), case-folded, the traditional
forms of the injury characters mapped to simplified ones, and spaces between two Chinese
characters removed (流 血).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from functools import lru_cache

# ------------------------------------------------------------------ vocabulary


class InjuryLevel(IntEnum):
    NONE = 0
    POSSIBLE = 1  # a person decides whether someone was hurt
    LIKELY = 2  # the text says someone was hurt


# Traditional forms a customer may type, mapped to the simplified characters below.
_TRADITIONAL = str.maketrans(
    "傷腫燙過膿暈醫診紅瘡潰爛癢劃燒發膚頭臉腳擊電濕難護車搶嘔壓儀計煩機療",
    "伤肿烫过脓晕医诊红疮溃烂痒划烧发肤头脸脚击电湿难护车抢呕压仪计烦机疗")

# Compounds that contain an injury morpheme and are harmless: the devices these shops sell,
# their measurements, and everyday idioms. Blanked out before any term is looked for.
HARMLESS_ZH: tuple[str, ...] = (
    # the devices and what they measure
    "血压计", "血压仪", "血压表", "血压", "血糖仪", "血糖试纸", "血糖", "血氧仪", "血氧",
    "血脂", "血酮", "血尿酸", "血红蛋白", "血常规", "血型", "采血笔", "采血针", "采血器",
    "采血", "止血带", "试纸", "针头", "扎带",
    # idioms: sad, troublesome, annoying, a bargain, a crash
    "伤心", "伤感", "悲伤", "忧伤", "感伤", "伤脑筋", "伤神", "伤透", "心疼", "疼爱", "痛快",
    "痛心", "让人头疼", "令人头疼", "头疼的是", "不痛不痒", "麻烦", "芝麻", "麻将", "死机",
    "卡死", "死循环", "死活", "气死", "烦死", "累死", "笑死", "热死", "急死", "困死", "饿死",
    "崩溃", "炎热", "光晕", "晕染", "烫金", "烫发", "烫衣", "感染力", "泡沫", "气泡膜",
    "切割", "分割", "割开", "破费", "吐槽",
)
HARMLESS_EN: tuple[str, ...] = (
    r"blood[\s-]*(pressure|glucose|sugar|oxygen|test|sample|drop|ketone)s?",
    r"blister[\s-]*(pack|packaging|card|strip)s?", r"painless(ly)?", r"wound up",
    r"fatal error", r"pain in the (neck|butt|backside)", r"cut[\s-]?off (date|time|day)",
    r"cutoff\b", r"burn[\s-]in\b",
    # a glucose meter's own error message: the drop on the strip was too small
    r"(not )?enough blood (on|for) (the )?(strip|test|sample)",
    # a device that "died" stopped working
    r"(battery|batteries|device|unit|meter|monitor|screen|display|charger|motor|pump|app|"
    r"it|thing|machine|sensor|light) (has |had |just |completely |already )?(died|dies)\b",
)

# A device part, then (within a few characters) damage: a scratched screen, a dented box, a
# red indicator light. Not harmless when a body part follows or sits in between.
_DEVICE_PARTS = ("屏幕|显示屏|屏|外壳|机身|表面|外观|外包装|包装|盒子|纸盒|盒|箱子|箱|壳|"
                 "边框|镜片|镜面|探头|袖带|表盘|按键|按钮|贴膜|瓶身|瓶子|管子|指示灯|灯|图标|"
                 "数字|字")
_DEVICE_DAMAGE = ("划伤|刮伤|碰伤|损伤|压伤|磨伤|擦伤|划痕|划破|刮花|破损|破了|起泡|烧坏|"
                  "烫坏|发红|红了|变红|泛红|口子|开口|裂口")
_DEVICE_DAMAGE_RE = re.compile(
    rf"(?:{_DEVICE_PARTS})[^，。,.!！?？;；\s]{{0,8}}?(?:{_DEVICE_DAMAGE})")

# Certain: any of these says someone was harmed.
LIKELY_ZH: tuple[str, ...] = (
    "伤", "痛", "疼", "血", "肿", "疹", "痒", "脓", "疤", "淤", "瘀", "溃", "炎", "晕",
    "过敏", "感染", "灼", "昏迷", "昏倒", "昏厥", "昏过去", "休克", "骨折", "抽搐", "痉挛",
    "抽筋", "窒息", "呼吸困难", "喘不过气", "喘不上气", "呕吐", "麻木", "水泡", "水疱",
    "血泡", "破皮", "皮破", "乌青", "青紫", "红斑", "触电", "电击", "被电", "电到",
    "电了一下", "误吞", "吞下", "吞了", "误食", "住院", "急诊", "送医", "就医", "就诊",
    "抢救", "救护车", "包扎", "高烧", "死亡", "身亡", "去世", "过世", "病故", "致死",
    "死者", "猝死", "丧命", "脱皮", "失明", "失聪", "昏了",
)
# Doubtful: a person reads the case.
POSSIBLE_ZH: tuple[str, ...] = (
    "划伤", "刮伤", "碰伤", "损伤", "压伤", "磨伤", "擦伤", "扎到", "扎破", "扎进", "扎了",
    "扎手", "划破", "划到", "割破", "割到", "割手", "割", "夹到", "烫", "发麻", "起泡",
    "发红", "泛红", "红了", "红印", "红点", "红块", "一片红", "红一片", "冒烟", "起火",
    "着火", "爆炸", "炸了", "烧焦", "漏电", "火花", "过热", "想吐", "反胃", "恶心", "发烧",
    "疙瘩", "起包", "起了包", "起了小包", "起了个包", "鼓包", "砸到", "砸了", "磕到", "磕破",
    "撞到", "摔倒", "摔了", "出事", "出了事", "死", "去医院", "上医院", "进医院", "看医生",
    "医院看", "口子", "划了一道", "划了个", "心慌", "心悸", "胸闷", "焦味", "糊味",
)
# Harm only next to a body part.
CONTEXT_ZH: tuple[str, ...] = (
    "破了", "破", "烂", "发紫", "紫了", "发青", "青", "麻", "不舒服", "难受", "勒", "大包",
    "个包", "小包", "红红",
    "刺激", "撕", "夹", "断在", "断进", "卡在", "塞进", "脱", "看不清", "听不见", "听不清",
    "视力", "磕", "撞", "摔",
)
BODY_ZH = ("手指|指头|指尖|指甲|手掌|手背|手臂|手腕|手上|手心|双手|左手|右手|手|胳膊|臂|腕|"
           "腿|脚|膝盖|脸|眼睛|眼|嘴|唇|耳|额头|头部|头上|头皮|脖子|颈|背部|后背|腰|胸|肚子|"
           "腹|皮肤|皮|肉|身上|身体|身子|全身|喉咙|嗓子|舌|牙|鼻|心脏|心口|屁股|屁屁|臀")
# Words with a body-part character that name no body part: they give no context.
_NOT_BODY_ZH = ("手机|手册|手续|手动|二手|到手|手感|手柄|手环|手提|手工|手写|手表|手套|手电|"
                "动手|新手|上手|顺手|手把手|手法|手段|手头|拿手|联手|皮套|橡皮|皮带|皮筋|"
                "眼镜|肉眼|背面|背后|腰包|针头|舌头")

# English stems; each must start a word ("rash" is not in "trash").
LIKELY_EN: tuple[str, ...] = (
    r"injur", r"hurt", r"burn", r"bleed", r"bled\b", r"bruis", r"blister", r"rash",
    r"swell", r"swollen", r"infect", r"inflam", r"allerg", r"anaphyla", r"itch",
    r"numb(?!er)", r"dizz", r"faint(ed|ing)", r"pass(ed)? out", r"blacked out",
    r"unconscious", r"seizure", r"convuls", r"vomit", r"threw up", r"throw(ing)? up",
    r"pus\b", r"ulcer", r"scar(s|red|ring)?\b", r"wound", r"lacerat", r"gash", r"welt",
    r"hives\b", r"eczema", r"dermatitis", r"abrasion", r"stitches", r"sutur", r"pain(?!t)",
    r"ache\b", r"aching", r"harmed\b", r"death", r"fatal", r"passed away", r"deceased",
    r"electrocut", r"electric(al)? shock", r"got a shock", r"shocked (me|him|her|us|them|my)",
    r"chok(ed|ing) on", r"emergency room", r"er visit", r"(the|an|to|in) er\b", r"a&e\b",
    r"urgent care", r"ambulance", r"paramedic", r"icu\b", r"intensive care", r"hospitali[sz]",
    r"(nose|gum)bleed", r"black and blue", r"short(ness)? of breath",
    r"(stopped|trouble|difficulty|couldn't|could not|can't|cannot) breath",
    r"admitted (to|into)( the)? (hospital|er|icu|a&e)", r"suffocat", r"poison",
)
POSSIBLE_EN: tuple[str, ...] = (
    r"blood", r"sore\b", r"headache", r"died\b", r"dies\b", r"dying\b", r"killed\b",
    r"harm\b", r"(in|to|into) (the |a )?hospital\b(?!'s)", r"hospital (stay|visit|bed)",
    r"(saw|see|seen|visit(ed)?) (a|the|my|our) doctor", r"redness",
    r"tingl", r"nause", r"fever", r"swallow", r"chok", r"collapsed", r"inhal",
    r"smok(e|ed|ing)\b", r"caught fire", r"on fire", r"fire\b", r"spark", r"explod",
    r"overheat", r"melt", r"too hot", r"hot to (the )?touch",
)
CONTEXT_EN: tuple[str, ...] = (
    r"cut", r"scratch", r"irritat", r"sting", r"stung", r"pinch", r"puncture", r"red\b",
    r"raw\b", r"peel", r"snap", r"broke off", r"stuck in",
    r"twist", r"hit\b", r"fell\b", r"fall", r"slipp", r"trip(ped)?\b", r"stab(bed|bing|s)?\b",
    r"sliced", r"nick(ed)?\b", r"hot\b",
)
BODY_EN = (r"(fingers?|fingertips?|thumbs?|hands?|palms?|arms?|wrists?|skin|legs?|foot|feet|"
           r"toes?|face|eyes?|eyelids?|lips?|mouth|ears?|neck|chest|knees?|forehead|scalp|"
           r"nails?|shoulders?|elbows?|ankles?|tongue|gums?|cheeks?|nose|throat|body|flesh|"
           r"myself|himself|herself|yourself|themselves|"
           r"(my|his|her|their|our|your) (head|back|stomach|belly|heart))\b")

# Read on the text before the harmless compounds are blanked: 低血糖 (hypoglycaemia) is a
# harm although 血糖 alone is a measurement.
EARLY_POSSIBLE_ZH: tuple[str, ...] = ("低血糖",)

_CONTEXT_WINDOW_ZH = 16  # characters either side of a Chinese term, within its sentence
_CONTEXT_WINDOW_EN = 30  # characters either side of an English term


# ------------------------------------------------------------------ matching


@dataclass(frozen=True, slots=True)
class InjuryFinding:
    level: InjuryLevel
    terms: tuple[str, ...] = ()  # the words found, as they stand in the normalised text

    @property
    def needs_person(self) -> bool:
        return self.level is not InjuryLevel.NONE


NO_INJURY = InjuryFinding(InjuryLevel.NONE)

_BLANK = "_"


def _en(stem: str) -> str:
    # A lookbehind rather than \b: \b sees no boundary between a Chinese character and a
    # Latin letter ("被burn了").
    return rf"(?<![a-z]){stem}"


def _alternation(zh: Iterable[str], en: Iterable[str]) -> re.Pattern[str]:
    parts = sorted((re.escape(w) for w in zh), key=len, reverse=True) + [_en(s) for s in en]
    return re.compile("|".join(parts))


# Chinese terms of every strength in one alternation, longest first, so that at any place
# the longest term wins: 损伤 (doubtful) over 伤 (certain), 死亡 (certain) over 死.
_ZH_LEVEL: dict[str, InjuryLevel | None] = {
    **{w: None for w in CONTEXT_ZH}, **{w: InjuryLevel.POSSIBLE for w in POSSIBLE_ZH},
    **{w: InjuryLevel.LIKELY for w in LIKELY_ZH}}
_TERMS = re.compile(
    "(?P<zh>" + "|".join(sorted(map(re.escape, _ZH_LEVEL), key=len, reverse=True)) + ")"
    + "|(?P<likely>" + "|".join(map(_en, LIKELY_EN)) + ")"
    + "|(?P<possible>" + "|".join(map(_en, POSSIBLE_EN)) + ")"
    + "|(?P<context>" + "|".join(map(_en, CONTEXT_EN)) + ")")
_HARMLESS = _alternation(HARMLESS_ZH, HARMLESS_EN)
_EARLY = _alternation(EARLY_POSSIBLE_ZH, ())
_BODY = re.compile(rf"{BODY_ZH}|{_en(BODY_EN)}")
_NOT_BODY = re.compile(_NOT_BODY_ZH)
_WORD_REST = re.compile(r"[a-z'-]*")
_SENTENCE_END = re.compile(r"[。！？!?;；\n]|\.\s")
_CJK_SPACE = re.compile(r"(?<=[\u4e00-\u9fff])\s+(?=[\u4e00-\u9fff])")
_INVISIBLE = re.compile(r"[\u200b-\u200f\u2060\ufeff\u00ad]")


def normalize(text: str) -> str:
    folded = unicodedata.normalize("NFKC", text).casefold().translate(_TRADITIONAL)
    return _CJK_SPACE.sub("", _INVISIBLE.sub("", folded))


def _blank(text: str, pattern: re.Pattern[str]) -> str:
    """`text` with each match replaced by blanks of the same length, so that positions (and
    so distances to a body part) stay where they were and no new word forms across it."""
    return pattern.sub(lambda m: _BLANK * len(m.group()), text)


@lru_cache(maxsize=64)
def _shop_terms(terms: tuple[str, ...]) -> re.Pattern[str] | None:
    words = [normalize(t).strip() for t in terms]
    words = [w for w in words if w]
    if not words:
        return None
    return _alternation([w for w in words if not w.isascii()],
                        [re.escape(w) for w in words if w.isascii()])


def detect_injury(text: str, extra_terms: Iterable[str] = ()) -> InjuryFinding:
    """How surely `text` says someone was harmed, and the words that say it.

    `extra_terms` (the shop's `injury_terms`) are certain and are looked for before anything
    is blanked out: a shop's word always counts.
    """
    normal = normalize(text)
    if not normal:
        return NO_INJURY
    found: list[tuple[InjuryLevel, str]] = []
    shop = _shop_terms(tuple(extra_terms))
    if shop is not None:
        found += [(InjuryLevel.LIKELY, m.group()) for m in shop.finditer(normal)]
    found += [(InjuryLevel.POSSIBLE, m.group()) for m in _EARLY.finditer(normal)]

    body_text = _blank(normal, _NOT_BODY)
    masked = _blank(normal, _HARMLESS)
    masked = _DEVICE_DAMAGE_RE.sub(lambda m: _device_damage(m, body_text), masked)
    for m in _TERMS.finditer(masked):
        term = m.group()
        if m.group("zh") is not None:
            level = _ZH_LEVEL[term]
            shown = term
        elif m.group("likely") is not None:
            level = InjuryLevel.LIKELY
        else:
            level = InjuryLevel.POSSIBLE if m.group("possible") is not None else None
        if m.group("zh") is None:
            # A stem is shown as the word it starts ("injur" → "injured").
            rest = _WORD_REST.match(normal, m.end())
            shown = term + (rest.group() if rest else "")
        if level is not InjuryLevel.LIKELY and _near_body(m, body_text):
            level = InjuryLevel.LIKELY
        if level is not None:
            found.append((level, shown))
    if not found:
        return NO_INJURY
    strongest = max(level for level, _ in found)
    terms = tuple(dict.fromkeys(term for level, term in found if level is strongest))
    return InjuryFinding(strongest, terms)


def _near_body(match: re.Match[str], body_text: str) -> bool:
    width = _CONTEXT_WINDOW_EN if match.group().isascii() else _CONTEXT_WINDOW_ZH
    start, end = max(0, match.start() - width), match.end() + width
    before = _SENTENCE_END.split(body_text[start:match.start()])[-1]
    after = _SENTENCE_END.split(body_text[match.end():end])[0]
    return _BODY.search(before + match.group() + after) is not None


def _device_damage(match: re.Match[str], body_text: str) -> str:
    # "盒子打开时划伤了手": the box is named, but so is a hand; "被包装里的金属片划伤": the
    # box did it to someone. Leave both to the terms.
    span = body_text[match.start():match.end() + 6]
    passive = "被" in body_text[max(0, match.start() - 2):match.start()]
    if passive or _BODY.search(span):
        return match.group()
    return _BLANK * len(match.group())


__all__ = ["NO_INJURY", "InjuryFinding", "InjuryLevel", "detect_injury", "normalize"]
