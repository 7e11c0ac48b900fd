"""Review web app page response times at 10k pending items per queue (run by `make bench`; prints JSON).

Fills a store with ``--items`` pending rubric drafts, fact-check variants (each with its span check,
five filter verdicts and a panel decision, as ``factbench build`` stores them) and preference pairs,
then times the app's pages in-process (Starlette's test client: the app's own work, no network):
the home page (progress counts), claiming the next item of each queue (skip + next), each item page,
a decision, and the admin page. Median and p95 in milliseconds over ``--repeat`` requests each, on
SQLite and on PostgreSQL (the server of CAREALIGN_TEST_PG_URL; skipped with its reason when none
answers).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from fastapi.testclient import TestClient  # noqa: E402

from agents.rubric import Rubric  # noqa: E402
from carealign.web.app import create_app  # noqa: E402
from carealign.web.auth import add_account, change_password  # noqa: E402
from carealign.web.configuration import ReviewConfig  # noqa: E402
from store import Store  # noqa: E402
from store.factbench import DECISION_KIND, FILTER_KIND, SPAN_CRITERION, SPAN_KIND  # noqa: E402
from store.records import add_pairs, create_run, insert_llm_calls, upsert_items  # noqa: E402
from store.review import user_by_name  # noqa: E402
from store.rubrics import add_rubric  # noqa: E402
from tests.perf.bench_store import drop_pg, pg_database  # noqa: E402

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
CRITERIA = ("real_error", "detectable", "natural", "single_error", "original_correct")
RUBRIC = Rubric.model_validate({"criteria": [
    {"id": "dose", "text": "States the maximum daily dose.", "kind": "proficiency", "weight": 0.6},
    {"id": "doctor", "text": "Advises seeing a doctor.", "kind": "proficiency", "weight": 0.4},
    {"id": "overdose", "text": "Recommends an overdose.", "kind": "veto"}]}).model_dump(mode="json")


def fill(store: Store, n: int) -> dict[str, float]:
    """``n`` pending items in each queue; seconds per queue."""
    took = {}
    t = time.perf_counter()
    with store.session() as s:
        for i in range(n):
            add_rubric(s, instruction=[{"role": "user", "content": f"Question {i}: how much paracetamol?"}],
                       rubric=RUBRIC, origin="generated", status="pending", in_pool=False, language="en")
    took["rubric"] = time.perf_counter() - t

    t = time.perf_counter()
    with store.session() as s:
        run_id = create_run(s, "factbench-build", {"bench": "review pages"})
        texts = [f"Case {i}: paracetamol may be taken at 1 g every 6 hours. Do not exceed 4 g a day."
                 for i in range(n)]
        item_ids = upsert_items(s, "src", [{"external_id": f"s{i}", "payload": {"text": t_, "lang": "en"}}
                                           for i, t_ in enumerate(texts)])
    from sqlalchemy import insert  # the bench fills by bulk insert, as bench_trace does

    from store.models import Candidate, Judgment

    calls = insert_llm_calls(store, [{"request_hash": f"h{i}", "run_id": run_id, "item_id": item_ids[i],
                                      "model": "judge", "messages": [], "params": {}} for i in range(n)])
    with store.session() as s:
        cands = [int(c) for c in s.execute(insert(Candidate).returning(Candidate.id, sort_by_parameter_order=True), [
            {"run_id": run_id, "item_id": item_ids[i], "llm_call_id": calls[i], "model": "injector",
             "text": texts[i].replace("1 g", "5 g", 1), "text_hash": f"v{i}"} for i in range(n)]).scalars()]
        rows = []
        for i, cid in enumerate(cands):
            start = texts[i].index("1 g")
            base = {"run_id": run_id, "candidate_id": cid, "llm_call_id": calls[i], "judge_model": "judge"}
            rows.append({**base, "criterion": SPAN_CRITERION, "criterion_kind": SPAN_KIND, "met": True, "details": {
                "error_type": "numeric/dosage", "injection": {"start": start, "end": start + 3, "variant_start": start,
                                                              "variant_end": start + 3, "rationale": "too much"}}})
            for c in CRITERIA:
                rows.append({**base, "criterion": c, "criterion_kind": FILTER_KIND, "met": True, "reason": "ok",
                             "details": {"round": 1}})
            rows.append({**base, "criterion": "panel@r1", "criterion_kind": DECISION_KIND, "met": True,
                         "details": {"round": 1, "passed": dict.fromkeys(CRITERIA, True)}})
        for k in range(0, len(rows), 5000):
            s.execute(insert(Judgment), rows[k:k + 5000])
    took["variant"] = time.perf_counter() - t

    t = time.perf_counter()
    with store.session() as s:
        add_pairs(s, [{"kind": "rubric", "run_id": run_id, "item_id": item_ids[i],
                       "prompt": [{"role": "user", "content": f"Question {i}"}], "chosen": f"good answer {i}",
                       "rejected": f"bad answer {i}", "margin": 0.5, "language": "en"} for i in range(n)])
    took["pair"] = time.perf_counter() - t
    return {k: round(v, 2) for k, v in took.items()}


def timed(fn, repeat: int) -> dict[str, float]:
    ms = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ms.append((time.perf_counter() - t) * 1000)
    ms.sort()
    return {"median_ms": round(statistics.median(ms), 2), "p95_ms": round(ms[max(0, int(len(ms) * 0.95) - 1)], 2),
            "n": repeat}


def bench(store: Store, n: int, repeat: int) -> dict:
    out: dict = {"items_per_queue": n, "fill_seconds": fill(store, n)}
    add_account(store, "bench-admin", "admin", 12)
    password = "bench admin's own password"  # the one-time one is replaced, as at a first login
    assert change_password(store, user_by_name(store, "bench-admin"), password, password, 12) is None
    c = TestClient(create_app(store, ReviewConfig(), secret="bench"))
    token = CSRF.search(c.get("/login").text).group(1)
    assert c.post("/login", data={"csrf": token, "name": "bench-admin", "password": password},
                  follow_redirects=False).status_code == 303
    csrf = CSRF.search(c.get("/").text).group(1)

    def ok(r, code=200):
        assert r.status_code == code, (r.status_code, r.text[:300])
        assert code != 303 or r.headers["location"] != "/password"
        assert code != 200 or "Choose your password" not in r.text
        return r

    pages = {"home": timed(lambda: ok(c.get("/")), repeat)}
    for q in ("rubric", "variant", "pair"):
        held = [int(ok(c.get(f"/q/{q}/next", follow_redirects=False), 303).headers["location"].rsplit("/", 1)[1])]

        def claim_next(q: str = q, held: list[int] = held) -> None:
            ok(c.post(f"/q/{q}/{held[0]}/skip", data={"csrf": csrf}, follow_redirects=False), 303)
            held[0] = int(ok(c.get(f"/q/{q}/next", follow_redirects=False), 303).headers["location"].rsplit("/", 1)[1])

        pages[f"{q}_claim_next"] = timed(claim_next, repeat)
        pages[f"{q}_item_page"] = timed(lambda q=q, held=held: ok(c.get(f"/q/{q}/{held[0]}")), repeat)
    decisions = {"rubric": {"action": "approve"}, "pair": {"action": "ok"},
                 "variant": {f"v-{k}": "agree" for k in CRITERIA}}
    for q, form in decisions.items():
        def decide(q: str = q, form: dict = form) -> None:
            item = int(ok(c.get(f"/q/{q}/next", follow_redirects=False), 303).headers["location"].rsplit("/", 1)[1])
            ok(c.post(f"/q/{q}/{item}", data={"csrf": csrf, **form}, follow_redirects=False), 303)

        pages[f"{q}_decide_and_next"] = timed(decide, repeat)
    pages["admin"] = timed(lambda: ok(c.get("/admin")), repeat)
    out["pages"] = pages
    c.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=10_000, help="pending items per queue")
    ap.add_argument("--repeat", type=int, default=50, help="requests per page")
    ap.add_argument("--no-postgres", action="store_true")
    args = ap.parse_args()
    result: dict = {"benchmark": "review_pages"}
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(str(Path(tmp) / "review.db"))
        store.ensure_schema()
        result["sqlite"] = bench(store, args.items, args.repeat)
        store.dispose()
    url, problem = (None, "--no-postgres") if args.no_postgres else pg_database()
    if url is None:
        result["postgresql"] = {"skipped": problem}
    else:
        try:
            pg = Store(url)
            pg.ensure_schema()
            result["postgresql"] = bench(pg, args.items, args.repeat)
            pg.dispose()
        finally:
            drop_pg(url)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
