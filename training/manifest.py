"""What made a trained model: ``training_manifest.json`` and a model card next to it, and a
``train-<method>`` run in the store.

The manifest lists the exact pair ids used for training (and the held-out ones, kept apart), a
sha256 of the sorted training ids to compare runs at a glance, the filters and config, the base
model, library versions and the code version, and the store URL with any password hidden. The store
keeps the same pair ids (``training_pairs``, written with the finished run), so ``carealign trace``
walks from a model to its data even after the model folder is gone.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from store import Store, redact_url
from store import training as queries
from store.errors import StoreError
from store.lineage import pair_ids_sha256, record_training_pairs
from store.records import code_version, create_run, finish_run
from training.common import TrainResult
from training.data_config import DataConfig

LIBRARIES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets")
MANIFEST = "training_manifest.json"


def library_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def build_manifest(store: Store, result: TrainResult, data: DataConfig, config: Any, base_model: str) -> dict:
    return {
        "method": result.method,
        "run_id": result.run_id,
        "store_url": redact_url(store.safe_url),
        "base_model": base_model,
        "pair_ids_sha256": pair_ids_sha256(result.train_pair_ids),
        "pair_ids": sorted(result.train_pair_ids),
        "eval_pair_ids": sorted(result.eval_pair_ids),
        "calibration_pair_ids": sorted(result.calibration_pair_ids),
        "split_sizes": split_sizes(result),
        "counts": result.counts,
        "filters": asdict(data),
        "config": asdict(config),
        "stats": result.stats,
        "libraries": library_versions(),
        "code_version": code_version(),
    }


def split_sizes(result: TrainResult) -> dict[str, int]:
    """Pairs on each side of the three-way split: trained on, thresholds chosen on (reward models),
    figures measured on."""
    return {"train": len(result.train_pair_ids), "calibration": len(result.calibration_pair_ids),
            "test": len(result.eval_pair_ids)}


MODEL_CARD = """# carealign {method} model

Trained with `carealign train {method}` from `{base_model}`.

- pairs: {n_train} for training, {n_cal} for calibration (reward-model thresholds), {n_eval} test
  pairs held out for the reported figures (sha256 of the training pair ids: `{sha}`)
- filters: kinds {kinds}, runs {runs}, min margin {min_margin}, language {language}
- store: `{store}`; run `{run_id}`; code `{code}`
- final training loss: {final_loss}{evaluation}

`{manifest}` lists every pair id, the full config, the library versions and the held-out pairs.
"""


def write_manifest(store: Store, result: TrainResult, data: DataConfig, config: Any, base_model: str) -> Path:
    """Write the manifest and the model card into ``result.out_dir``; returns the manifest path."""
    out = Path(result.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    m = build_manifest(store, result, data, config, base_model)
    path = out / MANIFEST
    path.write_text(json.dumps(m, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    card = MODEL_CARD.format(
        method=result.method, base_model=base_model, n_train=len(result.train_pair_ids),
        n_cal=len(result.calibration_pair_ids), n_eval=len(result.eval_pair_ids), sha=m["pair_ids_sha256"],
        kinds=data.kinds, runs=data.run_ids or "all",
        min_margin=data.min_margin, language=data.language or "any", store=m["store_url"], run_id=result.run_id,
        code=m["code_version"], final_loss=result.stats.get("final_loss"), manifest=MANIFEST,
        evaluation=_evaluation_line(result.stats.get("evaluation") or {}))
    (out / "README.md").write_text(card, encoding="utf-8")
    return path


def _evaluation_line(ev: dict[str, Any]) -> str:
    """A reward model's test figures for the card, naming the split each number comes from."""
    if "pair_accuracy" not in ev:
        return ""
    return (f"\n- test split ({ev['test_judged_pairs']} judged pairs, thresholds from "
            f"{ev['calibration_judged_pairs']} calibration pairs): pair accuracy {ev['pair_accuracy']:.3f}, "
            f"safety F1 {ev['safety']['f1']:.3f}"
            + (f", criterion-row accuracy {ev['criterion_accuracy']:.3f}" if "criterion_accuracy" in ev else ""))


def start_run(store: Store, method: str, data: DataConfig, config: Any, base_model: str, out_dir: Path,
              resumed_from: str | None = None, resumes_run: str | None = None) -> str:
    """A ``train-<method>`` run; a resumed one names its checkpoint and the run that wrote it."""
    resumed = {"resumed_from": resumed_from, "resumes_run": resumes_run} if resumed_from else {}
    with store.session() as s:
        return create_run(s, f"train-{method}", {"data": asdict(data), "config": asdict(config),
                                                 "base_model": base_model, "out_dir": str(out_dir), **resumed})


def end_run(store: Store, run_id: str, result: TrainResult | None, status: str = "completed",
            error: str | None = None) -> None:
    stats: dict[str, Any] = {}
    if result is not None:
        stats = {**result.stats, "counts": result.counts, "pair_ids_sha256": pair_ids_sha256(result.train_pair_ids),
                 "split_sizes": split_sizes(result), "out_dir": str(result.out_dir)}
    with store.session() as s:  # the run is completed together with the record of its pairs
        stats["checkpoints"] = queries.run_checkpoints(s, run_id)
        if result is not None:
            record_training_pairs(s, run_id, result.train_pair_ids, result.eval_pair_ids)
            queries.record_calibration_pairs(s, run_id, result.calibration_pair_ids)
        finish_run(s, run_id, status, stats, error)


def read_manifest(folder: Path) -> dict[str, Any]:
    """A model folder's manifest (``carealign trace FOLDER``); an error names the folder or file."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise StoreError(f"{str(folder)!r} has no {MANIFEST}: not a model folder written by `carealign train`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StoreError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("run_id"), str):
        raise StoreError(f"{path}: field 'run_id': missing (the model was not recorded in a store)")
    return data
