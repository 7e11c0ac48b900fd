"""`carealign db export` writes files that trl loads and trains on.

Pairs go into a real SQLite store through the store API, come out through the real CLI in every
format, are loaded with ``datasets`` and fed to trl's DPOTrainer for two steps on a tiny offline
model (see tests/tiny_models.py).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("trl")

import datasets  # noqa: E402
import torch  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from carealign.cli import app  # noqa: E402
from store import Store  # noqa: E402
from store.records import add_pairs, create_run, upsert_items  # noqa: E402
from tests.tiny_models import build_tiny_causal_lm  # noqa: E402

pytestmark = [
    pytest.mark.train,
    # trl 1.16 reads the model's deprecated `is_gradient_checkpointing` (transformers 5.x says: use
    # `is_activation_checkpointing`); nothing a caller can change.
    pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning"),
]

QA = [  # question, good answer, bad answer
    ("What helps an asthma attack?", "Use your reliever inhaler and sit upright.", "Lie down and wait."),
    ("Is aspirin safe for children?", "No, avoid aspirin under 16; ask a doctor.", "Yes, any dose is fine."),
    ("How much water should I drink?", "About 2 litres a day, more when hot.", "Water is not needed."),
    ("Can I stop antibiotics early?", "No, finish the course unless told otherwise.", "Stop once you feel well."),
    ("What is a normal temperature?", "Around 37 degrees Celsius.", "Around 40 degrees Celsius."),
    ("How do I treat a small burn?", "Cool it under running water for 20 minutes.", "Put butter on it."),
    ("When should I see a doctor for a cough?", "If it lasts over three weeks.", "Never, coughs are harmless."),
    ("Is a headache a sign of a stroke?", "Rarely; sudden severe ones need urgent care.", "Always, go to surgery."),
]
COLUMNS = ["prompt", "chosen", "rejected"]


def export(url: str, out: Path, *extra: str) -> None:
    res = CliRunner().invoke(app, ["--db", url, "db", "export", "--out", str(out), *extra])
    assert res.exit_code == 0, res.output
    assert f"wrote {len(QA)} rows" in res.stdout


def test_exported_pairs_train_with_trl_dpo(tmp_path: Path, sqlite_url: str):
    from trl import DPOConfig, DPOTrainer

    torch.set_num_threads(2)
    store = Store(sqlite_url)
    store.ensure_schema()
    with store.session() as s:
        run_id = create_run(s, "test", {"k": 1})
        items = [{"payload": {"prompt": q}, "source": f"x:{i}"} for i, (q, _, _) in enumerate(QA)]
        item_ids = upsert_items(s, "ds", items)
        assert add_pairs(s, [
            {"kind": "generic", "run_id": run_id, "item_id": iid, "prompt": [{"role": "user", "content": q}],
             "chosen": good, "rejected": bad, "margin": 3.0}
            for iid, (q, good, bad) in zip(item_ids, QA, strict=True)
        ]) == len(QA)

    jsonl, parquet, hf, prompts = (tmp_path / n for n in ("pairs.jsonl", "pairs.parquet", "pairs_hf", "prompts.jsonl"))
    export(sqlite_url, jsonl)
    export(sqlite_url, parquet, "--format", "parquet")
    export(sqlite_url, hf, "--format", "hf")
    export(sqlite_url, prompts, "--shape", "prompt")

    # JSONL: exactly trl's conversational preference shape.
    ds = datasets.load_dataset("json", data_files=str(jsonl), split="train", cache_dir=str(tmp_path / "hf_cache"))
    assert ds.column_names == COLUMNS and len(ds) == len(QA)
    expected = [
        {"prompt": [{"role": "user", "content": q}], "chosen": [{"role": "assistant", "content": good}],
         "rejected": [{"role": "assistant", "content": bad}]}
        for q, good, bad in QA
    ]
    assert ds.to_list() == expected

    # Parquet and the save_to_disk folder hold the same rows.
    pq = datasets.load_dataset("parquet", data_files=str(parquet), split="train", cache_dir=str(tmp_path / "hf_cache"))
    assert pq.column_names == COLUMNS and pq.to_list() == expected
    disk = datasets.load_from_disk(str(hf))
    assert disk.column_names == COLUMNS and disk.to_list() == expected

    # GRPO shape: one `prompt` column of message lists, one row per distinct prompt.
    pr = datasets.load_dataset("json", data_files=str(prompts), split="train", cache_dir=str(tmp_path / "hf_cache"))
    assert pr.column_names == ["prompt"]
    assert pr.to_list() == [{"prompt": row["prompt"]} for row in expected]

    # Two DPO steps on a tiny offline model; trl loads the policy and the reference model from the folder.
    texts = [m["content"] for row in expected for col in COLUMNS for m in row[col]]
    model_dir = build_tiny_causal_lm(tmp_path / "tiny", texts, seed=0)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    # trl defaults gradient_checkpointing=True, which transformers 5.x maps (with a FutureWarning) onto
    # activation_checkpointing; naming the new field turns it off without the warning.
    cfg = DPOConfig(
        output_dir=str(tmp_path / "dpo"), max_steps=2, per_device_train_batch_size=2, learning_rate=1e-3,
        use_cpu=True, bf16=False, report_to=[], logging_steps=1, save_strategy="no", max_length=128,
        activation_checkpointing=False, dataloader_num_workers=0, seed=0,
    )
    trainer = DPOTrainer(model=str(model_dir), args=cfg, train_dataset=ds, processing_class=tokenizer)
    trainer.train()
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses), trainer.state.log_history
    # Step 1 runs before any update, so the policy equals the reference model and the DPO loss is ln 2.
    assert losses[0] == pytest.approx(math.log(2), abs=1e-4)
    assert not list(tmp_path.glob("**/*.partial")), "export left a partial file"
