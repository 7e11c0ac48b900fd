"""Error injection (factbench build): an insertion, deletion or replacement inside the claimed
sentence is accepted however a character diff would align it (issue 17: all 12 span-check
rejections of a 40-source build were insertions the diff placed past the span)."""

from __future__ import annotations

import pytest

from agents.error_injector import InjectionReply, Rejected, build_variant, changed_regions

EN = "The patient has chest pain. Start aspirin and rest today."
EN_SENTENCES = ["The patient has chest pain.", "Start aspirin and rest today."]
ZH = "患者胸痛。开始服用阿司匹林和休息。"
ZH_SENTENCES = ["患者胸痛。", "开始服用阿司匹林和休息。"]


def reply(sid: int, original: str, replacement: str) -> InjectionReply:
    return InjectionReply(sid, original, replacement, original, "a drug interaction", 7)


def test_an_insertion_the_diff_aligns_past_the_span_is_accepted():
    start = EN.index("aspirin")
    # the whole-text diff puts the insertion after "aspirin and ", outside the claimed span: the old check
    # refused exactly this ("the diff touches characters ..., outside the claimed span ...")
    (a, b), = changed_regions(EN, EN.replace("aspirin", "aspirin and warfarin"), 6)
    assert a > start + len("aspirin")
    v = build_variant(EN, EN_SENTENCES, reply(1, "aspirin", "aspirin and warfarin"))
    assert v.text == "The patient has chest pain. Start aspirin and warfarin and rest today."
    assert (v.start, v.end, v.variant_start, v.variant_end) == (start, start + 7, start, start + 20)
    assert v.sentences[1] == "Start aspirin and warfarin and rest today." and v.sentences[0] == EN_SENTENCES[0]


def test_a_chinese_insertion_is_accepted():
    v = build_variant(ZH, ZH_SENTENCES, reply(1, "阿司匹林", "阿司匹林和华法林"))
    assert v.text == "患者胸痛。开始服用阿司匹林和华法林和休息。"
    assert v.text[v.variant_start:v.variant_end] == "阿司匹林和华法林"
    assert v.sentences == ["患者胸痛。", "开始服用阿司匹林和华法林和休息。"]


def test_deletions_and_replacements_inside_the_sentence_are_accepted():
    text = "The patient has chest pain. Start aspirin and warfarin and rest today."
    sentences = ["The patient has chest pain.", "Start aspirin and warfarin and rest today."]
    deleted = build_variant(text, sentences, reply(1, "aspirin and warfarin", "aspirin"))
    assert deleted.text == EN
    replaced = build_variant(ZH, ZH_SENTENCES, reply(1, "阿司匹林", "氯吡格雷"))
    assert replaced.text == "患者胸痛。开始服用氯吡格雷和休息。"


def test_two_separate_edits_are_still_rejected_in_both_languages():
    text = "Take 10 mg for 5 days. Rest."
    with pytest.raises(Rejected, match="changes 2 separate places"):
        build_variant(text, ["Take 10 mg for 5 days.", "Rest."], reply(0, "10 mg for 5 days", "20 mg for 9 days"))
    zh = "每日服用10毫克，连续服用5天。休息。"
    with pytest.raises(Rejected, match="changes 2 separate places"):
        build_variant(zh, ["每日服用10毫克，连续服用5天。", "休息。"],
                      reply(0, "10毫克，连续服用5天", "20毫克，连续服用9天"))
    with pytest.raises(Rejected, match="does not occur in sentence 0"):
        build_variant(EN, EN_SENTENCES, reply(0, "aspirin", "aspirin and warfarin"))
