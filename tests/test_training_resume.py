"""Checkpoints, resume and what a user sees before and after a run: a training process killed with
SIGKILL mid-run resumes from its newest checkpoint and ends exactly where an uninterrupted run of
the same steps ends; every checkpoint is recorded in the store as it is written; short runs log a
loss; a failed start leaves no folder; ``--list-settings`` shows every key; a typo names the key
and the closest one; logs go to TensorBoard in the model folder, W&B only when installed."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("trl")

import torch  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from store import Store  # noqa: E402
from store.models import Run  # noqa: E402
from tests.tiny_models import build_tiny_causal_lm  # noqa: E402
from tests.training_data import TrainingStore, populated_store  # noqa: E402
from training.common import CHECKPOINTS, LOGS, TrainCommon  # noqa: E402
from training.config import METHOD_CONFIGS, list_settings  # noqa: E402
from training.data_config import DataConfig  # noqa: E402
from training.manifest import MANIFEST  # noqa: E402
from training.run import train_from_store  # noqa: E402
from training.sft_config import SFTConfig  # noqa: E402

pytestmark = [pytest.mark.train]
ROOT = Path(__file__).resolve().parents[1]
STEPS, EVERY = 40, 5
# on a lent GPU machine (`pytest -m gpu`) the kill/resume drill runs on the GPU
ON_CPU = str(not torch.cuda.is_available()).lower()
SFT_SETS = [f"max_steps={STEPS}", f"save_steps={EVERY}", f"use_cpu={ON_CPU}", "per_device_train_batch_size=2",
            "logging_steps=1", "max_length=128", "learning_rate=1e-3", 'report_to="none"']


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> TrainingStore:
    return populated_store(tmp_path_factory.mktemp("resume"))


@pytest.fixture(scope="module")
def tiny(data: TrainingStore, tmp_path_factory) -> str:
    return str(build_tiny_causal_lm(tmp_path_factory.mktemp("tiny") / "model", data.texts(), seed=0))


def _args(data: TrainingStore, tiny: str, out: Path, *more: str) -> list[str]:
    sets = [x for s in SFT_SETS for x in ("--set", s)]
    return ["--db", str(data.store.url), "train", "sft", "--model", tiny, "--out", str(out), "--kind", "esc",
            "--eval-fraction", "0", *sets, *more]


def _cli(args: list[str]):
    from carealign.cli import app

    return CliRunner().invoke(app, args)


def _runs(store: Store, kind: str) -> list[Run]:
    from sqlalchemy import select

    with store.session() as s:
        rows = list(s.scalars(select(Run).where(Run.kind == kind).order_by(Run.started_at)))
        s.expunge_all()
    return rows


def _comparable(manifest: dict) -> dict:
    """A manifest less what differs between any two runs (ids, timings, where it resumed from)."""
    stats = {k: v for k, v in manifest["stats"].items() if k not in ("train_seconds", "steps_per_second",
                                                                      "resumed_from")}
    return {**{k: v for k, v in manifest.items() if k not in ("run_id", "stats")}, "stats": stats}


def _loss_curve(out: Path) -> list[tuple[int, float]]:
    final = max((out / CHECKPOINTS).glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    state = json.loads((final / "trainer_state.json").read_text())
    return [(x["step"], x["loss"]) for x in state["log_history"] if "loss" in x]


@pytest.mark.gpu
def test_a_run_killed_mid_way_resumes_and_ends_as_an_uninterrupted_run(data: TrainingStore, tiny: str,
                                                                       tmp_path: Path):
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "2"}
    before = {r.id for r in _runs(data.store, "train-sft")}
    proc = subprocess.Popen([sys.executable, "-m", "carealign.cli", *_args(data, tiny, killed)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            runs = [r for r in _runs(data.store, "train-sft") if r.id not in before]
            if runs and (runs[0].stats or {}).get("checkpoints"):
                break  # the first checkpoint is on disk and recorded: kill the process mid-run
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        rc = proc.wait(timeout=60)
    assert rc == -signal.SIGKILL, proc.stderr.read().decode()[-3000:]
    assert not (killed / MANIFEST).exists()  # it did not finish
    first = [r for r in _runs(data.store, "train-sft") if r.id not in before][0]
    saved = first.stats["checkpoints"]
    assert first.status == "running" and saved[0]["step"] == EVERY and saved[-1]["step"] < STEPS

    res = _cli(_args(data, tiny, killed, "--resume", "latest"))
    assert res.exit_code == 0, res.output
    res = _cli(_args(data, tiny, whole))
    assert res.exit_code == 0, res.output

    a, b = json.loads((killed / MANIFEST).read_text()), json.loads((whole / MANIFEST).read_text())
    assert a["stats"]["steps"] == b["stats"]["steps"] == STEPS
    assert a["stats"]["resumed_from"].endswith(f"checkpoint-{saved[-1]['step']}")
    assert _comparable(a) == _comparable(b)
    # the loss curve continues: every step logged once, the same losses as without the kill
    curve, reference = _loss_curve(killed), _loss_curve(whole)
    assert [s for s, _ in curve] == list(range(1, STEPS + 1)) == [s for s, _ in reference]
    assert [x for _, x in curve] == pytest.approx([x for _, x in reference], rel=1e-5)
    # the store: the killed run is marked interrupted and names its successor, which names it back and
    # records each checkpoint it wrote
    runs = {r.id: r for r in _runs(data.store, "train-sft")}
    dead, resumed = runs[first.id], runs[a["run_id"]]
    assert dead.status == "interrupted" and dead.stats["resumed_by"] == resumed.id
    assert resumed.config["resumes_run"] == first.id and resumed.config["resumed_from"] == a["stats"]["resumed_from"]
    steps = [c["step"] for c in resumed.stats["checkpoints"]]
    assert steps == list(range(saved[-1]["step"] + EVERY, STEPS + 1, EVERY))
    assert all(Path(c["path"]).name == f"checkpoint-{c['step']}" and math.isfinite(c["loss"])
               for c in resumed.stats["checkpoints"])
    # save_total_limit (default 2) keeps the newest two on disk
    assert sorted(p.name for p in (killed / CHECKPOINTS).glob("checkpoint-*")) == [f"checkpoint-{STEPS - EVERY}",
                                                                                   f"checkpoint-{STEPS}"]


def test_resume_names_what_it_could_not_find(data: TrainingStore, tiny: str, tmp_path: Path):
    res = _cli(_args(data, tiny, tmp_path / "none", "--resume", "latest"))
    assert res.exit_code == 2 and "no checkpoint under" in " ".join(res.output.split())
    res = _cli(_args(data, tiny, tmp_path / "none", "--resume", str(tmp_path)))
    assert res.exit_code == 2 and "not a checkpoint folder" in " ".join(res.output.split())
    assert not (tmp_path / "none").exists()


# -- short runs, failed starts, settings ------------------------------------------------------------
def test_short_runs_log_a_loss_and_write_tensorboard_events(data: TrainingStore, tiny: str, tmp_path: Path):
    """``max_steps`` below ``logging_steps`` (the default 10), and an epoch shorter than it."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    res = _cli(["--db", str(data.store.url), "train", "sft", "--model", tiny, "--out", str(tmp_path / "two"),
                "--kind", "esc", "--set", "max_steps=2", "--set", "use_cpu=true", "--set", "max_length=128"])
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "two" / MANIFEST).read_text())
    assert m["stats"]["steps"] == 2 and math.isfinite(m["stats"]["final_loss"])
    events = EventAccumulator(str(tmp_path / "two" / LOGS))
    events.Reload()
    assert "train/loss" in events.Tags()["scalars"]
    # 6 rows, batch 4, one epoch: 2 steps, still one loss logged at the end
    result = train_from_store(data.store, "sft", tiny, tmp_path / "epoch", DataConfig(kinds=["esc"], eval_fraction=0),
                              SFTConfig(use_cpu=True, max_length=128, report_to="none"))
    assert result.stats["steps"] == 2 and math.isfinite(result.stats["final_loss"])


def test_a_failed_start_leaves_no_folder(data: TrainingStore, tiny: str, tmp_path: Path):
    out = tmp_path / "model"
    res = _cli(["--db", str(data.store.url), "train", "sft", "--model", tiny, "--out", str(out), "--kind", "esc",
                "--set", "use_cpu=true", "--set", "trl_args={no_such_argument = 1}"])
    assert res.exit_code != 0 and "no_such_argument" in res.output
    assert not out.exists()
    failed = _runs(data.store, "train-sft")[-1]
    assert failed.status == "failed" and "no_such_argument" in failed.error
    # a value of the wrong type is named with its key before any run starts (it used to leave a run
    # `running` and its folder behind)
    before = len(_runs(data.store, "train-sft"))
    res = _cli(["--db", str(data.store.url), "train", "sft", "--model", tiny, "--out", str(out), "--kind", "esc",
                "--set", "use_cpu=true", "--set", "seed=\"abc\""])
    assert res.exit_code != 0 and "seed = 'abc' is not of type int" in res.output and not out.exists()
    assert len(_runs(data.store, "train-sft")) == before and "unexpected" not in res.output


def test_list_settings_prints_every_key_with_type_default_and_help():
    res = _cli(["train", "grpo", "--list-settings"])
    assert res.exit_code == 0, res.output
    text = res.output
    for key, _, _, help_text in list_settings(METHOD_CONFIGS["grpo"]) + list_settings(DataConfig):
        assert help_text, f"{key} has no help"
        assert key in text
    assert "save_steps" in text and "500" in text and "reward_batch_size" in text and "calibration_fraction" in text
    # every method lists the common settings
    common = {k for k, *_ in list_settings(TrainCommon)}
    for cls in METHOD_CONFIGS.values():
        assert common <= {k for k, *_ in list_settings(cls)}
        assert all(h for *_, h in list_settings(cls))


def test_a_typo_names_the_key_and_the_closest_one(data: TrainingStore, tiny: str, tmp_path: Path):
    res = _cli(["--db", str(data.store.url), "train", "sft", "--model", tiny, "--out", str(tmp_path / "m"),
                "--set", "max_step=2"])
    out = " ".join(res.output.split())
    assert res.exit_code == 2 and "train sft --set: unknown setting 'max_step' (did you mean 'max_steps'?)" in out
    conf = tmp_path / "t.toml"
    conf.write_text("[train.sft]\nlerning_rate = 1e-4\n")
    res = _cli(["--db", str(data.store.url), "train", "sft", "--model", tiny, "--out", str(tmp_path / "m"),
                "--config", str(conf)])
    out = " ".join(res.output.split())
    assert res.exit_code == 2 and "[train.sft]: unknown setting 'lerning_rate' (did you mean 'learning_rate'?)" in out
    assert not (tmp_path / "m").exists()


def test_wandb_without_the_package_is_a_clear_error(data: TrainingStore, tiny: str, tmp_path: Path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    res = _cli(["--db", str(data.store.url), "train", "sft", "--model", tiny, "--out", str(tmp_path / "w"),
                "--report-to", "wandb"])
    out = " ".join(res.output.split())
    assert res.exit_code == 2 and "report_to wandb: the wandb package is not installed" in out
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize(("name", "stage"), [("accelerate_zero2.yaml", 2), ("accelerate_zero3.yaml", 3)])
def test_the_shipped_deepspeed_configs_load_in_accelerate(name: str, stage: int):
    """The README's `accelerate launch --config_file examples/...` reads these exactly as accelerate does."""
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import DistributedType

    cfg = load_config_from_file(str(ROOT / "examples" / name))
    assert cfg.distributed_type == DistributedType.DEEPSPEED and cfg.deepspeed_config["zero_stage"] == stage
    assert str(cfg.mixed_precision) in ("bf16", "PrecisionType.BF16") and not cfg.use_cpu
