"""Store throughput (run by `make bench`; prints JSON).

- pairs inserted per second through ``store.records.add_pairs`` (the idempotent writer workflows
  use), in transactions of ``--batch`` pairs, on SQLite and on PostgreSQL (a throw-away database on
  the server of CAREALIGN_TEST_PG_URL; skipped with its reason when none answers);
- time to export 100k pairs to JSONL (and Parquet) with ``store.export.export_pairs``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from store import Store  # noqa: E402
from store.export import export_pairs  # noqa: E402
from store.records import add_pairs, create_run, upsert_items  # noqa: E402

PG_URL = os.environ.get("CAREALIGN_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def make_pairs(run_id: str, item_ids: list[int], start: int, n: int) -> list[dict]:
    return [
        {
            "kind": "generic", "run_id": run_id, "item_id": item_ids[i % len(item_ids)],
            "prompt": [{"role": "user", "content": f"Question {i}: is a resting heart rate of {50 + i % 50} normal?"}],
            "chosen": f"Answer {i}: yes, between 60 and 100 beats per minute is typical for adults.",
            "rejected": f"Answer {i}: no.", "margin": 1.0 + (i % 7), "language": "en",
            "margins": {"accuracy": 2.0}, "provenance": {"llm_call_ids": [i, i + 1]},
        }
        for i in range(start, start + n)
    ]


def seed_run(store: Store) -> tuple[str, list[int]]:
    with store.session() as s:
        run_id = create_run(s, "bench", {"bench": True})
        items = upsert_items(s, "bench", [{"payload": {"prompt": f"q{i}"}} for i in range(100)])
    return run_id, items


def bench_insert(store: Store, n: int, batch: int) -> dict:
    run_id, items = seed_run(store)
    batches = [make_pairs(run_id, items, start, min(batch, n - start)) for start in range(0, n, batch)]
    t = time.perf_counter()
    new = 0
    for rows in batches:
        with store.session() as s:
            new += add_pairs(s, rows)
    seconds = time.perf_counter() - t
    t = time.perf_counter()
    with store.session() as s:  # the same pairs again: idempotent, nothing new
        again = sum(add_pairs(s, rows) for rows in batches[:5])
    return {"pairs": n, "batch": batch, "new": new, "seconds": round(seconds, 3),
            "pairs_per_s": round(n / seconds), "reinserted_new": again,
            "reinsert_pairs_per_s": round(sum(len(b) for b in batches[:5]) / (time.perf_counter() - t))}


def pg_database() -> tuple[str | None, str | None]:
    try:
        admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
        name = f"carealign_bench_{uuid.uuid4().hex[:10]}"
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        return make_url(PG_URL).set(database=name).render_as_string(hide_password=False), None
    except Exception as exc:  # noqa: BLE001
        return None, f"PostgreSQL not reachable: {type(exc).__name__}"


def drop_pg(url: str) -> None:
    """Drop a database made by ``pg_database``, ending any connection still open to it."""
    name = make_url(url).database
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d "
                       "AND pid <> pg_backend_pid()"), {"d": name})
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


def throwaway_database() -> tuple[str, Callable[[], None]]:
    """A new PostgreSQL database and the function that drops it; PostgreSQL must be reachable."""
    url, problem = pg_database()
    if url is None:
        raise SystemExit(f"{problem} at {make_url(PG_URL).render_as_string(hide_password=True)}")
    return url, lambda: drop_pg(url)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--insert", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--export", type=int, default=100_000)
    args = ap.parse_args()
    out: dict = {"benchmark": "store"}
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(str(Path(tmp) / "bench.db"))
        store.ensure_schema()
        out["insert_sqlite"] = bench_insert(store, args.insert, args.batch)
        # export: fill up to --export pairs, then time JSONL and Parquet
        have = args.insert
        run_id, items = seed_run(store)
        while have < args.export:
            n = min(10_000, args.export - have)
            with store.session() as s:
                add_pairs(s, make_pairs(run_id, items, 10_000_000 + have, n))
            have += n
        for fmt in ("jsonl", "parquet"):
            t = time.perf_counter()
            n = export_pairs(store, Path(tmp) / f"pairs.{fmt}", fmt)
            out[f"export_{fmt}"] = {"pairs": n, "seconds": round(time.perf_counter() - t, 3),
                                    "bytes": (Path(tmp) / f"pairs.{fmt}").stat().st_size}
        store.dispose()
    url, problem = pg_database()
    if url is None:
        out["insert_postgresql"] = {"skipped": problem}
    else:
        try:
            pg = Store(url)
            pg.ensure_schema()
            out["insert_postgresql"] = bench_insert(pg, args.insert, args.batch)
            pg.dispose()
        finally:
            drop_pg(url)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
