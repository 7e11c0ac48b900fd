"""The language of an item, which picks the language of every prompt sent about it.

MedFact and ChiDrug are Chinese studies and MedErrBench has a Chinese half, so a Chinese item is
put to the model with a Chinese prompt (``agents/templates/*.zh.*.j2``) and an English item with the
English one. An item's declared language (the data's ``lang`` field) wins; otherwise it is detected
from the item's own text; the setting ``prompt_language`` (``auto``, ``en`` or ``zh``) of each
pipeline overrides both.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Literal

LANGUAGES = ("en", "zh")
PROMPT_LANGUAGES = ("auto", *LANGUAGES)
PromptLanguage = Literal["auto", "en", "zh"]

# also the dataset readers' rule (benchmarks.datasets.sentences imports it)
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
_LETTER = re.compile(r"[A-Za-z\u3400-\u4dbf\u4e00-\u9fff]")


def detect_lang(text: str) -> Literal["zh", "en"]:
    """"zh" when at least a fifth of the letters are CJK ideographs (Chinese clinical texts are full
    of Latin abbreviations such as CRP or mmol/L), else "en"."""
    letters = len(_LETTER.findall(text))
    return "zh" if letters and len(_CJK.findall(text)) >= 0.2 * letters else "en"


def declared_lang(value: Any) -> str | None:
    """A data field's language as one of ``LANGUAGES`` (``zh-CN``, ``ZH``, ``en_US`` ...), or None
    when the field is missing or names a language we have no prompts for."""
    if not isinstance(value, str) or not value.strip():
        return None
    base = re.split(r"[-_]", value.strip().lower(), maxsplit=1)[0]
    return base if base in LANGUAGES else None


def texts_of(value: Any) -> Iterable[str]:
    """Every string inside ``value`` (strings, dicts' values, lists): what detection reads."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from texts_of(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from texts_of(v)


def choose_lang(setting: str = "auto", declared: Any = None, *texts: Any) -> str:
    """The prompt language of one item: the setting when it names a language, else the item's
    declared language, else the language detected from its texts."""
    if setting not in PROMPT_LANGUAGES:
        raise ValueError(f"unknown prompt language {setting!r}; choose one of {', '.join(PROMPT_LANGUAGES)}")
    if setting != "auto":
        return setting
    return declared_lang(declared) or detect_lang(" ".join(texts_of(list(texts))))
