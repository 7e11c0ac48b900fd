"""`carealign trace` on a large store (run by `make bench`; prints JSON).

Builds a SQLite store shaped like a long `generate` job (per input item: 4 generator calls, 4 judge
calls, 2 failed calls; 4 candidates, 3 judgments each, 1 pair) with ``--calls`` LLM calls (default
1,000,000), by bulk insert at the current schema, plus a training run that used half of the pairs.
Then times ``store.lineage.trace`` for each kind of target (a pair, an input item, the generate run,
the training run) and the whole ``carealign trace --json`` command in-process, ``--repeat`` times
each, and counts the statements and any full scan of a large table in their SQLite query plans.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from typer.testing import CliRunner  # noqa: E402

from agents.prompts import prompt_hash  # noqa: E402
from carealign.cli import app  # noqa: E402
from store import Store  # noqa: E402
from store.lineage import pair_ids_sha256, trace, trace_run  # noqa: E402
from store.records import code_version  # noqa: E402
from tests.lineage_stores import full_scans, sql_plans  # noqa: E402

CALLS_PER_ITEM, CANDIDATES, CRITERIA = 10, 4, ("accuracy", "safety", "clarity")
NOW = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
GEN_RUN, TRAIN_RUN = "a" * 32, "b" * 32


def _j(obj) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _rows(n_items: int):
    """Yield (table, rows) batches for ``n_items`` items, ids assigned here (1-based)."""
    answer_hash, judge_hash = prompt_hash("answer"), prompt_hash("judge")
    batch = 5_000
    for start in range(0, n_items, batch):
        items, calls, cands, judgments, pairs = [], [], [], [], []
        for i in range(start, min(start + batch, n_items)):
            item_id, call0, cand0 = i + 1, i * CALLS_PER_ITEM + 1, i * CANDIDATES + 1
            question = f"Question {i}: is a resting heart rate of {50 + i % 50} normal?"
            items.append((item_id, "questions", hashlib.sha256(question.encode()).hexdigest(), f"q-{i}",
                          _j({"prompt": question, "lang": "en"}), f"questions.jsonl:{i + 1}", NOW))
            messages = _j([{"role": "user", "content": question}])
            for k in range(CALLS_PER_ITEM):
                generator, judge = k < CANDIDATES, CANDIDATES <= k < 2 * CANDIDATES
                params = {"temperature": 0.7 if generator else 0.0, "top_p": 1.0, "max_tokens": 512, "n": 1,
                          "seed": k if generator else 0}
                ok = generator or judge
                calls.append((call0 + k, hashlib.sha256(f"{i}:{k}".encode()).hexdigest(), GEN_RUN, item_id,
                              "generator" if generator else "judge", "answer" if generator else "judge",
                              answer_hash if generator else judge_hash, "gen-model" if generator else "judge-model",
                              messages, _j(params), _j([f"answer {k} to question {i}"]) if ok else None,
                              30, 40 if ok else 0, 120.0, 1 if ok else 3, 1 if ok else 0, None if ok else "timeout",
                              NOW))
            for k in range(CANDIDATES):
                cid = cand0 + k
                cands.append((cid, GEN_RUN, item_id, call0 + k, 0, k, "gen-model", f"answer {k} to question {i}",
                              hashlib.sha256(f"{i}:{k}".encode()).hexdigest(), NOW))
                for c, crit in enumerate(CRITERIA):
                    judgments.append(((cid - 1) * len(CRITERIA) + c + 1, GEN_RUN, cid, call0 + CANDIDATES + k, crit,
                                      "generic", float(9 - k), None, "ok", _j({"mode": "all_in_one"}), "judge-model",
                                      NOW))
            jids = [(cand0 - 1 + k) * len(CRITERIA) + c + 1 for k in (0, 1) for c in range(len(CRITERIA))]
            pairs.append((item_id, hashlib.sha256(f"pair {i}".encode()).hexdigest(), "generic", GEN_RUN, item_id,
                          messages, f"answer 0 to question {i}", f"answer 1 to question {i}", cand0, cand0 + 1, 1.0,
                          _j({c: 1.0 for c in CRITERIA}), "en",
                          _j({"rubric": "generic_medical", "llm_call_ids": [call0, call0 + 1], "judgment_ids": jids}),
                          NOW))
        yield "items", items
        yield "llm_calls", calls
        yield "candidates", cands
        yield "judgments", judgments
        yield "preference_pairs", pairs


INSERTS = {
    "items": "INSERT INTO items (id, dataset, content_hash, external_id, payload, source, created_at) "
             "VALUES (?,?,?,?,?,?,?)",
    "llm_calls": "INSERT INTO llm_calls (id, request_hash, run_id, item_id, role, prompt_name, prompt_hash, model, "
                 "messages, params, choices, prompt_tokens, completion_tokens, latency_ms, attempts, ok, error, "
                 "created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
    "candidates": "INSERT INTO candidates (id, run_id, item_id, llm_call_id, choice_index, sample_index, model, text, "
                  "text_hash, created_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
    "judgments": "INSERT INTO judgments (id, run_id, candidate_id, llm_call_id, criterion, criterion_kind, score, met, "
                 "reason, details, judge_model, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
    "preference_pairs": "INSERT INTO preference_pairs (id, pair_hash, kind, run_id, item_id, prompt, chosen, "
                        "rejected, chosen_candidate_id, rejected_candidate_id, margin, margins, language, provenance, "
                        "created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
}


def build(path: Path, calls: int) -> dict:
    """A store with ``calls`` LLM calls; returns its row counts and how long building took."""
    t = time.perf_counter()
    store = Store(str(path))
    store.ensure_schema()
    n_items = calls // CALLS_PER_ITEM
    counts = dict.fromkeys(INSERTS, 0)
    raw = store.engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("PRAGMA synchronous=OFF")
        run_sql = ("INSERT INTO runs (id, kind, job_key, status, config, config_hash, code_version, started_at, "
                   "finished_at, stats) VALUES (?,?,?,?,?,?,?,?,?,?)")
        n_train = n_items // 2
        train_ids = list(range(1, n_train + 1))
        train, held = train_ids[: n_train * 9 // 10], train_ids[n_train * 9 // 10:]
        cur.executemany(run_sql, [
            (GEN_RUN, "generate", "job", "completed", _j({"bench": True}), "c" * 64, code_version(), NOW, NOW, "{}"),
            (TRAIN_RUN, "train-rm", None, "completed",
             _j({"data": {"kinds": ["generic"]}, "config": {"max_steps": 100}, "base_model": "base",
                 "out_dir": "/nowhere/models/rm"}), "d" * 64, code_version(), NOW, NOW,
             _j({"final_loss": 0.5, "pair_ids_sha256": pair_ids_sha256(train), "out_dir": "/nowhere/models/rm"})),
        ])
        for table, rows in _rows(n_items):
            cur.executemany(INSERTS[table], rows)
            counts[table] += len(rows)
        cur.executemany("INSERT INTO training_pairs (run_id, pair_id, split) VALUES (?,?,?)",
                        [(TRAIN_RUN, p, "train") for p in train] + [(TRAIN_RUN, p, "eval") for p in held])
        counts["training_pairs"] = n_train
        raw.commit()
    finally:
        raw.close()
    store.dispose()
    return {**counts, "build_seconds": round(time.perf_counter() - t, 1), "db_bytes": path.stat().st_size}


def timed(fn, repeat: int) -> dict:
    seconds = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - t)
    return {"median_ms": round(statistics.median(seconds) * 1000, 1), "max_ms": round(max(seconds) * 1000, 1),
            "repeat": repeat}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=1_000_000, help="LLM calls in the store")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--pairs", type=int, default=3, help="pairs traced in full per target (trace --pairs)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.db"
        out: dict = {"benchmark": "trace", "store": build(path, args.calls)}
        n_items = args.calls // CALLS_PER_ITEM
        middle = n_items // 2
        targets = {"pair": f"pair:{middle}", "item": f"item:q-{middle}", "generate_run": GEN_RUN,
                   "training_run": TRAIN_RUN}
        store = Store(str(path))
        out["trace"] = {}
        for name, target in targets.items():
            def run_trace(target=target) -> dict:
                return trace(store, target, args.pairs) if target != TRAIN_RUN else trace_run(store, target, args.pairs)

            with sql_plans(store) as plans:  # once with the plans recorded, then timed
                run_trace()
            out["trace"][name] = {"target": target, **timed(run_trace, args.repeat), "statements": len(plans),
                                  "full_scans_of_large_tables": len(full_scans(plans))}
        store.dispose()
        runner = CliRunner()
        for name, cmd in {"cli_pair_json": ["trace", targets["pair"], "--json"],
                          "cli_pair_tree": ["trace", targets["pair"]],
                          "cli_training_run_json": ["trace", TRAIN_RUN, "--json"]}.items():
            def invoke(cmd=cmd) -> None:
                res = runner.invoke(app, ["--db", str(path), *cmd])
                assert res.exit_code == 0, res.output
            out[name] = {"command": "carealign --db big.db " + " ".join(cmd), **timed(invoke, args.repeat)}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
