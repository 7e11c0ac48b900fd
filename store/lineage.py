"""Lineage: from a trained model, a run, a pair or an input item back to everything that made it.

The links all exist in the store (training run -> ``training_pairs`` -> pairs -> candidates and
judgments -> LLM calls -> runs and items); these functions follow them with primary-key and indexed
lookups only (no scan of ``llm_calls``, ``candidates``, ``judgments`` or ``preference_pairs``), so a
trace costs the same on a store of a million calls as on a small one. ``runs`` is the one table
read by prefix (a run id prefix, one row per command run).

Every trace is plain JSON-ready data (``carealign trace --json`` prints it as is; the terminal tree
is drawn from it by ``carealign.cli_trace``). Texts written by models are returned verbatim: the
caller escapes them for display.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from store.db import CHUNK, Store, chunked, insert_ignore
from store.errors import StoreError
from store.models import (
    Candidate,
    CandidateScore,
    CheckAnswer,
    Item,
    Judgment,
    LLMCall,
    PairFlag,
    PreferencePair,
    RubricRecord,
    RubricReview,
    Run,
    TrainingPair,
    TreeNode,
)
from store.records import sha256_of
from store.rubrics import instruction_hash

TARGET_KINDS = ("pair", "run", "item")
MIN_RUN_PREFIX = 6  # a bare run id prefix shorter than this is too likely to be a pair id; write run:PREFIX
CALL_COLUMNS = (LLMCall.id, LLMCall.run_id, LLMCall.item_id, LLMCall.role, LLMCall.prompt_name, LLMCall.prompt_hash,
                LLMCall.model, LLMCall.base_url, LLMCall.params, LLMCall.ok, LLMCall.error, LLMCall.prompt_tokens,
                LLMCall.completion_tokens, LLMCall.attempts, LLMCall.created_at)


def pair_ids_sha256(ids: Iterable[int]) -> str:
    """The fingerprint of a set of pair ids (the manifest's ``pair_ids_sha256``): order-free."""
    return hashlib.sha256(",".join(str(i) for i in sorted(ids)).encode()).hexdigest()


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


# -- the training run's data --------------------------------------------------------------------
def record_training_pairs(session: Session, run_id: str, train_ids: Sequence[int], eval_ids: Sequence[int]) -> None:
    """Store the pairs a training run used and their split (idempotent)."""
    rows = [{"run_id": run_id, "pair_id": int(i), "split": "train"} for i in train_ids]
    rows += [{"run_id": run_id, "pair_id": int(i), "split": "eval"} for i in eval_ids]
    for start in range(0, len(rows), CHUNK):
        insert_ignore(session, TrainingPair, rows[start:start + CHUNK], ["run_id", "pair_id"])


def training_pair_ids(session: Session, run_id: str) -> dict[str, list[int]]:
    """The pair ids a training run recorded, by split, in id order."""
    out: dict[str, list[int]] = {"train": [], "eval": []}
    q = select(TrainingPair.pair_id, TrainingPair.split).where(TrainingPair.run_id == run_id) \
        .order_by(TrainingPair.pair_id)
    for pid, split in session.execute(q):
        out.setdefault(split, []).append(int(pid))
    return out


# -- what a target names ------------------------------------------------------------------------
def resolve_target(store: Store, text: str) -> tuple[str, str]:
    """``(kind, value)`` for a target: ``pair:ID``, ``run:PREFIX``, ``item:EXTERNAL_ID``, or the bare
    text when exactly one of those readings exists (a pair id; a run id or a prefix of at least
    ``MIN_RUN_PREFIX`` characters; an item's external id). Several readings, or none, are an error
    that says what to write."""
    kind, sep, rest = text.partition(":")
    kinds = [kind] if sep and kind in TARGET_KINDS and rest else list(TARGET_KINDS)
    text = rest if kinds != list(TARGET_KINDS) else text
    found: list[tuple[str, str, str]] = []  # kind, value, description
    with store.session() as s:
        if "pair" in kinds and re.fullmatch(r"[0-9]{1,18}", text) and s.get(PreferencePair, int(text)) is not None:
            found.append(("pair", text, f"pair {text}"))
        if "run" in kinds and (len(kinds) == 1 or (len(text) >= MIN_RUN_PREFIX and re.fullmatch(r"[0-9a-f]+", text))):
            runs = s.scalars(select(Run.id).where(Run.id.startswith(text, autoescape=True)).limit(2)).all()
            if len(runs) > 1:
                raise StoreError(f"several runs start with {text!r} in {store.safe_url}; give a longer prefix "
                                 "(see `carealign runs list`)")
            found += [("run", r, f"run {r}") for r in runs]
        if "item" in kinds:
            datasets = s.scalars(select(Item.dataset).where(Item.external_id == text).limit(4)).all()
            if datasets:
                found.append(("item", text, f"item {text!r} (dataset {', '.join(sorted(set(datasets)))})"))
    if not found:
        raise StoreError(f"no {' or '.join(kinds)} {text!r} in {store.safe_url} (a model folder must exist and hold "
                         "its training_manifest.json)")
    if len(found) > 1:
        raise StoreError(f"{text!r} names {' and '.join(d for _, _, d in found)}: write "
                         + " or ".join(f"{k}:{text}" for k, _, _ in found))
    return found[0][0], found[0][1]


def trace(store: Store, text: str, pairs: int = 3) -> dict[str, Any]:
    """The lineage of whatever ``text`` names (see ``resolve_target``); ``pairs`` pairs are traced
    in full where a target has many (the rest are listed by id)."""
    kind, value = resolve_target(store, text)
    if kind == "pair":
        return trace_pair(store, int(value))
    if kind == "item":
        return trace_item(store, value, pairs)
    return trace_run(store, value, pairs)


# -- traces -------------------------------------------------------------------------------------
def trace_pair(store: Store, pair_id: int) -> dict[str, Any]:
    with store.session() as s:
        t = _Tracer(s)
        return {"target": {"kind": "pair", "value": pair_id}, "store": store.safe_url,
                "pair": t.pair(pair_id), "runs": t.run_nodes()}


def trace_item(store: Store, external_id: str, pairs: int = 3) -> dict[str, Any]:
    with store.session() as s:
        t = _Tracer(s)
        items = s.scalars(select(Item).where(Item.external_id == external_id).order_by(Item.id)).all()
        if not items:
            raise StoreError(f"no item with external id {external_id!r} in {store.safe_url}")
        out = []
        for item in items:
            pair_ids = s.scalars(select(PreferencePair.id).where(PreferencePair.item_id == item.id)
                                 .order_by(PreferencePair.id)).all()
            n_candidates = s.scalar(select(func.count()).select_from(Candidate).where(Candidate.item_id == item.id))
            out.append({"item": t.item(item.id), "candidates": int(n_candidates or 0),
                        "pairs": {"ids": list(pair_ids), "traced": [t.pair(p) for p in pair_ids[:pairs]]},
                        "check_answers": t.check_answers(item.id)})
        return {"target": {"kind": "item", "value": external_id}, "store": store.safe_url, "items": out,
                "runs": t.run_nodes()}


def trace_run(store: Store, run_id: str, pairs: int = 3, manifest: dict[str, Any] | None = None,
              manifest_path: str | None = None) -> dict[str, Any]:
    """A training run (model -> run and config -> pairs), or any other run (what it produced).
    ``manifest``: the model folder's manifest (at ``manifest_path``), when the target was the folder."""
    with store.session() as s:
        run = s.get(Run, run_id)
        if run is None:
            where = f" (named by {manifest_path}; that model was trained on {manifest.get('store_url')})" \
                if manifest else ""
            raise StoreError(f"no run {run_id!r} in {store.safe_url}{where}")
        t = _Tracer(s)
        if run.kind.startswith("train-"):
            body = t.training(run, pairs, manifest)
        else:
            body = t.pipeline_run(run, pairs)
        kind = "training_run" if run.kind.startswith("train-") else "run"
        return {"target": {"kind": kind, "value": run_id}, "store": store.safe_url, **body, "runs": t.run_nodes()}


def _source(source: str | None) -> tuple[str | None, int | None]:
    """``file.jsonl:7`` -> (file, 7); other sources keep their text and no line."""
    if source and re.fullmatch(r".+:\d+", source):
        file, line = source.rsplit(":", 1)
        return file, int(line)
    return source, None


def _call_ids(prov: dict[str, Any], side: str | None = None) -> list[int]:
    """Call ids in a pair's provenance: a list (generate, rubric-prefs) or per side (esc)."""
    got = prov.get("llm_call_ids") or []
    if isinstance(got, dict):
        got = got.get(side, []) if side else [i for ids in got.values() for i in ids]
    return [int(i) for i in got if isinstance(i, int)]


class _Tracer:
    """One session's trace: remembers the runs it met, so each is described once."""

    def __init__(self, session: Session):
        self.s = session
        self.run_ids: set[str] = set()

    def _run(self, run_id: str | None) -> str | None:
        if run_id:
            self.run_ids.add(run_id)
        return run_id

    def run_nodes(self) -> dict[str, dict[str, Any]]:
        out = {}
        for chunk in chunked(self.run_ids):
            for r in self.s.scalars(select(Run).where(Run.id.in_(chunk))):
                out[r.id] = run_node(r)
        return dict(sorted(out.items(), key=lambda kv: kv[1]["started_at"] or ""))

    # -- calls, items, rubrics --------------------------------------------------------------------
    def calls(self, ids: Iterable[int]) -> dict[int, dict[str, Any]]:
        out: dict[int, dict[str, Any]] = {}
        for chunk in chunked(i for i in ids if i is not None):
            for row in self.s.execute(select(*CALL_COLUMNS).where(LLMCall.id.in_(chunk))):
                params = dict(row.params or {})
                out[row.id] = {
                    "id": row.id, "model": row.model, "role": row.role, "prompt_name": row.prompt_name,
                    "prompt_hash": row.prompt_hash, "params": params, "seed": params.get("seed"),
                    "run_id": self._run(row.run_id), "item_id": row.item_id, "base_url": row.base_url, "ok": row.ok,
                    "error": row.error, "prompt_tokens": row.prompt_tokens, "completion_tokens": row.completion_tokens,
                    "attempts": row.attempts, "created_at": _iso(row.created_at)}
        return out

    def item(self, item_id: int | None) -> dict[str, Any] | None:
        item = self.s.get(Item, item_id) if item_id is not None else None
        if item is None:
            return None
        file, line = _source(item.source)
        return {"id": item.id, "dataset": item.dataset, "external_id": item.external_id, "source": item.source,
                "file": file, "line": line, "content_hash": item.content_hash, "created_at": _iso(item.created_at),
                "payload": item.payload}

    def rubric(self, payload: dict[str, Any], prompt: list[Any], prov: dict[str, Any]) -> dict[str, Any] | None:
        """The rubric a pair was judged against: a reviewed one from the store (``rubric_id``), one
        that came with the input (and its stored record, if it was imported too), or a rubric file
        by name (generate)."""
        rubric, rid = payload.get("rubric"), payload.get("rubric_id")
        if rid is None and isinstance(rubric, dict):
            rid = self.s.scalar(select(RubricRecord.id).where(RubricRecord.instruction_hash == instruction_hash(prompt),
                                                              RubricRecord.rubric_hash == sha256_of(rubric)))
        if not isinstance(rubric, dict):
            return {"source": "file", "name": prov["rubric"]} if prov.get("rubric") else None
        criteria = [{k: c.get(k) for k in ("id", "kind", "weight", "dimension", "text", "origin")}
                    for c in rubric.get("criteria", [])]
        history, seen, next_id = [], set(), rid
        while next_id is not None and next_id not in seen:  # the rubric, then the draft it was edited from
            seen.add(next_id)
            rec = self.s.get(RubricRecord, next_id)
            if rec is None:
                break
            reviews = self.s.scalars(select(RubricReview).where(RubricReview.rubric_id == rec.id)
                                     .order_by(RubricReview.id)).all()
            history.append({"id": rec.id, "origin": rec.origin, "status": rec.status, "writer_model": rec.writer_model,
                            "llm_call_id": rec.llm_call_id, "run_id": self._run(rec.run_id), "parent_id": rec.parent_id,
                            "rubric_hash": rec.rubric_hash, "created_at": _iso(rec.created_at),
                            "reviews": [{"id": r.id, "decision": r.decision, "reviewer": r.reviewer, "reason": r.reason,
                                         "result_rubric_id": r.result_rubric_id, "created_at": _iso(r.created_at)}
                                        for r in reviews]})
            next_id = rec.parent_id
        return {"source": "store" if payload.get("rubric_id") is not None else "input", "rubric_id": rid,
                "rubric_hash": sha256_of(rubric), "criteria": criteria,
                "human_edited_criteria": sum(c.get("origin") == "human_edited" for c in criteria),
                "history": history}

    # -- pairs --------------------------------------------------------------------------------------
    def pair(self, pair_id: int) -> dict[str, Any]:
        p = self.s.get(PreferencePair, pair_id)
        if p is None:
            raise StoreError(f"no pair {pair_id}")
        prov = dict(p.provenance or {})
        cands = {c.id: c for c in self.s.scalars(select(Candidate).where(
            Candidate.id.in_([i for i in (p.chosen_candidate_id, p.rejected_candidate_id) if i is not None])))}
        judgments = list(self.s.scalars(select(Judgment).where(Judgment.candidate_id.in_(list(cands)))
                                        .order_by(Judgment.id))) if cands else []
        scores = list(self.s.scalars(select(CandidateScore).where(CandidateScore.candidate_id.in_(list(cands)))
                                     .order_by(CandidateScore.id))) if cands else []
        search = self.search(prov) if "tree_id" in prov else None
        calls = self.calls([c.llm_call_id for c in cands.values()] + [j.llm_call_id for j in judgments]
                           + _call_ids(prov))
        decided = set(prov.get("judgment_ids") or [])
        trained = self.s.execute(select(TrainingPair.run_id, TrainingPair.split)
                                 .where(TrainingPair.pair_id == p.id)).all()
        item = self.item(p.item_id)

        def side(name: str, text: str, cid: int | None) -> dict[str, Any]:
            c = cands.get(cid) if cid is not None else None
            out: dict[str, Any] = {"text": text, "candidate": None, "call": None, "judgments": [], "scores": []}
            if c is not None:
                out["candidate"] = {"id": c.id, "model": c.model, "sample_index": c.sample_index,
                                    "choice_index": c.choice_index, "run_id": self._run(c.run_id),
                                    "text_hash": c.text_hash}
                out["call"] = calls.get(c.llm_call_id)
                out["judgments"] = [{
                    "id": j.id, "criterion": j.criterion, "criterion_id": (j.details or {}).get("criterion_id"),
                    "criterion_kind": j.criterion_kind, "score": j.score, "met": j.met, "reason": j.reason,
                    "judge_model": j.judge_model, "run_id": self._run(j.run_id), "decided_pair": j.id in decided,
                    "details": j.details, "call": calls.get(j.llm_call_id)}
                    for j in judgments if j.candidate_id == c.id]
                out["scores"] = [{"job_key": sc.job_key, "s1": sc.s1, "s2": sc.s2, "s3": sc.s3,
                                  "grader_model": sc.grader_model, "run_id": self._run(sc.run_id)}
                                 for sc in scores if sc.candidate_id == c.id]
            if search is not None:
                out["node"] = search["nodes"].get(prov.get(f"{name}_path"))
                out["calls"] = [calls[i] for i in _call_ids(prov, name) if i in calls]
            return out

        return {
            "id": p.id, "kind": p.kind, "margin": p.margin, "margins": p.margins, "language": p.language,
            "run_id": self._run(p.run_id), "created_at": _iso(p.created_at), "prompt": p.prompt,
            "provenance": prov,
            "trained_by": [{"run_id": self._run(r), "split": sp} for r, sp in trained],
            "flags": [{"reviewer": f.reviewer, "reason": f.reason, "created_at": _iso(f.created_at)}
                      for f in self.s.scalars(select(PairFlag).where(PairFlag.pair_id == p.id).order_by(PairFlag.id))],
            "chosen": side("chosen", p.chosen, p.chosen_candidate_id),
            "rejected": side("rejected", p.rejected, p.rejected_candidate_id),
            "rubric": self.rubric(item["payload"] if item else {}, p.prompt, prov),
            "search": search, "item": item,
        }

    def search(self, prov: dict[str, Any]) -> dict[str, Any]:
        """An ESC pair's search: its tree and the nodes of both turns and their parent."""
        paths = [prov.get(k) for k in ("parent_path", "chosen_path", "rejected_path") if prov.get(k)]
        nodes = {}
        for n in self.s.scalars(select(TreeNode).where(TreeNode.tree_id == prov["tree_id"], TreeNode.path.in_(paths))):
            nodes[n.path] = {"id": n.id, "path": n.path, "depth": n.depth, "strategy": n.action, "q": n.value,
                             "n": n.visits, "ended": n.ended, "evaluated": n.evaluated,
                             "llm_call_ids": list(n.llm_call_ids or []), "run_id": self._run(n.run_id),
                             "item_id": n.item_id}
        return {"tree_id": prov["tree_id"], "tree_key": prov.get("tree_key"), "parent_path": prov.get("parent_path"),
                "strategy_set": prov.get("strategy_set"), "thresholds": prov.get("thresholds"), "nodes": nodes}

    def check_answers(self, item_id: int) -> list[dict[str, Any]]:
        """Every fact-checking answer about an item (each agent, round and method), with its call."""
        rows = list(self.s.scalars(select(CheckAnswer).where(CheckAnswer.item_id == item_id).order_by(CheckAnswer.id)))
        calls = self.calls(r.llm_call_id for r in rows)
        return [{"id": r.id, "job_key": r.job_key, "method": r.method, "role": r.role, "round": r.round,
                 "agent": r.agent, "verdict": r.verdict, "sentence_id": r.sentence_id, "span": r.span,
                 "correction": r.correction, "confidence": r.confidence, "model": r.model,
                 "run_id": self._run(r.run_id), "call": calls.get(r.llm_call_id)} for r in rows]

    # -- runs -----------------------------------------------------------------------------------
    def training(self, run: Run, pairs: int, manifest: dict[str, Any] | None) -> dict[str, Any]:
        self._run(run.id)
        ids, source = training_pair_ids(self.s, run.id), "store"
        if not ids["train"] and manifest is not None:  # a run recorded before the store kept its pairs
            ids = {"train": list(manifest.get("pair_ids", [])), "eval": list(manifest.get("eval_pair_ids", []))}
            source = "manifest"
        recorded = (run.stats or {}).get("pair_ids_sha256")
        summary: dict[str, dict[str, int]] = {"kinds": {}, "runs": {}, "languages": {}}
        groups = (PreferencePair.kind, PreferencePair.run_id, PreferencePair.language)
        if source == "store":  # one join over the run's rows
            queries = [select(*groups, func.count()).join(TrainingPair, TrainingPair.pair_id == PreferencePair.id)
                       .where(TrainingPair.run_id == run.id, TrainingPair.split == "train").group_by(*groups)]
        else:
            queries = [select(*groups, func.count()).where(PreferencePair.id.in_(chunk)).group_by(*groups)
                       for chunk in chunked(ids["train"])]
        for q in queries:
            for kind, rid, lang, n in self.s.execute(q):
                for key, value in (("kinds", kind), ("runs", self._run(rid)), ("languages", lang or "unknown")):
                    summary[key][value] = summary[key].get(value, 0) + int(n)
        config = dict(run.config or {})
        model = {"path": config.get("out_dir") or (run.stats or {}).get("out_dir"),
                 "base_model": config.get("base_model"), "method": run.kind.removeprefix("train-")}
        return {"model": model, "training_run": {**run_node(run), "config": config, "stats": run.stats},
                "pairs": {"source": source, "train": ids["train"], "eval": ids["eval"],
                          "sha256": pair_ids_sha256(ids["train"]), "recorded_sha256": recorded,
                          "sha256_matches": recorded == pair_ids_sha256(ids["train"]) if recorded else None,
                          "manifest_matches": None if manifest is None else
                          sorted(manifest.get("pair_ids", [])) == sorted(ids["train"]),
                          "summary": summary, "traced": [self.pair(p) for p in ids["train"][:pairs]]}}

    def pipeline_run(self, run: Run, pairs: int) -> dict[str, Any]:
        self._run(run.id)
        # index-only counts (a failed-call count would read every call row of the run: see `runs show`)
        counts = {name: int(self.s.scalar(select(func.count()).select_from(col.table).where(col == run.id)) or 0)
                  for name, col in (("llm_calls", LLMCall.run_id), ("candidates", Candidate.run_id),
                                    ("judgments", Judgment.run_id), ("pairs", PreferencePair.run_id),
                                    ("check_answers", CheckAnswer.run_id))}
        pair_ids = self.s.scalars(select(PreferencePair.id).where(PreferencePair.run_id == run.id)
                                  .order_by(PreferencePair.id).limit(pairs)).all()
        trained = self.s.execute(
            select(TrainingPair.run_id, TrainingPair.split, func.count()).join(
                PreferencePair, PreferencePair.id == TrainingPair.pair_id)
            .where(PreferencePair.run_id == run.id).group_by(TrainingPair.run_id, TrainingPair.split)).all()
        answers = self.s.execute(
            select(CheckAnswer.method, CheckAnswer.role, CheckAnswer.verdict, func.count())
            .where(CheckAnswer.run_id == run.id).group_by(CheckAnswer.method, CheckAnswer.role, CheckAnswer.verdict)
        ).all()
        return {"run": {**run_node(run), "config": run.config, "stats": run.stats, "counts": counts},
                "pairs": {"total": counts["pairs"], "traced": [self.pair(p) for p in pair_ids]},
                "trained_by": [{"run_id": self._run(r), "split": sp, "pairs": int(n)} for r, sp, n in trained],
                "check_answers": [{"method": m, "role": r, "verdict": v, "answers": int(n)} for m, r, v, n in answers]}


def run_node(run: Run) -> dict[str, Any]:
    config = run.config or {}
    return {"id": run.id, "kind": run.kind, "status": run.status, "job_key": run.job_key,
            "code_version": run.code_version, "config_hash": run.config_hash, "started_at": _iso(run.started_at),
            "finished_at": _iso(run.finished_at), "error": run.error,
            "models": {role: v.get("model") for role, v in (config.get("resolved") or {}).items()
                       if isinstance(v, dict)}}
