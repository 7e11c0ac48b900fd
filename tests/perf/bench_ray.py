"""The Ray executor against the local one, and two model replicas against one server (prints JSON).

1. ``carealign generate`` over N instructions (``--n 2``: 4 requests each) against the fake server (a
   separate process, deterministic replies), on a fresh PostgreSQL database per run: the local
   executor, then ``--executor ray --workers 1, 2, 4`` (a local Ray instance started by the command;
   actors of ``--actor-cpus`` CPUs each so that 4 fit on a small machine). Per run: items/s and
   requests/s over the whole command (Ray's start-up included) and over the job (the claim loop),
   and the CPU seconds of the command's whole process tree (the driver, Ray's own processes and the
   actors, sampled from /proc; the fake server is not in it): CPU seconds per request and requests
   per CPU-second. On a 2-core machine shared with other work, efficiency is the figure to read, not
   speed-up.
2. Two replicas of capacity C (fixed latency) against one server of capacity 2C, through the engine
   with 2C requests in flight: requests/s of each, and their ratio (best of ``--repeats``).

Needs a PostgreSQL server (CAREALIGN_TEST_PG_URL, default postgres@127.0.0.1:5432) and Ray.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, text  # noqa: E402

from tests.helpers import write_jsonl  # noqa: E402
from tests.perf.bench_store import throwaway_database  # noqa: E402

PG_URL = os.environ.get("CAREALIGN_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
TICKS = os.sysconf("SC_CLK_TCK")


# -- the fake server, in its own process -------------------------------------------------------------
def serve(ready_file: str, latency: float, capacity: int | None = None) -> None:
    """The fake server: generate's answers and judgments by seed (see tests/test_generate.py)."""
    from tests.fake_server import FakeOpenAIServer, default_responder
    from tests.test_generate import scripted

    server = FakeOpenAIServer(latency=latency, capacity=capacity).start()
    judged = scripted({0: 9, 1: 2})
    server.responder = lambda body: judged(body) if "seed" in body else default_responder(body)
    Path(ready_file).write_text(json.dumps({"base_url": server.base_url}))
    while True:
        time.sleep(3600)


class ServerProcess:
    """A fake server in its own process (its CPU and GIL apart from the client's)."""

    def __init__(self, tmp: Path, latency: float, capacity: int | None = None):
        self.ready = tmp / f"ready-{uuid.uuid4().hex[:6]}.json"
        cmd = [sys.executable, "-m", "tests.perf.bench_ray", "--serve", str(self.ready), "--latency", str(latency)]
        self.proc = subprocess.Popen([*cmd, *(["--capacity", str(capacity)] if capacity else [])], cwd=ROOT)

    def __enter__(self) -> str:
        deadline = time.monotonic() + 60
        while not self.ready.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        return json.loads(self.ready.read_text())["base_url"]

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


# -- CPU of a process tree -----------------------------------------------------------------------
def _proc_table() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds so far)."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / TICKS)
    return out


class TreeCPU:
    """Samples the CPU time of a process and all its descendants (each pid's last reading is kept,
    so processes that ended during the run still count, up to the last sample before they ended)."""

    def __init__(self, root: int, every: float = 0.1):
        self.root, self.every, self.seen = root, every, {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            table = _proc_table()
            children: dict[int, list[int]] = {}
            for pid, (ppid, _) in table.items():
                children.setdefault(ppid, []).append(pid)
            todo = [self.root]
            while todo:
                pid = todo.pop()
                if pid in table:
                    self.seen[pid] = max(self.seen.get(pid, 0.0), table[pid][1])
                todo.extend(children.get(pid, []))
            time.sleep(self.every)

    def __enter__(self) -> TreeCPU:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def seconds(self) -> float:
        return sum(self.seen.values())


# -- one command -----------------------------------------------------------------------------------
def run_stats(url: str) -> dict:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            status, stats = conn.execute(text("SELECT status, stats FROM runs WHERE kind = 'generate'")).one()
    finally:
        engine.dispose()
    stats = stats if isinstance(stats, dict) else json.loads(stats)
    return {**stats, "status": status}


def run_command(base_url: str, src: Path, cfg: Path, executor: str, workers: int, concurrency: int,
                fixed: dict | None = None) -> dict:
    """One command on a fresh database. With ``fixed`` (the same command over a couple of items: its
    start-up and Ray's), the marginal CPU per request is given too: what each further request costs."""
    url, drop = throwaway_database()
    try:
        extra = ["--executor", "ray", "--workers", str(workers)] if executor == "ray" else []
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "carealign.cli", "--config", str(cfg), "--db", url,
                                 "--base-url", base_url, "--concurrency", str(concurrency), *extra, "generate",
                                 str(src), "--n", "2"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)
        with TreeCPU(proc.pid) as cpu:
            _, err = proc.communicate()
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"{executor} x{workers} failed ({proc.returncode}): {err[-2000:]}")
        stats = run_stats(url)
    finally:
        drop()
    if stats["status"] != "completed":
        raise SystemExit(f"{executor} x{workers}: run {stats['status']}: {json.dumps(stats)[:3000]}")
    usage = stats["usage"]
    requests = sum(u["calls"] for u in usage.values())
    items, job_seconds = stats["done"], stats["seconds"]
    out = {"executor": executor, "workers": workers, "status": stats["status"], "items": items, "requests": requests,
           "command_seconds": round(seconds, 2), "job_seconds": round(job_seconds, 2),
           "items_per_s": round(items / seconds, 1), "requests_per_s": round(requests / seconds, 1),
           "job_items_per_s": round(items / job_seconds, 1), "job_requests_per_s": round(requests / job_seconds, 1),
           "cpu_seconds": round(cpu.seconds, 2), "cpu_ms_per_request": round(1000 * cpu.seconds / requests, 2),
           "requests_per_cpu_second": round(requests / cpu.seconds, 1)}
    if fixed is not None:
        extra_cpu, extra_requests = cpu.seconds - fixed["cpu_seconds"], requests - fixed["requests"]
        out.update({"fixed_cpu_seconds": fixed["cpu_seconds"], "fixed_command_seconds": fixed["command_seconds"],
                    "marginal_cpu_ms_per_request": round(1000 * extra_cpu / extra_requests, 2),
                    "marginal_requests_per_cpu_second": round(extra_requests / extra_cpu, 1)})
    return out


# -- replicas ------------------------------------------------------------------------------------
async def _throughput(urls: list[str], concurrency: int, requests: int) -> float:
    from agents.backends import OpenAICompatBackend
    from agents.engine import EngineConfig, LLMEngine
    from agents.limits import Limiter
    from agents.replicas import ReplicaBackend

    backends = [OpenAICompatBackend(u, api_key_env=None, max_connections=concurrency) for u in urls]
    backend = backends[0] if len(backends) == 1 else ReplicaBackend(backends)
    engine = LLMEngine(backend, EngineConfig(model="fake-model", cache=False), Limiter(concurrency), None)
    try:
        start = time.perf_counter()
        await asyncio.gather(*(engine.chat([{"role": "user", "content": f"q{i}"}]) for i in range(requests)))
        return requests / (time.perf_counter() - start)
    finally:
        await engine.aclose()


def replicas_vs_one(capacity: int, latency: float, requests: int, repeats: int) -> dict:
    """Best of ``repeats``, the two set-ups taking turns (so that a busy moment hits both alike)."""
    with tempfile.TemporaryDirectory() as tmp, ServerProcess(Path(tmp), latency, 2 * capacity) as big, \
            ServerProcess(Path(tmp), latency, capacity) as r1, ServerProcess(Path(tmp), latency, capacity) as r2:
        one, two = 0.0, 0.0
        for _ in range(repeats):
            one = max(one, asyncio.run(_throughput([big], 2 * capacity, requests)))
            two = max(two, asyncio.run(_throughput([r1, r2], 2 * capacity, requests)))
    ideal = 2 * capacity / latency
    return {"capacity_each": capacity, "latency_s": latency, "requests": requests, "repeats": repeats,
            "ideal_requests_per_s": ideal, "one_server_2C_requests_per_s": round(one, 1),
            "two_replicas_C_requests_per_s": round(two, 1), "ratio": round(two / one, 3)}


def compare_executors(args: argparse.Namespace) -> list[dict]:
    """Each executor over the same input, best of ``--repeats`` (the fixed cost: the fewest CPU seconds)."""
    runs = []
    with tempfile.TemporaryDirectory() as tmp, ServerProcess(Path(tmp), args.latency) as base_url:
        lines = [{"prompt": f"Question {i}: when is a fever dangerous?"} for i in range(args.items)]
        src = write_jsonl(Path(tmp) / "q.jsonl", lines)
        small = write_jsonl(Path(tmp) / "small.jsonl", lines[:args.fixed_items])
        cfg = Path(tmp) / "c.toml"
        cfg.write_text(f"[ray]\nnum_cpus = {args.actor_cpus}\n")
        for executor, w in [("local", 1), *(("ray", int(x)) for x in args.workers.split(","))]:
            fixed = min((run_command(base_url, small, cfg, executor, w, args.concurrency)
                         for _ in range(args.repeats)), key=lambda r: r["cpu_seconds"])
            runs.append(min((run_command(base_url, src, cfg, executor, w, args.concurrency, fixed)
                             for _ in range(args.repeats)), key=lambda r: r["command_seconds"]))
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    ap.add_argument("--capacity", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--items", type=int, default=300)
    ap.add_argument("--latency", type=float, default=0.0, help="fake server seconds per request")
    ap.add_argument("--concurrency", type=int, default=16, help="requests in flight per worker process")
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--actor-cpus", type=float, default=0.25)
    ap.add_argument("--fixed-items", type=int, default=2, help="items of the run that measures start-up")
    ap.add_argument("--replica-capacity", type=int, default=16)
    ap.add_argument("--replica-latency", type=float, default=0.2)
    ap.add_argument("--replica-requests", type=int, default=960)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--skip-executors", action="store_true")
    args = ap.parse_args()
    if args.serve:
        serve(args.serve, args.latency, args.capacity)
        return
    out: dict = {"cpus": os.cpu_count(), "items": args.items, "latency_s": args.latency,
                 "concurrency_per_worker": args.concurrency}
    if not args.skip_executors:
        out["executors"] = compare_executors(args)
    out["replicas"] = replicas_vs_one(args.replica_capacity, args.replica_latency, args.replica_requests,
                                      args.repeats)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
