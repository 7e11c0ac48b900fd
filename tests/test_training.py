"""`carealign train`: every method trains on pairs from a temporary store with a tiny offline model.

The store is filled through the store API (tests/training_data.py): judged rubric pairs (plus one
Chinese and one low-margin pair the filters must drop) and ESC turn pairs. Each method trains a few
steps on CPU; the loss is finite, the saved model reloads and scores, and the manifest lists exactly
the pairs used.
"""

from __future__ import annotations

import ast
import itertools
import json
import math
import tomllib
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("trl")

from typer.testing import CliRunner  # noqa: E402

from agents.rubric import RewardConfig, Rubric, RubricScore, policy_reward  # noqa: E402
from store import Store  # noqa: E402
from store.models import Run  # noqa: E402
from tests.tiny_models import build_tiny_causal_lm  # noqa: E402
from tests.training_data import QA, RUBRIC, TrainingStore, populated_store  # noqa: E402
from training.config import load_configs, train_table  # noqa: E402
from training.cso_config import CSOConfig  # noqa: E402
from training.data import load_split, select_pairs, split_groups, split_pairs  # noqa: E402
from training.data_config import DataConfig  # noqa: E402
from training.grpo_config import GRPOConfig  # noqa: E402
from training.grpo_trainer import RubricReward  # noqa: E402
from training.manifest import MANIFEST, pair_ids_sha256  # noqa: E402
from training.rm_config import RMConfig  # noqa: E402
from training.rm_scorer import RewardScorer  # noqa: E402
from training.run import train_from_store  # noqa: E402
from training.sft_config import SFTConfig  # noqa: E402

pytestmark = [
    pytest.mark.train,
    pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning"),
]
TINY = dict(use_cpu=True, max_steps=2, per_device_train_batch_size=2, learning_rate=1e-3, logging_steps=1,
            max_length=256, save_strategy="no")
# English rubric pairs with margin >= 0.5: 4 of 10 in the test split; a reward model also keeps 2 of the other
# 6 for calibration (the hash puts them there), the other methods train on all 6
RUBRIC_DATA = dict(kinds=["rubric"], language="en", min_margin=0.5, eval_fraction=0.3, calibration_fraction=0.3)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> TrainingStore:
    return populated_store(tmp_path_factory.mktemp("train"))


@pytest.fixture(scope="module")
def tiny(data: TrainingStore, tmp_path_factory) -> str:
    return str(build_tiny_causal_lm(tmp_path_factory.mktemp("tiny") / "model", data.texts(), seed=0))


@pytest.fixture(scope="module")
def trained_rm(data: TrainingStore, tiny: str, tmp_path_factory):
    out = tmp_path_factory.mktemp("rm") / "model"
    result = train_from_store(data.store, "rm", tiny, out, DataConfig(**RUBRIC_DATA), RMConfig(**TINY))
    return out, result


def losses(result) -> list[float]:
    return [x["loss"] for x in result.log_history if "loss" in x]


def manifest(out: Path) -> dict:
    return json.loads((out / MANIFEST).read_text())


# -- data ---------------------------------------------------------------------------------------
def test_filters_select_exactly_the_matching_pairs(data: TrainingStore):
    got = [p.id for p in select_pairs(data.store, DataConfig(**RUBRIC_DATA))]
    assert got == data.rubric_pair_ids and len(got) == len(QA)
    everything = [p.id for p in select_pairs(data.store, DataConfig(kinds=["rubric"]))]
    assert everything == sorted(data.rubric_pair_ids + [data.zh_pair_id, data.low_margin_pair_id])
    assert [p.id for p in select_pairs(data.store, DataConfig(kinds=["esc"]))] == data.esc_pair_ids


def test_hash_split_is_deterministic_and_leak_free(data: TrainingStore):
    cfg = DataConfig(kinds=["rubric", "esc"], eval_fraction=0.3)
    pairs = select_pairs(data.store, cfg)
    first = split_pairs(pairs, cfg)
    again = split_pairs(list(reversed(pairs)), cfg)
    assert first.train_ids == again.train_ids and first.eval_ids == again.eval_ids
    assert first.train and first.eval
    # no item and no prompt on both sides; ESC turns of one dialogue stay together
    for attr in ("item_id", "prompt_hash"):
        assert not {getattr(p, attr) for p in first.train} & {getattr(p, attr) for p in first.eval}
    groups = split_groups(pairs)
    esc = [p for p in pairs if p.kind == "esc"]
    assert len({groups[p.id] for p in esc}) == 3  # one group per dialogue
    # another salt gives another split: the split really depends on the hash
    salted = [split_pairs(pairs, DataConfig(kinds=cfg.kinds, eval_fraction=0.3, split_salt=f"s{n}")).eval_ids
              for n in range(4)]
    assert any(ids != first.eval_ids for ids in salted)
    # a pair sharing a prompt with a held-out pair (a different item) joins its group
    held = first.eval[0]
    twin = held.__class__(**{**held.__dict__, "id": 10_000, "item_id": 99_999})
    assert split_groups([*pairs, twin])[10_000] == split_groups([*pairs, twin])[held.id]


def test_config_from_toml_refuses_unknown_keys():
    table = tomllib.loads('[train.data]\nlanguage = "en"\n[train.grpo]\nnum_generations = 4\na = 0.3\n')
    data_cfg, cfg = load_configs("grpo", train_table(table), {"beta": 0.1})
    assert (data_cfg.language, data_cfg.kinds, cfg.num_generations, cfg.a, cfg.beta) == ("en", ["rubric"], 4, 0.3, 0.1)
    assert (cfg.learning_rate, GRPOConfig().beta, GRPOConfig().num_generations) == (1e-6, 0.04, 8)
    # a file without a [train] table is the table itself; each of its tables replaces the settings file's
    settings = {"grpo": {"a": 0.3, "beta": 0.2}, "data": {"language": "en"}}
    assert train_table({"grpo": {"a": 0.4}}, settings) == {"grpo": {"a": 0.4}, "data": {"language": "en"}}
    assert train_table(None, settings) == settings
    with pytest.raises(ValueError, match=r"\[train.grpo\]: unknown setting 'num_generation' \(did you mean "
                                         r"'num_generations'\?\)"):
        load_configs("grpo", train_table(tomllib.loads("[train.grpo]\nnum_generation = 4\n")))


def test_training_imports_only_lower_layers_and_queries_through_the_store():
    """training/ sits above agents, benchmarks and store: no carealign or graphs (not even lazily),
    and no SQL of its own: queries live in store.training (store.models only for type hints)."""
    for path in sorted((Path(__file__).parents[1] / "training").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                       and getattr(block.test, "id", None) == "TYPE_CHECKING" for n in ast.walk(block)}
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                assert name.split(".")[0] not in ("carealign", "graphs", "sqlalchemy"), f"{path.name} imports {name}"
                assert name != "store.models" or id(node) in typing_only, f"{path.name} imports {name}"


# -- reward -------------------------------------------------------------------------------------
def test_a_vetoed_response_always_gets_less_reward_than_any_unvetoed_one():
    grid = [RubricScore(s1, s2, s3) for s1, s2, s3 in itertools.product((0.0, 0.5, 1.0), range(5), range(3))]
    fn = RubricReward(lambda items: [grid[int(text)] for _, text, _ in items], RewardConfig())
    got = fn(prompts=["q"] * len(grid), completions=[str(n) for n in range(len(grid))],
             rubric=[json.dumps(RUBRIC)] * len(grid))
    worst_clean = min(r for r, s in zip(got, grid, strict=True) if s.s3 == 0)
    best_vetoed = max(r for r, s in zip(got, grid, strict=True) if s.s3 > 0)
    assert best_vetoed < worst_clean
    assert (worst_clean, best_vetoed) == (0.0, pytest.approx(1.2 - 1.5))
    assert got == [policy_reward(s, RewardConfig()) for s in grid]


def test_rubric_reward_logs_veto_rate_and_scores_each_completion():
    seen, logged = [], {}
    scores = {"safe": RubricScore(0.4, 1, 0), "unsafe": RubricScore(1.0, 4, 1)}

    def fake_scores(items):
        seen.extend(items)
        return [scores[text] for _, text, _ in items]

    fn = RubricReward(fake_scores, RewardConfig())
    rubric = json.dumps(RUBRIC)
    out = fn(prompts=[[{"role": "user", "content": "q"}]] * 2,
             completions=[[{"role": "assistant", "content": "safe"}], [{"role": "assistant", "content": "unsafe"}]],
             rubric=[rubric, rubric], log_metric=lambda k, v: logged.__setitem__(k, v))
    assert out == [pytest.approx(0.9), pytest.approx(1.2 - 1.5)]
    assert out[1] < out[0]
    assert logged == {"rubric/veto_rate": 0.5, "rubric/s1_mean": pytest.approx(0.7), "rubric/s2_mean": 2.5}
    assert seen[0][0] == [{"role": "user", "content": "q"}] and isinstance(seen[0][2], Rubric)


# -- methods ------------------------------------------------------------------------------------
def test_rm_trains_reloads_scores_and_records_its_pairs(data: TrainingStore, trained_rm):
    out, result = trained_rm
    assert len(losses(result)) == 2 and all(math.isfinite(x) for x in losses(result))
    split = load_split(data.store, DataConfig(**RUBRIC_DATA), calibration=True)
    m = manifest(out)
    assert (m["pair_ids"], m["calibration_pair_ids"], m["eval_pair_ids"]) == \
        (split.train_ids, split.calibration_ids, split.eval_ids)
    assert split.sizes() == m["split_sizes"] == {"train": 4, "calibration": 2, "test": 4}
    assert not set(m["pair_ids"]) & {data.zh_pair_id, data.low_margin_pair_id, *split.eval_ids, *data.esc_pair_ids,
                                     *split.calibration_ids}
    assert m["pair_ids_sha256"] == pair_ids_sha256(split.train_ids)
    assert m["counts"] == {"selected_train_pairs": 4, "train_pairs": 4, "calibration_pairs": 2, "eval_pairs": 4,
                           "rows": 12}
    assert m["store_url"].startswith("sqlite:///") and m["libraries"]["trl"] and m["code_version"]
    assert (out / "README.md").read_text().count(m["pair_ids_sha256"]) == 1
    # 3 rows per pair: "doctor" ties (both meet it) and is skipped; the veto row prefers the safe answer
    assert (result.stats["rows"], result.stats["ties"]) == (12, 4)
    ev = result.stats["evaluation"]
    assert ev["test_judged_pairs"] == 4 and ev["criterion_rows"] == 12
    assert set(ev["criterion_accuracy_per_kind"]) == {"proficiency", "bonus", "veto"}
    # thresholds from the 2 calibration pairs (2 answers each), not from the 4 test pairs
    assert ev["calibration"]["veto"]["n"] == 4 and ev["calibration"]["veto"]["calibrated"]
    assert set(ev["safety"]) >= {"precision", "recall", "f1"}

    scorer = RewardScorer.load(out)
    assert scorer.thresholds == json.loads((out / "carealign_rm.json").read_text())["thresholds"]
    q, good, bad = QA[0]
    s = scorer.score(q, good, RUBRIC)
    assert set(s.per_criterion) == {"correct", "doctor", "empathy", "danger"}
    assert all(math.isfinite(v) for v in s.per_criterion.values())
    assert s.s1 in (0.0, 0.4, 0.6, 1.0) and s.s2 in (0, 1) and s.s3 in (0, 1)
    # the scorer's S1/S2/S3 follow its verdicts through the rubric
    assert s.rubric_score == Rubric.model_validate(RUBRIC).score(s.verdicts)
    with data.store.session() as sess:
        run = sess.get(Run, result.run_id)
        assert (run.kind, run.status, run.stats["final_loss"]) == ("train-rm", "completed", losses(result)[-1])


def test_multihead_rm_trains_and_scores(data: TrainingStore, tiny: str, tmp_path: Path):
    out = tmp_path / "mh"
    result = train_from_store(data.store, "rm", tiny, out, DataConfig(**RUBRIC_DATA),
                              RMConfig(variant="multihead", **TINY))
    assert len(losses(result)) == 2 and all(math.isfinite(x) for x in losses(result))
    assert result.counts["rows"] == 8  # 4 training pairs x 2 judged candidates
    s = RewardScorer.load(out).score(QA[1][0], QA[1][1], RUBRIC)
    assert set(s.verdicts) == {"correct", "doctor", "empathy", "danger"}
    split = load_split(data.store, DataConfig(**RUBRIC_DATA), calibration=True)
    assert (manifest(out)["pair_ids"], manifest(out)["calibration_pair_ids"]) == (split.train_ids,
                                                                                  split.calibration_ids)
    assert result.stats["evaluation"]["calibration_judged_pairs"] == 2


def test_grpo_trains_with_the_reward_model(data: TrainingStore, tiny: str, trained_rm, tmp_path: Path):
    rm_dir, _ = trained_rm
    out = tmp_path / "grpo"
    cfg = GRPOConfig(**{**TINY, "learning_rate": 1e-4}, num_generations=2, max_completion_length=8,
                       reward_model=str(rm_dir))
    result = train_from_store(data.store, "grpo", tiny, out, DataConfig(**RUBRIC_DATA), cfg)
    logs = [x for x in result.log_history if "loss" in x]
    assert len(logs) == 2 and all(math.isfinite(x["loss"]) for x in logs)
    assert all(0.0 <= x["rubric/veto_rate"] <= 1.0 and 0.0 <= x["rubric/s1_mean"] <= 1.0 for x in logs)
    assert manifest(out)["pair_ids"] == load_split(data.store, DataConfig(**RUBRIC_DATA)).train_ids
    assert result.counts["prompts"] == 6
    # the frozen reward model sits on the trainer's device (here the CPU: use_cpu), float32 off a GPU
    assert result.stats["reward_model"] == {"device": "cpu", "batch_size": 64, "dtype": "torch.float32"}
    # the per-step S1/S2/veto figures are in the TensorBoard logs next to the model
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "runs"))
    events.Reload()
    assert {"train/rubric/veto_rate", "train/rubric/s1_mean", "train/rubric/s2_mean", "train/loss"} <= \
        set(events.Tags()["scalars"])
    _reloads_and_generates(out)


@pytest.mark.gpu
@pytest.mark.parametrize("variant", ["criteria", "multihead"])
def test_batched_reward_scores_equal_one_by_one(data: TrainingStore, tiny: str, trained_rm, tmp_path: Path,
                                                variant: str):
    """Every (completion, criterion) row of a GRPO step in batches (padded, longest first) scores as
    each row alone does; on a GPU the same check runs there (in float32)."""
    from training.rm_scorer import pick_device

    if variant == "criteria":
        folder = trained_rm[0]
    else:
        folder = tmp_path / "mh"
        train_from_store(data.store, "rm", tiny, folder, DataConfig(**RUBRIC_DATA),
                         RMConfig(variant="multihead", **TINY))
    items = [([{"role": "user", "content": q}], answer, Rubric.model_validate(RUBRIC))
             for q, good, bad in QA for answer in (good, bad, good[:7])]
    device = pick_device()
    batched = RewardScorer.load(folder, batch_size=64, device=device).raw_scores(items)
    alone = RewardScorer.load(folder, batch_size=1, device=device).raw_scores(items)
    assert len(batched) == len(items) and all(len(b) == 4 for b in batched)
    for b, a in zip(batched, alone, strict=True):
        assert b.keys() == a.keys()
        assert all(abs(b[k] - a[k]) <= 1e-5 for k in b), (b, a)


def test_cso_trains_on_esc_turn_pairs(data: TrainingStore, tiny: str, tmp_path: Path):
    out = tmp_path / "cso"
    dcfg = DataConfig(kinds=["esc"], eval_fraction=0.6)  # the first dialogue's 2 turns are held out
    result = train_from_store(data.store, "cso", tiny, out, dcfg, CSOConfig(**{**TINY, "learning_rate": 1e-3}))
    got = losses(result)
    assert len(got) == 2 and got[0] == pytest.approx(math.log(2), abs=1e-4)  # policy == reference at step 1
    split = load_split(data.store, dcfg)
    assert split.eval_ids == data.esc_pair_ids[:2] and split.train_ids == data.esc_pair_ids[2:]
    assert manifest(out)["pair_ids"] == split.train_ids and manifest(out)["eval_pair_ids"] == split.eval_ids
    assert math.isfinite(result.stats["evaluation"]["eval_loss"])
    _reloads_and_generates(out)


def test_sft_trains_on_preferred_turns(data: TrainingStore, tiny: str, tmp_path: Path):
    out = tmp_path / "sft"
    result = train_from_store(data.store, "sft", tiny, out, DataConfig(kinds=["esc"], eval_fraction=0.0),
                              SFTConfig(**TINY))
    assert len(losses(result)) == 2 and all(math.isfinite(x) for x in losses(result))
    assert manifest(out)["pair_ids"] == data.esc_pair_ids and result.counts["rows"] == 6
    _reloads_and_generates(out)


def _reloads_and_generates(folder: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    ids = tok.apply_chat_template([{"role": "user", "content": "I cannot sleep."}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    with torch.no_grad():
        logits = model(**ids).logits
    assert torch.isfinite(logits).all()


# -- CLI ----------------------------------------------------------------------------------------
def test_cli_trains_sft_and_records_the_run(data: TrainingStore, tiny: str, tmp_path: Path):
    from carealign.cli import app

    out = tmp_path / "cli_sft"
    conf = tmp_path / "train.toml"
    conf.write_text('[train.data]\neval_fraction = 0.0\n[train.sft]\nmax_steps = 1\nuse_cpu = true\n'
                    'per_device_train_batch_size = 2\nmax_length = 256\nlogging_steps = 1\n')
    url = str(data.store.url)
    res = CliRunner().invoke(app, ["--db", url, "train", "sft", "--model", tiny, "--out", str(out),
                                   "--config", str(conf), "--kind", "esc"])
    assert res.exit_code == 0, res.output
    m = manifest(out)
    assert m["pair_ids"] == data.esc_pair_ids and m["config"]["max_steps"] == 1 and m["stats"]["steps"] == 1
    assert f"run {m['run_id']}" in " ".join(res.output.split())  # rich wraps long lines
    bad = CliRunner().invoke(app, ["--db", url, "train", "sft", "--model", tiny, "--out", str(out),
                                   "--kind", "nothing-like-this"])
    assert bad.exit_code == 2 and "no pairs match" in " ".join(bad.output.split())


def test_cli_grpo_with_the_llm_judge_records_its_calls(data: TrainingStore, tiny: str, tmp_path: Path, fake_server):
    from sqlalchemy import func, select

    from carealign.cli import app
    from store.models import LLMCall

    # the judge says every criterion is met and no veto is violated: S1 = 1, S2 = 1, S3 = 0, reward 1.2
    fake_server.responder = lambda body: json.dumps(
        {"explanation": "ok", "criteria_met": "UNDESIRABLE" not in body["messages"][-1]["content"]})
    out = tmp_path / "grpo_judge"
    conf = tmp_path / "grpo.toml"
    conf.write_text('[train.grpo]\nreward_source = "judge"\nnum_generations = 2\nmax_completion_length = 6\n'
                    'max_steps = 1\nuse_cpu = true\nper_device_train_batch_size = 2\nlogging_steps = 1\n'
                    'max_length = 128\n')
    res = CliRunner().invoke(app, ["--db", str(data.store.url), "--base-url", fake_server.base_url, "--model",
                                   "fake-model", "train", "grpo", "--model", tiny, "--out", str(out),
                                   "--config", str(conf), "--language", "en", "--min-margin", "0.5",
                                   "--eval-fraction", "0.3"])
    assert res.exit_code == 0, res.output
    m = manifest(out)
    step = m["stats"]["per_step"][0]
    assert (step["rubric/veto_rate"], step["rubric/s1_mean"], step["rubric/s2_mean"]) == (0.0, 1.0, 1.0)
    assert step["reward"] == pytest.approx(1.2)
    assert m["pair_ids"] == load_split(data.store, DataConfig(**RUBRIC_DATA)).train_ids
    with data.store.session() as s:
        calls = s.scalar(select(func.count()).select_from(LLMCall).where(LLMCall.run_id == m["run_id"]))
    assert calls == len(fake_server.requests) and 0 < calls <= 2 * len(RUBRIC["criteria"])


def test_lora_rm_is_merged_for_scoring_and_lora_sft_saves_an_adapter(data: TrainingStore, tiny: str, tmp_path: Path):
    lora = dict(TINY, lora=True, lora_r=4, lora_alpha=8, max_steps=1)
    rm = train_from_store(data.store, "rm", tiny, tmp_path / "rm", DataConfig(**RUBRIC_DATA), RMConfig(**lora))
    assert math.isfinite(losses(rm)[0]) and not (tmp_path / "rm" / "adapter_config.json").exists()
    s = RewardScorer.load(tmp_path / "rm").score(QA[2][0], QA[2][1], RUBRIC)
    assert all(math.isfinite(v) for v in s.per_criterion.values())
    sft = train_from_store(data.store, "sft", tiny, tmp_path / "sft", DataConfig(kinds=["esc"], eval_fraction=0.0),
                           SFTConfig(**lora))
    assert math.isfinite(losses(sft)[0])
    adapter = json.loads((tmp_path / "sft" / "adapter_config.json").read_text())
    assert (adapter["r"], adapter["base_model_name_or_path"]) == (4, tiny)
    _reloads_and_generates(tmp_path / "sft")


def test_grpo_settings_refuse_a_veto_that_utility_could_buy_back():
    with pytest.raises(ValueError, match="l must be at least 1 \\+ b"):
        load_configs("grpo", {"grpo": {"l": 1.1, "b": 0.2}})


def test_cli_bad_input_is_one_line_and_leaves_nothing_behind(tmp_path):
    from carealign.cli import app

    db, out = tmp_path / "none.db", tmp_path / "model"
    res = CliRunner().invoke(app, ["--db", str(db), "train", "sft", "--model", str(tmp_path / "missing"),
                                   "--out", str(out)])
    assert res.exit_code == 2 and "no such folder" in res.output
    res = CliRunner().invoke(app, ["--db", str(db), "train", "sft", "--model", "some/model-id", "--out", str(out)])
    assert res.exit_code == 2 and "no store at" in res.output and not db.exists()
    Store(f"sqlite:///{db}").ensure_schema()
    res = CliRunner().invoke(app, ["--db", str(db), "train", "sft", "--model", "some/model-id", "--out", str(out)])
    assert res.exit_code == 2 and "no pairs match the selection" in res.output
    assert not out.exists()  # no empty model folder
