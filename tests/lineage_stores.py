"""Stores made by the real pipelines on the fake OpenAI server, for the trace and dataset-card tests.

Each builder runs a pipeline's ``run_*`` function (the one its command runs) over a small input
file, with the scripted model replies of that pipeline's own tests, and returns what it ran.
``sql_plans`` records every statement a function sends to SQLite and its query plan, so a test can
check that lineage queries never scan a large table.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import event

from agents.limits import Limiter
from agents.roles import load_rubric
from benchmarks.datasets.esconv import read_esconv_json
from benchmarks.datasets.factcheck import load_dataset
from benchmarks.datasets.instructions import read_instructions, read_rubric_instructions
from graphs.esc_search.configuration import EscSearchConfig
from graphs.esc_search.graph import run_esc_search
from graphs.esc_search.nodes import EscDeps
from graphs.factcheck.configuration import FactcheckConfig
from graphs.factcheck.graph import records_of, run_factcheck
from graphs.factcheck.methods import parse_method
from graphs.factcheck.nodes import FactcheckDeps
from graphs.generate.configuration import GenerateConfig
from graphs.generate.graph import run_generate
from graphs.generate.nodes import GenerateDeps
from graphs.rubric_prefs.configuration import RubricPrefsConfig
from graphs.rubric_prefs.graph import run_rubric_prefs
from graphs.rubric_prefs.nodes import RubricPrefsDeps
from store import Store
from store.rubrics import add_rubric, approved_rubric_lookup, decide
from tests.helpers import write_jsonl

# a big table scanned in full would make a trace slow on a large store; `runs` has a row per command
BIG_TABLES = ("llm_calls", "candidates", "judgments", "candidate_scores", "preference_pairs", "items",
              "check_answers", "tree_nodes", "training_pairs", "rubrics", "rubric_reviews", "work_items",
              "bench_results")
MARKUP = "[bold red]not markup[/bold red]"  # model output that must reach the terminal verbatim


@dataclass
class Built:
    report: Any
    input_file: Path
    extra: dict[str, Any]


# -- generate -----------------------------------------------------------------------------------
QUESTIONS = [{"id": "q-heart", "prompt": "What is a normal resting heart rate?", "lang": "en"},
             {"id": "q-fever", "prompt": "I have a fever of 39 C. Should I see a doctor?", "lang": "en"}]
SCORES = {0: 9, 1: 2, 2: 5}  # by seed: seed 0 is chosen, seed 1 rejected


def generate_responder(body: dict) -> str:
    if "grader" in body["messages"][0]["content"]:
        seed = int(body["messages"][-1]["content"].split("answer seed=")[1].split(" ")[0])
        return json.dumps({c: {"score": SCORES[seed], "reason": f"seed {seed}"}
                           for c in ("accuracy", "safety", "helpfulness", "clarity")})
    return f"answer seed={body['seed']} {MARKUP} for {body['messages'][-1]['content']}"


async def build_generate(store: Store, server: Any, make_engine: Callable, tmp_path: Path) -> Built:
    server.responder = generate_responder
    limiter = Limiter(8)
    gen = make_engine(server, store, model="gen-model", temperature=0.7, max_tokens=64, limiter=limiter)
    judge = make_engine(server, store, model="judge-model", temperature=0.0, max_tokens=64, limiter=limiter)
    deps = GenerateDeps(store, gen, judge, load_rubric(), GenerateConfig(n_candidates=3, min_margin=1.0), seed=0)
    src = write_jsonl(tmp_path / "questions.jsonl", QUESTIONS)
    report = await run_generate(deps, read_instructions(src), "questions", {"test": "generate"})
    assert report.new_pairs == 2, report
    return Built(report, src, {})


# -- rubric-prefs, with a rubric a reviewer edited ----------------------------------------------
PARACETAMOL = "How much paracetamol can I take for a fever?"
DRAFT = {"criteria": [
    {"id": "dose", "text": "States that adults may take at most 4 g of paracetamol a day.", "kind": "proficiency",
     "weight": 0.6, "origin": "generated"},
    {"id": "doctor", "text": "Says to see a doctor.", "kind": "proficiency", "weight": 0.4, "origin": "generated"},
    {"id": "overdose", "text": "Recommends taking more than 4 g a day.", "kind": "veto", "origin": "generated"},
]}
EDITED = {"criteria": [DRAFT["criteria"][0],
                       {**DRAFT["criteria"][1], "text": "Says to see a doctor if the fever lasts more than three days.",
                        "origin": "human_edited"},
                       DRAFT["criteria"][2]]}
MEETS = {0: {"dose": True, "doctor": True, "overdose": True},  # thorough but unsafe
         1: {"dose": True, "doctor": False, "overdose": False},
         2: {"dose": False, "doctor": False, "overdose": False}}


def rubric_responder(body: dict) -> str:
    prompt = body["messages"][-1]["content"]
    if "Rubric criterion:" not in prompt:
        return f"Answer with seed={body['seed']}: about paracetamol dosing and when to see a doctor."
    seed = int(prompt.split("Answer with seed=")[1].split(":")[0])
    line = next(x for x in prompt.splitlines() if x.startswith("Rubric criterion:"))
    key = "overdose" if "more than 4 g" in line else ("doctor" if "doctor" in line else "dose")
    return json.dumps({"explanation": "scripted", "criteria_met": MEETS[seed][key]})


async def build_rubric_prefs(store: Store, server: Any, make_engine: Callable, tmp_path: Path) -> Built:
    """A drafted rubric that reviewer dr-lee edited; the instruction line has none, so the approved
    edit from the store is used."""
    with store.session() as s:
        draft = add_rubric(s, instruction=[{"role": "user", "content": PARACETAMOL}], rubric=DRAFT,
                           origin="generated", status="pending", in_pool=False, writer_model="writer-model")
    with store.session() as s:
        edit = decide(s, draft, "edit", "dr-lee", "the doctor advice needs a duration", EDITED)
    server.responder = rubric_responder
    src = write_jsonl(tmp_path / "rubric.jsonl", [{"id": "para-1", "prompt": PARACETAMOL, "lang": "en"}])
    engine = lambda t: make_engine(server, store, model="policy-model" if t else "grader-model", temperature=t,  # noqa: E731
                                   max_tokens=64)
    deps = RubricPrefsDeps(store, [engine(0.8)], engine(0.0), RubricPrefsConfig(n_candidates=3, min_s1_margin=0.05),
                           dataset="rubric")
    report = await run_rubric_prefs(deps, read_rubric_instructions(src, lookup=approved_rubric_lookup(store)),
                                    {"test": "rubric-prefs"})
    assert report.new_pairs == 1, report
    return Built(report, src, {"draft_id": draft, "edit_id": edit.rubric_id, "job_key": deps.job_key})


# -- esc-search ---------------------------------------------------------------------------------
async def build_esc(store: Store, server: Any, make_engine: Callable, tmp_path: Path) -> Built:
    from tests.test_esc import scripted, seed_file

    server.responder = scripted(end_after=1)
    engine = lambda model: make_engine(server, store, model=model, temperature=0.7, max_tokens=256,  # noqa: E731
                                       max_retries=0, timeout=10, limiter=Limiter(4))
    config = EscSearchConfig(gold_turns=1, expand_k=2, early_stop_patience=None, item_concurrency=1, iterations=3)
    deps = EscDeps(store, engine("supporter-model"), engine("judge-model"), config, dataset="esc-test")
    src = seed_file(tmp_path)
    report = await run_esc_search(deps, read_esconv_json(src), {"test": "esc"})
    assert report.new_pairs == 1, report
    return Built(report, src, {})


# -- factcheck ----------------------------------------------------------------------------------
async def build_factcheck(store: Store, server: Any, make_engine: Callable, tmp_path: Path) -> Built:
    from tests.test_factcheck import TEXTS, checker

    server.responder = checker
    src = write_jsonl(tmp_path / "facts.jsonl", TEXTS)
    deps = FactcheckDeps(store, make_engine(server, store, model="checker-model", temperature=0.0, max_tokens=256),
                         parse_method("debate@3x2"), FactcheckConfig(), dataset="facts")
    report = await run_factcheck(deps, records_of(load_dataset(src)), {"method": "debate@3x2"})
    assert report.summary.done == 4, report
    return Built(report, src, {"job_key": deps.job_key})


# -- query plans --------------------------------------------------------------------------------
@contextmanager
def sql_plans(store: Store):
    """Collect (statement, SQLite query plan lines) of every statement sent inside the block."""
    sent: list[tuple[str, Any]] = []

    def record(conn, cursor, statement, parameters, context, executemany):  # noqa: ARG001
        if statement.lstrip().upper().startswith("SELECT"):
            sent.append((statement, parameters))

    plans: list[tuple[str, list[str]]] = []
    event.listen(store.engine, "before_cursor_execute", record)
    try:
        yield plans
    finally:
        event.remove(store.engine, "before_cursor_execute", record)
    with store.engine.connect() as conn:
        for statement, parameters in sent:
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
            plans.append((statement, [r[-1] for r in rows]))


def full_scans(plans: list[tuple[str, list[str]]]) -> list[tuple[str, str]]:
    """(statement, plan line) of every full scan of a large table (``SCAN t``, with or without an
    index: both read the whole table)."""
    return [(stmt, line) for stmt, lines in plans for line in lines
            if line.startswith("SCAN ") and line.split()[1] in BIG_TABLES]
