"""Explicit Criteria Injection is what the reward model learns from, and its reported figures are
honest (PROTOCOLS.md section 1).

- The exact text the reward model reads for r(y | x, c): the criterion stated in the system
  message, then the conversation x, then the answer y; training rows and scoring render the same.
- A tiny reward model trained on pairs whose preferred answer flips with the criterion ranks the
  answers right on held-out items; with the criterion left out of its input the same training
  cannot beat chance (the texts are identical and the preferences opposite). If ``inject()`` ever
  drops the criterion, the first test fails.
- Three disjoint splits: thresholds are chosen on the calibration pairs, figures are measured on
  the test pairs, and the manifest, model card and store name the sizes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("trl")

import torch  # noqa: E402

from store import Store  # noqa: E402
from tests.tiny_models import build_tiny_causal_lm  # noqa: E402
from tests.training_data import (  # noqa: E402
    FLIP_ANSWERS,
    FLIP_RUBRIC,
    TrainingStore,
    flip_texts,
    populate,
    populate_flip,
)
from training.criteria import criterion_rows, inject, load_verdicts  # noqa: E402
from training.data import load_split, select_pairs, split_pairs  # noqa: E402
from training.data_config import DataConfig  # noqa: E402
from training.manifest import MANIFEST  # noqa: E402
from training.rm_config import CRITERION_TEMPLATE, RMConfig  # noqa: E402
from training.rm_scorer import RewardScorer, criterion_input  # noqa: E402
from training.run import train_from_store  # noqa: E402

pytestmark = [pytest.mark.train]

# the flip pairs: 24 items, a quarter held out for the test split, no calibration needed (the row
# accuracy reads raw scores, no threshold)
FLIP_DATA = dict(kinds=["flip"], eval_fraction=0.25, calibration_fraction=0.0)
# 40 steps of 8 rows (about 13 epochs of the 24 training rows); seeds 0, 1, 2 reach 0.94, 1.0, 1.0
FLIP_TRAIN = dict(use_cpu=not torch.cuda.is_available(),
                  max_steps=40, per_device_train_batch_size=8, learning_rate=3e-3, logging_steps=10,
                  max_length=128, save_strategy="no", report_to="none", seed=1)


@pytest.fixture(scope="module")
def flip_store(tmp_path_factory) -> tuple[Store, str]:
    import torch

    torch.set_num_threads(2)
    folder = tmp_path_factory.mktemp("flip")
    store = Store(f"sqlite:///{folder / 'store.db'}")
    store.ensure_schema()
    populate_flip(store)
    return store, str(build_tiny_causal_lm(folder / "tiny", flip_texts(), seed=0, initializer_range=0.2))


# -- the exact input --------------------------------------------------------------------------------
def test_the_reward_model_reads_the_criterion_in_the_system_message_then_x_then_y(tmp_path: Path):
    """PROTOCOLS.md section 1: "a Bradley-Terry model whose input carries the criterion": each pair
    (x, y_w, y_l) becomes one row per criterion c, scored as r(y | x, c)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(build_tiny_causal_lm(tmp_path / "tok", flip_texts()))
    x = [{"role": "user", "content": "How should I take my iron?"}]
    conv = criterion_input(x, "Take it with food.", "proficiency", "Says to take it with food.", CRITERION_TEMPLATE)
    assert tok.apply_chat_template(conv, tokenize=False) == (
        "<|im_start|>system\nJudge the assistant's reply on this proficiency criterion: Says to take it with food."
        "<|im_end|>\n<|im_start|>user\nHow should I take my iron?<|im_end|>\n"
        "<|im_start|>assistant\nTake it with food.<|im_end|>\n")
    # a conversation with its own system message keeps it; the criterion follows it
    merged = inject([{"role": "system", "content": "Be brief."}, *x], "veto", "Gives dangerous advice.",
                    CRITERION_TEMPLATE)
    assert merged[0] == {"role": "system", "content": "Be brief.\n\nJudge the assistant's reply on this veto "
                                                      "criterion: Gives dangerous advice."}
    assert merged[1:] == x


def test_training_rows_render_exactly_as_the_scorer_reads_them(flip_store):
    store, _ = flip_store
    pairs = select_pairs(store, DataConfig(kinds=["flip"]))[:1]
    rows = criterion_rows(pairs, load_verdicts(store, pairs), CRITERION_TEMPLATE).rows
    assert [(r["criterion"], r["chosen"][0]["content"]) for r in rows] == [("food", FLIP_ANSWERS[0]),
                                                                           ("night", FLIP_ANSWERS[1])]
    for r in rows:
        for side in ("chosen", "rejected"):
            assert r["prompt"] + r[side] == criterion_input(r["base_prompt"], r[side][0]["content"],
                                                            r["criterion_kind"], r["criterion_text"],
                                                            CRITERION_TEMPLATE)


# -- the criterion decides --------------------------------------------------------------------------
def _train_flip(store: Store, tiny: str, out: Path, template: str) -> dict:
    result = train_from_store(store, "rm", tiny, out, DataConfig(**FLIP_DATA),
                              RMConfig(**FLIP_TRAIN, criterion_template=template))
    return result.stats["evaluation"]


@pytest.mark.gpu
def test_a_reward_model_with_the_criterion_in_its_input_ranks_held_out_items_by_it(flip_store, tmp_path: Path):
    store, tiny = flip_store
    ev = _train_flip(store, tiny, tmp_path / "with", CRITERION_TEMPLATE)
    held = load_split(store, DataConfig(**FLIP_DATA)).eval
    assert ev["criterion_rows"] == 2 * len(held) >= 8  # two rows per held-out item, opposite preferences
    assert ev["criterion_accuracy"] >= 0.9, ev
    # and directly: on every held-out question each criterion prefers its own answer
    scorer = RewardScorer.load(tmp_path / "with")
    wins = 0
    for p in held:
        raw = scorer.raw_scores([(p.prompt, a, _rubric()) for a in FLIP_ANSWERS])
        wins += (raw[0]["food"] > raw[1]["food"]) + (raw[1]["night"] > raw[0]["night"])
    assert wins / (2 * len(held)) >= 0.9


def test_without_the_criterion_in_its_input_it_cannot_tell_the_criteria_apart(flip_store, tmp_path: Path):
    """The control: with a template that leaves the criterion out, the two rows of an item read the
    same, so the trained model scores both criteria alike (a criterion leaking into the input any
    other way would show here) and its row accuracy stays at or below chance."""
    store, tiny = flip_store
    ev = _train_flip(store, tiny, tmp_path / "without", "Judge the assistant's reply.")
    assert ev["criterion_rows"] >= 8 and ev["criterion_accuracy"] <= 0.5, ev
    scorer = RewardScorer.load(tmp_path / "without")
    for p in load_split(store, DataConfig(**FLIP_DATA)).eval:
        for raw in scorer.raw_scores([(p.prompt, a, _rubric()) for a in FLIP_ANSWERS]):
            assert raw["food"] == pytest.approx(raw["night"], abs=1e-5), raw


def _rubric():
    from agents.rubric import Rubric

    return Rubric.model_validate(FLIP_RUBRIC)


# -- three disjoint splits --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data(tmp_path_factory) -> TrainingStore:
    folder = tmp_path_factory.mktemp("splits")
    store = Store(f"sqlite:///{folder / 'store.db'}")
    store.ensure_schema()
    return populate(store)


def test_splits_are_disjoint_by_item_and_prompt_and_the_test_side_never_moves(flip_store):
    store, _ = flip_store
    pairs = select_pairs(store, DataConfig(kinds=["flip"]))
    cfg = DataConfig(kinds=["flip"], eval_fraction=0.25, calibration_fraction=0.25)
    three = split_pairs(pairs, cfg, calibration=True)
    two = split_pairs(pairs, cfg)
    assert three.train and three.calibration and three.eval
    sides = [three.train, three.calibration, three.eval]
    for i, a in enumerate(sides):
        for b in sides[i + 1:]:
            for attr in ("id", "item_id", "prompt_hash"):
                assert not {getattr(p, attr) for p in a} & {getattr(p, attr) for p in b}
    assert three.eval_ids == two.eval_ids and not two.calibration  # the test pairs are the same for every method
    assert sorted(three.train_ids + three.calibration_ids) == two.train_ids
    assert len(pairs) == sum(three.sizes().values())
    with pytest.raises(ValueError, match="must stay below 1"):
        DataConfig(eval_fraction=0.5, calibration_fraction=0.5)


def test_rm_chooses_thresholds_on_calibration_and_reports_on_test(data: TrainingStore, tmp_path: Path, monkeypatch):
    import training.rm_scorer as rm_scorer

    tiny = str(build_tiny_causal_lm(tmp_path / "tiny", data.texts(), seed=0))
    dcfg = DataConfig(kinds=["rubric"], language="en", min_margin=0.5, eval_fraction=0.3, calibration_fraction=0.3)
    split = load_split(data.store, dcfg, calibration=True)
    assert split.sizes() == {"train": 4, "calibration": 2, "test": 4}
    calls: list[list[int]] = []
    real = rm_scorer.threshold_samples

    def spy(scorer, store, pairs):
        calls.append(sorted(p.id for p in pairs))
        return real(scorer, store, pairs)

    monkeypatch.setattr(rm_scorer, "threshold_samples", spy)
    out = tmp_path / "rm"
    result = train_from_store(data.store, "rm", tiny, out, dcfg, RMConfig(use_cpu=True, max_steps=1,
                                                                          per_device_train_batch_size=2,
                                                                          max_length=256, report_to="none"))
    # thresholds from exactly the calibration pairs, figures from exactly the test pairs
    assert calls == [split.calibration_ids, split.eval_ids]
    ev = result.stats["evaluation"]
    assert (ev["calibration_pairs"], ev["calibration_judged_pairs"], ev["test_pairs"], ev["test_judged_pairs"]) == \
        (2, 2, 4, 4)
    assert ev["calibration"]["veto"]["n"] == 4 and ev["pairs_evaluated"] == 4  # 2 pairs x 2 answers; 4 test pairs
    m = json.loads((out / MANIFEST).read_text())
    assert m["split_sizes"] == {"train": 4, "calibration": 2, "test": 4}
    assert (m["pair_ids"], m["calibration_pair_ids"], m["eval_pair_ids"]) == \
        (split.train_ids, split.calibration_ids, split.eval_ids)
    card = (out / "README.md").read_text()
    assert "4 for training, 2 for calibration" in card and "4 test" in card and "test split (4 judged pairs" in card
    assert json.loads((out / "carealign_rm.json").read_text())["split_sizes"] == m["split_sizes"]
    from store.lineage import training_pair_ids

    with data.store.session() as s:
        got = training_pair_ids(s, result.run_id)
    assert (got["train"], got["calib"], got["eval"]) == (split.train_ids, split.calibration_ids, split.eval_ids)
