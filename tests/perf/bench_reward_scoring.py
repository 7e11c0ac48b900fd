"""Reward-model scoring throughput (prints JSON): (completion, criterion) rows per second scored in
batches (``RewardScorer`` with ``--batch-size``) vs one row at a time (batch size 1), and the peak
memory of each way.

Each way runs in its own process, so its peak is its own: on a GPU ``torch.cuda.max_memory_allocated``
during scoring; on the CPU the growth of peak resident memory (``ru_maxrss``) from the moment the
model is loaded and warmed up. By default the model is the tiny offline Llama of the tests with a
fresh scalar head (throughput does not depend on what the head learned); ``--model PATH`` scores
with a folder `carealign train rm` wrote instead, on the GPU when there is one.

    .venv/bin/python tests/perf/bench_reward_scoring.py --completions 64 --batch-size 64
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def tiny_reward_model(folder: Path) -> Path:
    """The tests' tiny Llama as a scalar reward model with uncalibrated thresholds."""
    from transformers import AutoModelForSequenceClassification

    from tests.tiny_models import build_tiny_causal_lm
    from tests.training_data import TrainingStore
    from training.criteria import calibrate
    from training.rm_config import CRITERION_TEMPLATE
    from training.rm_scorer import RM_META

    texts = TrainingStore(None).texts()  # type: ignore[arg-type] - texts() reads no store
    path = build_tiny_causal_lm(folder, texts, seed=0)
    model = AutoModelForSequenceClassification.from_pretrained(str(path), num_labels=1)
    model.save_pretrained(str(path))
    meta = {"variant": "criteria", "criterion_template": CRITERION_TEMPLATE, "max_length": 512, **calibrate({})}
    (path / RM_META).write_text(json.dumps(meta), encoding="utf-8")
    return path


def items(n: int):
    from tests.training_data import QA, RUBRIC

    return [([{"role": "user", "content": QA[i % len(QA)][0]}], QA[i % len(QA)][1 + (i // len(QA)) % 2], RUBRIC)
            for i in range(n)]


def child(args: argparse.Namespace) -> dict:
    import torch

    from agents.rubric import Rubric
    from training.rm_scorer import RewardScorer

    torch.set_num_threads(args.threads)
    scorer = RewardScorer.load(args.model, batch_size=args.batch_size, dtype=args.dtype)
    work = [(c, r, Rubric.model_validate(rb)) for c, r, rb in items(args.completions)]
    rows = sum(len(rb.criteria) for _, _, rb in work)
    scorer.raw_scores(work[:2])  # warm-up: kernels, allocator
    cuda = scorer.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    for _ in range(args.repeats):
        scorer.raw_scores(work)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = (torch.cuda.max_memory_allocated() / 2**20 if cuda
            else (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024)
    return {"batch_size": args.batch_size, "rows": rows * args.repeats, "seconds": round(seconds, 4),
            "rows_per_second": round(rows * args.repeats / seconds, 1), "device": str(scorer.device),
            "dtype": str(scorer.dtype).removeprefix("torch."),
            ("peak_cuda_allocated_mib" if cuda else "peak_rss_growth_mib"): round(peak, 2)}


def parent(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or str(tiny_reward_model(Path(tmp) / "rm"))
        out = {}
        for name, batch in (("batched", args.batch_size), ("one_by_one", 1)):
            cmd = [sys.executable, __file__, "--child", "--model", model, "--batch-size", str(batch),
                   "--completions", str(args.completions), "--repeats", str(args.repeats),
                   "--threads", str(args.threads), "--dtype", args.dtype]
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"{name} failed:\n{done.stderr[-4000:]}")
            out[name] = json.loads(done.stdout.strip().splitlines()[-1])
    return {"benchmark": "reward_scoring", "model": args.model or "tiny offline Llama (2 layers, hidden 32)",
            "completions": args.completions, "criteria_per_completion": 4, "threads": args.threads, **out,
            "speedup": round(out["batched"]["rows_per_second"] / out["one_by_one"]["rows_per_second"], 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="a folder `carealign train rm` wrote (default: the tiny offline model)")
    ap.add_argument("--completions", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtype", default="auto", choices=("auto", "bfloat16", "float32"))
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    print(json.dumps(child(args) if args.child else parent(args), indent=None if args.child else 2))


if __name__ == "__main__":
    main()
