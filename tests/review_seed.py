"""Stores for the review app's tests, filled by the real pipelines on the fake OpenAI server (pairs:
rubric-prefs; variants: factbench build) and by the store's public functions (rubric drafts), with
model output that carries HTML (``<script>``) and Chinese text on purpose; and a live server.

``LiveServer`` runs the real app under uvicorn in a thread on 127.0.0.1 and a free port.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select

from agents.limits import Limiter
from agents.rubric import Rubric
from benchmarks.datasets.instructions import read_rubric_instructions
from carealign.cli_factbench import build_command
from carealign.web.auth import add_account, change_password
from carealign.web.configuration import ReviewConfig
from graphs.rubric_prefs.configuration import RubricPrefsConfig
from graphs.rubric_prefs.graph import run_rubric_prefs
from graphs.rubric_prefs.nodes import RubricPrefsDeps
from store import Store
from store.models import PreferencePair
from store.review import user_by_name
from store.rubrics import add_rubric
from tests.helpers import write_jsonl
from tests.test_factbench import SOURCES, quiet, settings_for
from tests.test_factbench import responder as factbench_responder

XSS = "<script>window.__xss = 1</script>"
XSS_IMG = '<img src=x onerror="window.__xss = 2">'
ZH_QUESTION = "发烧时成人每天最多可以服用多少对乙酰氨基酚？"
ZH_ANSWER = "回答 seed={seed}：成人每天最多服用4克，发烧超过三天请咨询医生。"
EN_QUESTIONS = ["How much paracetamol can an adult take for a fever?",
                "How much ibuprofen can an adult take for back pain?",
                "Can I take paracetamol and ibuprofen together?"]
EN_RUBRIC = {"criteria": [
    {"id": "dose", "text": "States the maximum daily amount.", "kind": "proficiency", "weight": 0.6},
    {"id": "doctor", "text": "Advises seeing a doctor when needed.", "kind": "proficiency", "weight": 0.4},
    {"id": "overdose", "text": "Recommends an overdose.", "kind": "veto"}]}
ZH_RUBRIC = {"criteria": [
    {"id": "dose", "text": "说明每日最大剂量。", "kind": "proficiency", "weight": 0.6},
    {"id": "doctor", "text": "建议必要时就医。", "kind": "proficiency", "weight": 0.4},
    {"id": "overdose", "text": "推荐过量服用。", "kind": "veto"}]}
MARKERS = {"maximum": "dose", "doctor": "doctor", "overdose": "overdose", "最大剂量": "dose", "就医": "doctor",
           "过量": "overdose"}
MEETS = {0: {"dose": True, "doctor": True, "overdose": False},  # seed 0 is chosen, seed 2 rejected
         1: {"dose": True, "doctor": False, "overdose": False},
         2: {"dose": False, "doctor": False, "overdose": False}}


def prefs_responder(body: dict) -> str:
    prompt = body["messages"][-1]["content"]
    if not body.get("response_format"):  # a generator call: the answer, with HTML in English answers
        zh = any("\u4e00" <= ch <= "\u9fff" for ch in prompt)
        return ZH_ANSWER.format(seed=body["seed"]) if zh else \
            f"Answer seed={body['seed']}: {XSS} Take at most 4 g a day."
    seed = int(re.search(r"seed=(\d+)", prompt).group(1))
    line = next(x for x in prompt.splitlines() if any(m in x for m in MARKERS) and "seed=" not in x)
    key = next(v for m, v in MARKERS.items() if m in line)
    return json.dumps({"explanation": f"scripted {key}", "criteria_met": MEETS[seed][key]})


async def seed_pairs(store: Store, server: Any, make_engine: Callable, tmp_path: Path) -> list[int]:
    """Four rubric-grounded pairs (three English answers carry a <script>, one is Chinese); their ids."""
    server.responder = prefs_responder
    lines = [{"id": f"en-{i}", "prompt": q, "lang": "en", "rubric": EN_RUBRIC} for i, q in enumerate(EN_QUESTIONS)]
    lines.append({"id": "zh-0", "prompt": ZH_QUESTION, "lang": "zh", "rubric": ZH_RUBRIC})
    src = write_jsonl(tmp_path / "prefs.jsonl", lines)
    engine = lambda t: make_engine(server, store, model="policy-model" if t else "grader-model",  # noqa: E731
                                   temperature=t, max_tokens=64, limiter=Limiter(8))
    deps = RubricPrefsDeps(store, [engine(0.8)], engine(0.0), RubricPrefsConfig(n_candidates=3, min_s1_margin=0.05),
                           dataset="review")
    report = await run_rubric_prefs(deps, read_rubric_instructions(src), {"test": "review"})
    assert report.new_pairs == 4, report
    with store.session() as s:
        return list(s.scalars(select(PreferencePair.id).order_by(PreferencePair.id)))


def seed_drafts(store: Store) -> list[int]:
    """Three pending rubric drafts: English, Chinese, and one whose criterion carries HTML."""
    drafts = [([{"role": "user", "content": EN_QUESTIONS[0]}], EN_RUBRIC, "en", "At most 4 g a day."),
              ([{"role": "user", "content": ZH_QUESTION}], ZH_RUBRIC, "zh", "成人每天不超过4克。"),
              ([{"role": "user", "content": EN_QUESTIONS[1]}],
               {"criteria": [{**EN_RUBRIC["criteria"][0], "weight": 1.0, "text": f"States the dose {XSS_IMG}"},
                             EN_RUBRIC["criteria"][2]]}, None, None)]
    ids = []
    for instruction, drafted, lang, reference in drafts:  # stored as the rubric writer stores a draft
        rubric = Rubric.model_validate({"criteria": [{**c, "origin": "generated"} for c in drafted["criteria"]]}) \
            .model_dump(mode="json")
        with store.session() as s:
            ids.append(add_rubric(s, instruction=instruction, rubric=rubric, origin="generated", status="pending",
                                  in_pool=False, writer_model="writer-model", language=lang, reference=reference))
    return ids


async def seed_variants(store: Store, db_url: str, server: Any, tmp_path: Path) -> str:
    """Factbench round 1 on the fake server (test_factbench's script): variants A, D, E decided."""
    server.responder = factbench_responder
    src = write_jsonl(tmp_path / "sources.jsonl", [{**s, "label": "correct"} for s in SOURCES])
    return await build_command(quiet(), settings_for(db_url, server), [src], None, None, "src")


def accounts(store: Store, *names: str, role: str = "reviewer", one_time: bool = False) -> dict[str, str]:
    """Accounts and their passwords: the one-time ones (``one_time``), else each account's own, chosen
    as the password page does (a test of the first login goes through that page itself)."""
    out = {}
    for n in names:
        out[n] = add_account(store, n, role, 12)
        if not one_time:
            own = f"{n}-own-password"
            assert change_password(store, user_by_name(store, n), own, own, 12) is None
            out[n] = own
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """The real app under uvicorn in a thread, on 127.0.0.1 and a free port."""

    def __init__(self, store: Store, config: ReviewConfig | None = None):
        import uvicorn

        from carealign.web.app import create_app

        self.config = config or ReviewConfig()
        self.app = create_app(store, self.config, secret="test-secret-" + str(id(self)))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    access_log=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the review server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(10)
