"""Training throughput per method with the tiny offline model (prints JSON): optimizer steps per
second (the training loop only, model loading excluded) and peak resident memory.

Each method runs in its own process, so ``ru_maxrss`` (the process's peak RSS) is that method's
own peak: loading torch/trl, the model(s), the data and the training loop. GRPO uses the reward
model the ``rm`` run just trained; its steps include generating ``num_generations`` completions.
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

METHODS = ("rm", "grpo", "cso", "sft")


def child(args: argparse.Namespace) -> dict:
    import torch

    from store import Store
    from training.cso_config import CSOConfig
    from training.data_config import DataConfig
    from training.grpo_config import GRPOConfig
    from training.rm_config import RMConfig
    from training.run import train_from_store
    from training.sft_config import SFTConfig

    torch.set_num_threads(args.threads)
    common = dict(use_cpu=True, max_steps=args.steps, per_device_train_batch_size=2, learning_rate=1e-4,
                  logging_steps=1, max_length=256)
    configs = {"rm": RMConfig(**common), "cso": CSOConfig(**common), "sft": SFTConfig(**common),
               "grpo": GRPOConfig(**common, num_generations=2, max_completion_length=16,
                                  reward_model=args.reward_model)}
    kinds = ["rubric"] if args.method in ("rm", "grpo") else ["esc"]
    start = time.perf_counter()
    result = train_from_store(Store(args.db), args.method, args.model, Path(args.out), DataConfig(kinds=kinds,
                              eval_fraction=0.2 if args.method == "rm" else 0.0), configs[args.method])
    return {"method": args.method, "steps": result.stats["steps"],
            "steps_per_second": result.stats["steps_per_second"], "train_seconds": result.stats["train_seconds"],
            "total_seconds": round(time.perf_counter() - start, 3), "final_loss": result.stats["final_loss"],
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def parent(args: argparse.Namespace) -> dict:
    from store import Store
    from tests.tiny_models import build_tiny_causal_lm
    from tests.training_data import populate

    with tempfile.TemporaryDirectory() as tmp:
        db = f"sqlite:///{tmp}/store.db"
        store = Store(db)
        store.ensure_schema()
        model = str(build_tiny_causal_lm(Path(tmp) / "tiny", populate(store).texts(), seed=0))
        store.dispose()
        results = []
        for method in METHODS:
            cmd = [sys.executable, __file__, "--child", "--method", method, "--db", db, "--model", model,
                   "--out", f"{tmp}/{method}", "--steps", str(args.steps), "--threads", str(args.threads),
                   "--reward-model", f"{tmp}/rm"]
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"{method} failed:\n{done.stderr[-4000:]}")
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return {"benchmark": "training_tiny_model", "steps": args.steps, "threads": args.threads, "batch_size": 2,
            "methods": results}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    for name in ("--method", "--db", "--model", "--out", "--reward-model"):
        ap.add_argument(name, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):  # trainers print their logs; keep stdout to the JSON
            out = child(args)
        print(json.dumps(out))
    else:
        print(json.dumps(parent(args), indent=2))


if __name__ == "__main__":
    main()
