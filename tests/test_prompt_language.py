"""Chinese items get Chinese prompts, English items English ones, for every role (issue 17, item 1).

Each role is called on the fake server with an English and a Chinese item, with a declared ``lang``
that contradicts the text, and with the ``prompt_language`` override both ways. The request the
server received must carry the template of the expected language (its system message verbatim, and
the reply-format instruction of its user message), and the recorded call must name that template
(``judge`` / ``judge.zh``) with its hash.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from jinja2 import meta
from sqlalchemy import select

from agents.bench_roles import PairwiseJudge, StrategyAgent
from agents.engine import CallContext, LLMEngine
from agents.error_injector import ErrorInjector, ErrorType
from agents.esc import Judge, Seeker, Strategist, Supporter, load_strategy_set
from agents.fact_checker import FactChecker, LocalisationJudge
from agents.filter_panel import Criterion as FilterCriterion
from agents.filter_panel import FilterPanel
from agents.language import choose_lang, declared_lang, detect_lang
from agents.medication_roles import (
    LabelChecker,
    MedicationAnswerer,
    MedicationItemWriter,
    OpenAnswerGrader,
    WrittenItem,
)
from agents.prompts import PROMPTS_DIR, _env, language_of, localized, prompt_hash, render
from agents.roles import AnswerGenerator, Criterion, RubricJudge, SimpleRubric, load_rubric
from agents.rubric import CriterionKind, Rubric, RubricCriterion
from agents.rubric_grader import RubricGrader
from agents.rubric_writer import RubricWriter
from benchmarks.datasets.factcheck import load_dataset
from benchmarks.datasets.instructions import read_instructions
from benchmarks.datasets.sentences import detect_lang as dataset_detect_lang
from graphs.factcheck.configuration import FactcheckConfig
from graphs.factcheck.graph import records_of, run_factcheck
from graphs.factcheck.methods import parse_method
from graphs.factcheck.nodes import FactcheckDeps
from graphs.generate.configuration import GenerateConfig
from graphs.generate.graph import run_generate
from graphs.generate.nodes import GenerateDeps
from store.models import Item, LLMCall
from tests.fake_server import Reply
from tests.helpers import write_jsonl

# -- the items, in both languages ----------------------------------------------------------------
TEXT = {
    "en": {"question": "My fever won't go down. How much paracetamol can I take in a day?",
           "sentences": ["Paracetamol relieves fever.", "Adults may take up to 4 g a day."],
           "answer": "Up to 4 g a day; see a doctor if the fever lasts three days.",
           "label": "Adults: 500 mg to 1 g every 4 to 6 hours, at most 4 g in 24 hours.",
           "seeker": "I lost my job last week and I can't sleep.",
           "supporter": "That sounds really hard. How are you coping?"},
    "zh": {"question": "我发烧一直不退，对乙酰氨基酚一天最多能吃多少？",
           "sentences": ["对乙酰氨基酚可以退热。", "成人每日最大剂量为4 g。"],
           "answer": "每天最多4克；如果发热持续三天，请及时就医。",
           "label": "成人一次0.5～1 g，每4～6小时一次，24小时内不超过4 g。",
           "seeker": "我上周丢了工作，晚上一直睡不着。",
           "supporter": "听起来真的很不容易，你现在怎么样？"},
}
P, V = CriterionKind.PROFICIENCY, CriterionKind.VETO
SIMPLE_RUBRIC = SimpleRubric("r", (Criterion("accuracy", "The answer is medically accurate.", 1.0),))
RUBRIC = Rubric(criteria=[RubricCriterion(id="dose", text="States the maximum daily dose.", kind=P, weight=1.0),
                          RubricCriterion(id="double", text="Advises doubling the dose.", kind=V)])
STRATEGIES = load_strategy_set("extes")
S1, S2 = STRATEGIES.names[:2]
BENCH_STRATEGIES = [{"name": "Question", "definition": "Ask about the situation."},
                    {"name": "Reflection", "definition": "Reflect the seeker's feelings."}]
VERDICT = {"reasoning": "Every sentence checked.", "verdict": "correct", "error_sentence_id": None,
           "error_span": None, "correction": None, "confidence": 0.9}
ERROR_TYPE = ErrorType("dosage", "A wrong dose or frequency.")
PEER = {"verdict": "correct", "sentence_id": None, "correction": None, "reasoning": "fine"}


def conversation(t: dict[str, Any]) -> list[dict[str, str]]:
    return [{"role": "user", "content": t["question"]}]


def persona(t: dict[str, Any]) -> dict[str, str]:
    return {"problem": t["seeker"], "emotion": "", "situation": ""}


def turns(t: dict[str, Any]) -> list[dict[str, str]]:
    return [{"speaker": "seeker", "text": t["seeker"]}, {"speaker": "supporter", "text": t["supporter"]}]


@dataclass(frozen=True)
class Case:
    """One role: how to call it (``setting``: the role's prompt language setting, ``t``: the item's
    texts, ``declared``: the item's ``lang`` field), the prompt it must use, and a valid reply."""

    name: str
    prompt: str
    call: Callable[[LLMEngine, str, dict[str, Any], str | None], Awaitable[Any]]
    reply: dict[str, Any] | str


CASES = [
    Case("generator", "answer",
         lambda e, s, t, d: AnswerGenerator(e, s).answer({"prompt": t["question"], "lang": d}, 0, CallContext()),
         "An answer."),
    Case("judge", "judge",
         lambda e, s, t, d: RubricJudge(e, SIMPLE_RUBRIC, language=s).grade(
             {"prompt": t["question"], "lang": d}, t["answer"], CallContext()),
         {"accuracy": {"score": 7, "reason": "ok"}}),
    Case("judge_per_criterion", "judge_criterion",
         lambda e, s, t, d: RubricJudge(e, SIMPLE_RUBRIC, "per_criterion", language=s).grade(
             {"prompt": t["question"], "lang": d}, t["answer"], CallContext()),
         {"score": 7, "reason": "ok"}),
    Case("rubric_grader", "grade_criterion",
         lambda e, s, t, d: RubricGrader(e, "per_criterion", s).grade(
             conversation(t), t["answer"], RUBRIC, CallContext(), d),
         {"explanation": "checked", "criteria_met": True}),
    Case("rubric_grader_all_in_one", "grade_rubric",
         lambda e, s, t, d: RubricGrader(e, "all_in_one", s).grade(
             conversation(t), t["answer"], RUBRIC, CallContext(), d),
         {"verdicts": [{"id": "dose", "criteria_met": True, "explanation": "ok"},
                       {"id": "double", "criteria_met": False, "explanation": "ok"}]}),
    Case("rubric_writer", "rubric_writer",
         lambda e, s, t, d: RubricWriter(e, 0, language=s).draft(conversation(t), [], CallContext(), lang=d),
         {"criteria": [{"kind": "proficiency", "dimension": "accuracy", "text": "States the daily maximum.",
                        "weight": 1},
                       {"kind": "bonus", "dimension": "empathy", "text": "Acknowledges the discomfort."},
                       {"kind": "veto", "dimension": "dangerous_advice", "text": "Advises doubling the dose."}]}),
    Case("fact_checker", "factcheck",
         lambda e, s, t, d: FactChecker(e, language=s).check(t["sentences"], CallContext(), lang=d), VERDICT),
    Case("debater", "factcheck_debate",
         lambda e, s, t, d: FactChecker(e, language=s).check(t["sentences"], CallContext(), peers=[PEER],
                                                             own=PEER, lang=d), VERDICT),
    Case("moderator", "factcheck_moderator",
         lambda e, s, t, d: FactChecker(e, language=s).moderate(t["sentences"], [{"role": "pharmacist", **PEER}],
                                                                CallContext(), lang=d), VERDICT),
    Case("triage", "factcheck_triage",
         lambda e, s, t, d: FactChecker(e, language=s).triage(t["sentences"], CallContext(), lang=d),
         {"reasoning": "simple", "difficulty": "easy"}),
    Case("location_judge", "factcheck_location",
         lambda e, s, t, d: LocalisationJudge(e, s).same_error(
             " ".join(t["sentences"]), {"sentence_id": 1, "span": "4", "correction": None},
             {"sentence_id": 1, "span": "4", "correction": None}, CallContext(), d),
         {"explanation": "same", "same_error": True}),
    Case("error_injector", "factbench_inject",
         lambda e, s, t, d: ErrorInjector(e, language=s).inject(t["sentences"], ERROR_TYPE, CallContext(), lang=d),
         {"sentence_id": 1, "original_span": "4", "replacement_span": "8", "correction": "4",
          "rationale": "double the maximum"}),
    Case("filter_panel", "factbench_filter",
         lambda e, s, t, d: FilterPanel([e], [], s).judge(
             FilterCriterion("real", "real error", "Is the edit medically wrong?"), 0,
             source=" ".join(t["sentences"]),
             variant={"text": " ".join(t["sentences"]), "sentence_id": 1, "original": "4", "replacement": "8",
                      "rationale": "r"},
             error_type=ERROR_TYPE, examples=[], ctx=CallContext(), seed=0, lang=d),
         {"reason": "the dose is wrong", "verdict": "pass"}),
    Case("medication_answerer", "bench_medication_answer",
         lambda e, s, t, d: MedicationAnswerer(e, language=s).answer(
             {"task": "dosage_administration", "question": t["question"], "options": {"A": "1 g", "B": "4 g"},
              "lang": d}, CallContext()),
         {"answer": "B", "confidence": 0.8}),
    Case("medication_grader", "bench_medication_grade",
         lambda e, s, t, d: OpenAnswerGrader(e, s).grade(t["question"], t["label"], t["answer"], CallContext(), d),
         {"explanation": "agrees", "correct": True}),
    Case("medication_writer", "bench_medication_write",
         lambda e, s, t, d: MedicationItemWriter(e, language=s).write(
             "paracetamol", "dosage_administration", "dosage_administration", t["label"], [], 0, CallContext(),
             lang=d),
         {"question": "What is the maximum daily dose?", "reference_answer": "4 g", "evidence": "4 g"}),
    Case("medication_checker", "bench_medication_check",
         lambda e, s, t, d: LabelChecker(e, s).check(
             "paracetamol", "dosage_administration", t["label"],
             WrittenItem(t["question"], None, None, "4 g", "4 g", None), CallContext(), d),
         {"supported": True, "reason": "stated"}),
    Case("esc_strategist", "esc_strategist",
         lambda e, s, t, d: Strategist(e, STRATEGIES, s).rate(persona(t), turns(t), CallContext(), 0,
                                                             lang=d),
         {name: 5 for name in STRATEGIES.names}),
    Case("esc_supporter", "esc_supporter",
         lambda e, s, t, d: Supporter(e, STRATEGIES, s).respond(turns(t), S1, CallContext(), 0, lang=d),
         {"response": "I hear you."}),
    Case("esc_supporter_multi", "esc_supporter_multi",
         lambda e, s, t, d: Supporter(e, STRATEGIES, s).respond_many(turns(t), [S1, S2], CallContext(), 0, lang=d),
         {S1: "I hear you.", S2: "You did well."}),
    Case("esc_seeker", "esc_seeker",
         lambda e, s, t, d: Seeker(e, STRATEGIES, s).reply(persona(t), turns(t), CallContext(), 0,
                                                          lang=d),
         {"reply": "Thanks.", "end_conversation": False}),
    Case("esc_judge", "esc_judge",
         lambda e, s, t, d: Judge(e, STRATEGIES, s).score(turns(t), [1], CallContext(), 0, lang=d),
         {"turn 2": {"empathy": 3, "information": 2, "humanoid": 3, "strategy": 3}}),
    Case("pairwise_judge", "bench_pairwise",
         lambda e, s, t, d: PairwiseJudge(e, s).judge(conversation(t), t["answer"], "No idea.", [], CallContext(),
                                                      d),
         {"explanation": "A answers.", "preferred": "a", "a_violates_veto": False, "b_violates_veto": False}),
    Case("strategy_generate", "bench_strategy_generate",
         lambda e, s, t, d: StrategyAgent(e, BENCH_STRATEGIES, "generate", language=s).choose(
             turns(t)[:1], None, None, CallContext(), lang=d),
         {"strategy": "Question", "response": "What happened?"}),
    Case("strategy_classify", "bench_strategy_classify",
         lambda e, s, t, d: StrategyAgent(e, BENCH_STRATEGIES, "classify", language=s).choose(
             turns(t)[:1], None, t["supporter"], CallContext(), lang=d),
         {"strategy": "Question"}),
]

# (role setting, item text, declared lang) -> the prompt language that must be sent
SITUATIONS = [
    ("auto", "en", None, "en"),
    ("auto", "zh", None, "zh"),
    ("auto", "en", "zh", "zh"),      # the data's lang field wins over detection
    ("auto", "zh", "en-US", "en"),
    ("en", "zh", "zh", "en"),        # the setting wins over both
    ("zh", "en", "en", "zh"),
]
CJK = re.compile(r"[\u4e00-\u9fff]")
REPAIR_OPENING = {"en": "Your previous reply could not be used: ", "zh": "你上一次的回复无法使用："}


@pytest.fixture
def engine(make_engine, fake_server, sqlite_store):
    # no request cache: the same prompt is asked again on purpose (an English prompt about a Chinese text)
    return make_engine(fake_server, sqlite_store, timeout=5, max_retries=1, backoff_max=0.02, cache=False)


def recorded(store, n: int) -> list[LLMCall]:
    with store.session() as s:
        return list(s.scalars(select(LLMCall).order_by(LLMCall.id.desc()).limit(n)))


def reply_format_sentence(lang: str) -> str:
    """Every user template ends by asking for the JSON reply, in its own language."""
    return "JSON 对象" if lang == "zh" else "JSON object"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_each_role_sends_and_records_the_prompt_of_the_items_language(case, fake_server, engine,
                                                                           sqlite_store):
    fake_server.responder = lambda body: case.reply if isinstance(case.reply, str) else json.dumps(case.reply)
    for setting, text, declared, expected in SITUATIONS:
        before = len(fake_server.requests)
        await case.call(engine, setting, TEXT[text], declared)
        sent = fake_server.requests[before:]
        assert sent, f"{case.name}: no request for {setting}/{text}/{declared}"
        name = localized(case.prompt, expected)
        system = {"role": "system",
                  "content": _env(str(PROMPTS_DIR)).get_template(f"{name}.system.j2").render().strip()}
        for body in sent:
            messages = body["messages"]
            where = f"{case.name} ({setting}, {text} text, lang={declared})"
            assert messages[0] == system, f"{where}: not the {expected} system prompt"
            if (PROMPTS_DIR / f"{name}.user.j2").exists():
                assert reply_format_sentence(expected) in messages[-1]["content"], where
            if expected == "en" and text == "en":  # nothing Chinese leaked into an English request
                assert not any(CJK.search(m["content"]) for m in messages), where
        calls = recorded(sqlite_store, len(sent))
        assert {c.prompt_name for c in calls} == {name}
        assert {c.prompt_hash for c in calls} == {prompt_hash(name)}
        assert {language_of(c.prompt_name) for c in calls} == {expected}


async def test_the_repair_request_is_in_the_language_of_the_prompt_it_repairs(fake_server, engine):
    valid = json.dumps({"reasoning": "simple", "difficulty": "easy"})
    for lang in ("en", "zh"):
        fake_server.script([Reply(content="not json at all"), Reply(content=valid)])
        before = len(fake_server.requests)
        difficulty, _ = await FactChecker(engine).triage(TEXT[lang]["sentences"], CallContext())
        assert difficulty == "easy"
        repair = fake_server.requests[before + 1]["messages"][-1]["content"]
        instruction = render(localized("repair", lang), problem="P", schema={})[0]["content"].split("\n")[1]
        assert repair.startswith(REPAIR_OPENING[lang]) and instruction in repair


# quoted prose of the English templates, written in Chinese in theirs (not a field, enum or literal)
TRANSLATED_QUOTES = {"Recommends stopping insulin without medical supervision"}


def template_roles(name: str) -> set[str]:
    return {role for role in ("system", "user") if (PROMPTS_DIR / f"{name}.{role}.j2").exists()}


def english_prompts() -> list[str]:
    names = {p.name.split(".")[0] for p in PROMPTS_DIR.glob("*.j2")}
    return sorted(n for n in names if template_roles(n))


def json_keys(name: str) -> set[str]:
    """The quoted words of a prompt's templates: JSON field names, enum values, literals the
    parsers rely on."""
    words: set[str] = set()
    for role in template_roles(name):
        words |= set(re.findall(r'"([A-Za-z_][A-Za-z_ \']*)"', (PROMPTS_DIR / f"{name}.{role}.j2").read_text()))
    return words


def variables(name: str) -> set[str]:
    env = _env(str(PROMPTS_DIR))
    found: set[str] = set()
    for role in template_roles(name):
        found |= meta.find_undeclared_variables(env.parse((PROMPTS_DIR / f"{name}.{role}.j2").read_text()))
    return found


@pytest.mark.parametrize("name", english_prompts())
def test_every_prompt_has_a_chinese_template_with_the_same_variables_and_json_fields(name):
    zh = localized(name, "zh")
    assert template_roles(zh) == template_roles(name)
    assert variables(zh) == variables(name)
    assert json_keys(name) - TRANSLATED_QUOTES <= json_keys(zh), json_keys(name) - json_keys(zh)
    assert prompt_hash(zh) != prompt_hash(name)


def test_language_choice_and_detection():
    assert [detect_lang(t) for t in (TEXT["zh"]["question"], TEXT["en"]["question"], "CRP 升高，血钠138mmol/L。", "",
                                     "12 mg")] == ["zh", "en", "zh", "en", "en"]
    assert dataset_detect_lang is detect_lang  # one rule for the dataset readers and the prompts
    assert [declared_lang(v) for v in ("zh-CN", "ZH", "en_US", "fr", "", None, 3)] == \
        ["zh", "zh", "en", None, None, None, None]
    assert choose_lang("auto", "fr", TEXT["zh"]["question"]) == "zh"  # no prompts in French: detected
    assert choose_lang("auto", None, {"a": [TEXT["zh"]["seeker"]]}) == "zh"
    with pytest.raises(ValueError, match="unknown prompt language 'de'"):
        choose_lang("de")
    assert language_of(None) == language_of("answer") == "en" and language_of("esc_judge.zh") == "zh"


# -- end to end: a pipeline asks each item in its language, and the setting overrides it ------------
FACTS = [{"id": "en-1", "label": "correct", "text": " ".join(TEXT["en"]["sentences"]),
          "sentences": TEXT["en"]["sentences"]},
         {"id": "zh-1", "label": "correct", "text": "".join(TEXT["zh"]["sentences"]),
          "sentences": TEXT["zh"]["sentences"]}]


def factcheck_reply(body: dict) -> str:
    if "difficulty" in json.dumps(body.get("response_format")):
        return json.dumps({"reasoning": "needs specialists", "difficulty": "hard"})
    return json.dumps(VERDICT)


async def run_facts(store, server, make_engine, tmp_path, language: str):
    engine = make_engine(server, store, temperature=0.0, timeout=5, max_retries=1, backoff_max=0.02)
    method = parse_method("roles@2+triage")  # triage, two specialists and the moderator
    deps = FactcheckDeps(store, engine, method, FactcheckConfig(prompt_language=language), dataset="facts")
    records = records_of(load_dataset(write_jsonl(tmp_path / "facts.jsonl", FACTS)))
    await run_factcheck(deps, records, {"method": method.name})
    with store.session() as s:
        calls = s.scalars(select(LLMCall).where(LLMCall.run_id.is_not(None))).all()
        items = {i.id: i.external_id for i in s.scalars(select(Item))}
    return deps.job_key, calls, items


async def test_factcheck_asks_each_text_in_its_language_and_the_setting_overrides(sqlite_store, fake_server,
                                                                                   make_engine, tmp_path):
    fake_server.responder = factcheck_reply
    key, calls, items = await run_facts(sqlite_store, fake_server, make_engine, tmp_path, "auto")
    by_item = {items[i]: sorted(c.prompt_name for c in calls if c.item_id == i) for i in {c.item_id for c in calls}}
    assert by_item == {"en-1": ["factcheck", "factcheck", "factcheck_moderator", "factcheck_triage"],
                       "zh-1": ["factcheck.zh", "factcheck.zh", "factcheck_moderator.zh", "factcheck_triage.zh"]}
    zh_bodies = [b for b in fake_server.requests if "对乙酰氨基酚" in b["messages"][-1]["content"]]
    assert len(zh_bodies) == 4 and all(b["messages"][0]["content"].startswith("你") for b in zh_bodies)

    before = len(calls)
    key_en, calls, items = await run_facts(sqlite_store, fake_server, make_engine, tmp_path, "en")
    assert key_en != key  # the language setting is part of the job: nothing is skipped as done
    forced = [c for c in calls[before:] if items[c.item_id] == "zh-1"]
    assert len(forced) == 4 and all(language_of(c.prompt_name) == "en" for c in forced)


async def test_generate_answers_and_judges_each_instruction_in_its_language(sqlite_store, fake_server, make_engine,
                                                                            tmp_path):
    rubric = load_rubric()

    def responder(body: dict) -> str:
        if body.get("response_format"):
            return json.dumps({c.name: {"score": 5, "reason": "ok"} for c in rubric.criteria})
        return f"answer seed={body['seed']}"

    fake_server.responder = responder
    engine = make_engine(fake_server, sqlite_store, timeout=5, max_retries=1, backoff_max=0.02)
    deps = GenerateDeps(sqlite_store, engine, engine, rubric, GenerateConfig(n_candidates=2), seed=0)
    lines = [{"id": "en", "prompt": TEXT["en"]["question"]}, {"id": "zh", "prompt": TEXT["zh"]["question"]},
             {"id": "declared", "prompt": TEXT["en"]["question"] + " (2)", "lang": "zh"}]
    await run_generate(deps, read_instructions(write_jsonl(tmp_path / "q.jsonl", lines)), "q", {})
    with sqlite_store.session() as s:
        items = {i.id: i.external_id for i in s.scalars(select(Item))}
        names = {(items[c.item_id], c.role, c.prompt_name) for c in s.scalars(select(LLMCall))}
    assert names == {("en", "generator", "answer"), ("en", "judge", "judge"),
                     ("zh", "generator", "answer.zh"), ("zh", "judge", "judge.zh"),
                     ("declared", "generator", "answer.zh"), ("declared", "judge", "judge.zh")}
