"""Orchestration CPU per LLM request: ``carealign generate`` (and rubric-prefs, factcheck) against a
fast fake model server, next to a bare ``AsyncOpenAI`` loop (run by hand or by `make bench`; prints
JSON).

Every measured thing runs in its own process, apart from the fake server (also its own process, so
its CPU is never counted):

- each pipeline runs as the real command line (``carealign.cli``'s app, in a child process); its CPU
  is the child's user+sys time from just before the command starts to just after it ends, so the
  start-up (imports) is left out; requests are the ``llm_calls`` rows it recorded (a fresh store:
  no cache hits);
- the bare loop sends the same number of requests at the same concurrency with ``openai.AsyncOpenAI``
  and nothing else (no store, no graph);
- generate runs on SQLite and on a throw-away PostgreSQL database (``CAREALIGN_TEST_PG_URL``, default
  127.0.0.1:5432, as ``tests/conftest.py``), and once more under cProfile over fewer items: the top
  functions by self time (every thread: the event loop's and the database threads') are written
  beside the JSON (``--out``) so the next change starts from data.

CPU time, not wall time, is the figure: on a shared machine wall time says more about the neighbours.
The load average at the start and the end is in the JSON.

    python tests/perf/bench_orchestration.py                       # 3,000 instructions, --n 4
    python tests/perf/bench_orchestration.py --items 300 --no-pg   # while iterating
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import hashlib
import io
import json
import os
import pstats
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

PG_URL = os.environ.get("CAREALIGN_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
JUDGE_CRITERIA = ["accuracy", "safety", "helpfulness", "clarity"]  # the built-in generic_medical rubric
RUBRIC = [{"criterion": "States the maximum daily dose.", "points": 4, "tags": []},
          {"criterion": "Mentions liver risk with alcohol.", "points": 3, "tags": []},
          {"criterion": "Says when to see a doctor.", "points": 2, "tags": []},
          {"criterion": "Uses plain language.", "points": 1, "tags": []},
          {"criterion": "Recommends exceeding the maximum dose.", "points": -10, "tags": []}]


# -- the fake server (its own process) ---------------------------------------------------------------
def responder(body: dict[str, Any]) -> str:
    """Answers every pipeline's prompts: fact-check verdicts, rubric verdicts, judge scores (a hash of
    the answer, so most items form a pair), and candidate answers that differ by seed."""
    from tests.perf.bench_factcheck import responder as factcheck_reply
    from tests.perf.bench_rubric_prefs import responder as rubric_reply

    last, first = body["messages"][-1]["content"], body["messages"][0]["content"]
    if "Text number" in last:
        return factcheck_reply(body)
    if "Response to grade:" in last:
        return rubric_reply(body)
    if "grader" in first:
        h = hashlib.sha256(last.encode()).digest()
        return json.dumps({c: {"score": 1 + h[i] % 9, "reason": "r"} for i, c in enumerate(JUDGE_CRITERIA)})
    return f"Answer seed={body.get('seed')}: {last[:60]}"


def serve(ready_file: str, latency: float, capacity: int) -> None:
    from tests.fake_server import FakeOpenAIServer

    server = FakeOpenAIServer(latency=latency, capacity=capacity)
    server.responder = responder
    server.start()
    Path(ready_file).write_text(json.dumps({"base_url": server.base_url}))
    while True:
        time.sleep(3600)


# -- children: the command, and the bare loop --------------------------------------------------------
def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def child_cli(result_file: str, profile_file: str | None, cli_args: list[str]) -> None:
    from carealign.cli import app  # start-up: imported before the clock starts

    # per-thread CPU time, not wall time: a thread waiting for work or for the socket costs nothing
    prof = cProfile.Profile(time.thread_time) if profile_file else None
    thread_profs: list[cProfile.Profile] = []

    def profile_thread(*_: Any) -> None:  # the database threads' work counts too
        sys.setprofile(None)
        thread_profs.append(cProfile.Profile(time.thread_time))
        thread_profs[-1].enable()

    cpu0, wall0 = cpu_seconds(), time.perf_counter()
    if prof:
        threading.setprofile(profile_thread)
        prof.enable()
    try:
        app(cli_args, standalone_mode=False)
    finally:
        if prof:
            prof.disable()
            threading.setprofile(None)  # type: ignore[arg-type]
    cpu, wall = cpu_seconds() - cpu0, time.perf_counter() - wall0
    if prof:
        stats = pstats.Stats(prof)
        for p in thread_profs:
            p.create_stats()
            stats.add(p)
        stats.dump_stats(profile_file)
    Path(result_file).write_text(json.dumps({"cpu_s": cpu, "wall_s": wall}))


async def bare_loop(base_url: str, requests: int, concurrency: int) -> None:
    import httpx
    from openai import AsyncOpenAI, DefaultAsyncHttpxClient

    http = DefaultAsyncHttpxClient(limits=httpx.Limits(max_connections=concurrency,
                                                       max_keepalive_connections=concurrency))
    client = AsyncOpenAI(base_url=base_url, api_key="bench", max_retries=0, http_client=http)
    sem = asyncio.Semaphore(concurrency)
    system = {"role": "system", "content": "You are a careful, friendly medical assistant. Answer briefly."}

    async def one(i: int) -> None:
        async with sem:
            resp = await client.chat.completions.create(
                model="fake-model", seed=i % 4, temperature=0.7, max_tokens=512,
                messages=[system, {"role": "user", "content": f"Question {i // 4} on fever?"}])
            assert resp.choices[0].message.content

    await asyncio.gather(*(one(i) for i in range(requests)))
    await client.close()


def child_bare(result_file: str, base_url: str, requests: int, concurrency: int) -> None:
    import httpx  # noqa: F401 - start-up: imported before the clock starts
    import openai  # noqa: F401

    cpu0, wall0 = cpu_seconds(), time.perf_counter()
    asyncio.run(bare_loop(base_url, requests, concurrency))
    Path(result_file).write_text(json.dumps({"cpu_s": cpu_seconds() - cpu0, "wall_s": time.perf_counter() - wall0}))


def run_child(args: list[str]) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        out = fh.name
    try:
        subprocess.run([sys.executable, __file__, *args[:1], out, *args[1:]], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL)
        return json.loads(Path(out).read_text())
    finally:
        Path(out).unlink(missing_ok=True)


# -- the driver ---------------------------------------------------------------------------------------
def write_inputs(folder: Path, pipeline: str, items: int) -> tuple[Path, list[str]]:
    """The input file and the command's arguments for one pipeline over ``items`` inputs."""
    if pipeline == "generate":
        rows: list[dict[str, Any]] = [{"prompt": f"Question {i} on fever?"} for i in range(items)]
        cmd = ["generate", "--n", "4"]
    elif pipeline == "rubric-prefs":
        rows = [{"prompt": f"Question {i} on paracetamol?", "rubric": RUBRIC} for i in range(items)]
        cmd = ["rubric-prefs", "--n", "4"]
    else:
        rows = [{"id": f"t{i}", "text": f"Text number {i}. Claim {i}.", "label": "error" if i % 2 else "correct",
                 "sentences": [f"Text number {i}.", f"Claim {i}."], **({"error_sentence_id": 1} if i % 2 else {})}
                for i in range(items)]
        cmd = ["factcheck", "run", "--methods", "zero-shot,sc@3", "--out-dir", str(folder / "factcheck-run-report")]
    path = folder / f"{pipeline}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path, cmd


def recorded(db: str) -> tuple[dict[str, int], float]:
    """Rows the command stored, and the seconds its runs' claim loops took (its own figure)."""
    from store import Store
    from store.records import table_counts
    from store.run_reports import recent_runs

    store = Store(db, must_exist=True)
    try:
        with store.session() as s:
            counts = table_counts(s)
        seconds = sum(float((r.stats or {}).get("seconds") or 0.0) for r in recent_runs(store, 100))
    finally:
        store.dispose()
    keep = ("llm_calls", "candidates", "judgments", "preference_pairs", "factcheck_results")
    return {k: counts[k] for k in keep if k in counts}, seconds


def run_pipeline(base_url: str, pipeline: str, items: int, concurrency: int, db: str, folder: Path,
                 profile_file: Path | None = None) -> dict[str, Any]:
    src, cmd = write_inputs(folder, pipeline, items)
    head, tail = (cmd[:2], cmd[2:]) if pipeline == "factcheck" else (cmd[:1], cmd[1:])
    cli = ["--db", db, "--base-url", base_url, "--model", "fake-model", "--concurrency", str(concurrency),
           *head, str(src), *tail]
    res = run_child(["--child-cli", str(profile_file or ""), "--", *cli])
    rows, loop_s = recorded(db)
    n = rows["llm_calls"]
    out = {"pipeline": pipeline, "items": items, "requests": n, "rows": rows,
           "cpu_s": round(res["cpu_s"], 2), "command_wall_s": round(res["wall_s"], 2),
           "claim_loop_s": round(loop_s, 2), "cpu_ms_per_request": round(1000 * res["cpu_s"] / n, 3),
           "requests_per_s": round(n / loop_s, 1) if loop_s else None,
           "requests_per_cpu_s": round(n / res["cpu_s"], 1)}
    if pipeline == "factcheck" and profile_file is None:
        # `factcheck run` ends with the methods' comparison (bootstrap CIs, plots), whose CPU grows
        # with the texts too but is no part of driving requests: the same report, rebuilt from the
        # store by `factcheck report`, is measured alone and left out of the orchestration figure
        rep = run_child(["--child-cli", "", "--", "--db", db, "factcheck", "report", "--out-dir",
                         str(folder / "factcheck-report")])
        out["report_cpu_s"] = round(rep["cpu_s"], 2)
        out["orchestration_cpu_ms_per_request"] = round(1000 * max(res["cpu_s"] - rep["cpu_s"], 0.0) / n, 3)
    return out


def profile_summary(profile_file: Path, top: int = 10) -> list[dict[str, Any]]:
    stats = pstats.Stats(str(profile_file), stream=io.StringIO())
    total = sum(v[2] for v in stats.stats.values())  # type: ignore[attr-defined]
    rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:top]  # type: ignore[attr-defined]
    return [{"function": f"{Path(f).name}:{line}:{name}", "self_s": round(tt, 3),
             "self_share": round(tt / total, 3), "calls": nc, "cumulative_s": round(ct, 3)}
            for (f, line, name), (_cc, nc, tt, ct, _callers) in rows]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=3000, help="instructions (texts for factcheck) per run")
    ap.add_argument("--concurrency", type=int, default=200, help="LLM requests in flight (both loops)")
    ap.add_argument("--latency", type=float, default=0.01, help="fake server seconds per reply")
    ap.add_argument("--capacity", type=int, default=512, help="fake server requests processed at once")
    ap.add_argument("--rubric-items", type=int, default=None,
                    help="instructions of the rubric-prefs run (default: --items / 3; it makes ~24 calls each)")
    ap.add_argument("--pipelines", default="generate,rubric-prefs,factcheck")
    ap.add_argument("--no-pg", action="store_true", help="skip the PostgreSQL runs")
    ap.add_argument("--pg-pipelines", default="generate", help="the pipelines (of --pipelines) that run on "
                    "PostgreSQL too")
    ap.add_argument("--profile-items", type=int, default=500, help="items of the profiled run (0: none)")
    ap.add_argument("--profile-pipeline", choices=("generate", "rubric-prefs", "factcheck"), default="generate",
                    help="the pipeline of the profiled run (profiled when it is among --pipelines)")
    ap.add_argument("--profile-db", choices=("sqlite", "postgresql"), default="sqlite",
                    help="the store of the profiled run")
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "bench_orchestration",
                    help="folder for the JSON and the profile summary")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    from tests.perf.bench_store import throwaway_database  # the parent alone needs the store

    load0 = os.getloadavg()
    result: dict[str, Any] = {"benchmark": "orchestration_cpu", "latency_s": args.latency,
                              "capacity": args.capacity, "concurrency": args.concurrency, "items": args.items,
                              "cores": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ready = folder / "server.json"
        server = subprocess.Popen([sys.executable, __file__, "--serve", str(ready), str(args.latency),
                                   str(args.capacity)], cwd=ROOT)
        try:
            deadline = time.monotonic() + 60
            while not ready.exists() or not ready.read_text():
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the fake server did not start")
                time.sleep(0.1)
            base_url = json.loads(ready.read_text())["base_url"]
            runs = []
            for pipeline in args.pipelines.split(","):
                items = (args.rubric_items or max(1, args.items // 3)) if pipeline == "rubric-prefs" else args.items
                runs.append({"db": "sqlite", **run_pipeline(base_url, pipeline, items, args.concurrency,
                                                            f"sqlite:///{folder / (pipeline + '.db')}", folder)})
                print(json.dumps(runs[-1]), file=sys.stderr)
            gen = next((r for r in runs if r["pipeline"] == "generate"), runs[0])
            bare = run_child(["--child-bare", base_url, str(gen["requests"]), str(args.concurrency)])
            result["bare_openai_loop"] = {
                "requests": gen["requests"], "cpu_s": round(bare["cpu_s"], 2), "wall_s": round(bare["wall_s"], 2),
                "cpu_ms_per_request": round(1000 * bare["cpu_s"] / gen["requests"], 3),
                "requests_per_s": round(gen["requests"] / bare["wall_s"], 1)}
            print(json.dumps(result["bare_openai_loop"]), file=sys.stderr)
            for r in runs:  # >= 1.0: carealign spends no more CPU per request than the bare SDK loop
                r["ratio_to_bare_loop"] = round(result["bare_openai_loop"]["cpu_ms_per_request"]
                                                / r["cpu_ms_per_request"], 3)
                if r.get("orchestration_cpu_ms_per_request"):
                    r["orchestration_ratio_to_bare_loop"] = round(result["bare_openai_loop"]["cpu_ms_per_request"]
                                                                  / r["orchestration_cpu_ms_per_request"], 3)
            bare_ms = result["bare_openai_loop"]["cpu_ms_per_request"]
            for pipeline in ([] if args.no_pg else [p for p in args.pg_pipelines.split(",") if p]):
                on_sqlite = next((r for r in runs if r["pipeline"] == pipeline), None)
                if on_sqlite is None:
                    continue
                url, drop = throwaway_database()
                try:
                    pg = {"db": "postgresql", **run_pipeline(base_url, pipeline, on_sqlite["items"],
                                                             args.concurrency, url, folder)}
                finally:
                    drop()
                pg["ratio_to_bare_loop"] = round(bare_ms / pg["cpu_ms_per_request"], 3)
                pg["cpu_vs_sqlite"] = round(pg["cpu_ms_per_request"] / on_sqlite["cpu_ms_per_request"], 3)
                if pg.get("orchestration_cpu_ms_per_request") and on_sqlite.get("orchestration_cpu_ms_per_request"):
                    pg["orchestration_ratio_to_bare_loop"] = round(bare_ms / pg["orchestration_cpu_ms_per_request"], 3)
                    pg["orchestration_cpu_vs_sqlite"] = round(pg["orchestration_cpu_ms_per_request"]
                                                              / on_sqlite["orchestration_cpu_ms_per_request"], 3)
                runs.append(pg)
                print(json.dumps(pg), file=sys.stderr)
            result["runs"] = runs
            if args.profile_items and args.profile_pipeline in args.pipelines.split(","):
                prof = args.out / f"{args.profile_pipeline}.prof"
                url, drop = throwaway_database() if args.profile_db == "postgresql" else \
                    (f"sqlite:///{folder / 'profile.db'}", lambda: None)
                try:
                    profiled = run_pipeline(base_url, args.profile_pipeline, args.profile_items, args.concurrency,
                                            url, folder, prof)
                finally:
                    drop()
                top = profile_summary(prof)
                result["profile"] = {"pipeline": args.profile_pipeline, "items": args.profile_items,
                                     "db": args.profile_db,
                                     "requests": profiled["requests"], "timer": "per-thread CPU time",
                                     "file": str(args.out / "profile_top.json"), "top_self_time": top}
                (args.out / "profile_top.json").write_text(json.dumps(top, indent=2))
                with (args.out / "profile_top.txt").open("w") as fh:
                    pstats.Stats(str(prof), stream=fh).sort_stats("tottime").print_stats(30)
        finally:
            server.terminate()
            server.wait(timeout=10)
    result["load_average"] = {"start": [round(x, 2) for x in load0],
                              "end": [round(x, 2) for x in os.getloadavg()]}
    text = json.dumps(result, indent=2)
    (args.out / "result.json").write_text(text)
    print(text)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve(sys.argv[2], float(sys.argv[3]), int(sys.argv[4]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--child-cli":  # --child-cli RESULT PROFILE -- ARGS
        child_cli(sys.argv[2], sys.argv[3] or None, sys.argv[5:])
    elif len(sys.argv) > 1 and sys.argv[1] == "--child-bare":  # --child-bare RESULT URL REQUESTS CONCURRENCY
        child_bare(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        main()
