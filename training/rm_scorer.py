"""A trained reward model, either variant, as a scorer; its calibration and held-out evaluation.

Per-criterion scores become S1/S2/S3 through per-kind thresholds calibrated on the calibration
split's judged candidates (the reported figures come from the disjoint test split); those
thresholds, the variant and the criterion template (or the heads) are saved next to the model in
``carealign_rm.json``, so ``RewardScorer.load(path)`` scores exactly as trained.
Both trainers in ``training.rm_trainer`` and the GRPO reward use this module; it trains nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agents.rubric import (
    BONUS_DIMENSIONS,
    HEALTHBENCH_AXES,
    PROFICIENCY_DIMENSIONS,
    VETO_DIMENSIONS,
    Rubric,
    prefer,
)
from benchmarks.healthbench import PairRecord, pairwise_report
from store import Store
from training.criteria import (
    KINDS,
    CriterionRows,
    CriterionVerdict,
    RMScore,
    as_messages,
    calibrate,
    criterion_rows,
    inject,
    load_verdicts,
    rm_score,
)
from training.data import SelectedPair, item_rubrics
from training.rm_config import RMConfig

RM_META = "carealign_rm.json"

# the multihead variant's outputs: one per rubric dimension, then one per kind for criteria without one
HEADS = list(dict.fromkeys([*PROFICIENCY_DIMENSIONS, *BONUS_DIMENSIONS, *VETO_DIMENSIONS, *HEALTHBENCH_AXES]))
HEADS += [f"kind:{k}" for k in KINDS]


def head_index(heads: list[str], kind: str, dimension: str | None) -> int:
    return heads.index(dimension) if dimension in heads else heads.index(f"kind:{kind}")



def pick_device(device: str | None = None) -> str:
    """``device``, else the first GPU when there is one, else the CPU."""
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_dtype(dtype: str, device: str):
    """``auto``: bfloat16 on a GPU that supports it (half the memory, tensor cores), else float32."""
    import torch

    if dtype == "auto":
        on_gpu = str(device).startswith("cuda") and torch.cuda.is_available()
        return torch.bfloat16 if on_gpu and torch.cuda.is_bf16_supported() else torch.float32
    return {"bfloat16": torch.bfloat16, "float32": torch.float32}[dtype]


class RewardScorer:
    """A trained reward model (either variant) with its thresholds: per-criterion scores and S1/S2/S3.

    Every row to score (a (conversation, response) pair, or one per criterion for the criteria
    variant) goes through the model in batches of ``batch_size``, longest first so a batch pads
    little; results come back in input order. Padding never changes a score: the classification
    head reads the last real token and padded positions are masked."""

    def __init__(self, model: Any, tokenizer: Any, meta: dict[str, Any], batch_size: int = 32):
        self.model, self.tokenizer, self.meta, self.batch_size = model, tokenizer, meta, batch_size
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model.eval()

    @classmethod
    def load(cls, path: str | Path, batch_size: int = 32, device: str | None = None,
             dtype: str = "float32") -> RewardScorer:
        """The model at ``path`` on ``device`` (default: the GPU if any) in ``dtype`` (``auto``:
        bfloat16 where the GPU supports it)."""
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        meta_path = Path(path) / RM_META
        if not meta_path.is_file():
            raise FileNotFoundError(f"{path} holds no {RM_META}: not a model trained by `carealign train rm`")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{meta_path}: not valid JSON ({exc}); the folder's reward model is damaged") from None
        if not isinstance(meta, dict) or "thresholds" not in meta:
            raise ValueError(f"{meta_path}: field 'thresholds' is missing; not a model trained by `carealign train rm`")
        device = pick_device(device)
        model = AutoModelForSequenceClassification.from_pretrained(str(path), dtype=pick_dtype(dtype, device))
        return cls(model.to(device), AutoTokenizer.from_pretrained(str(path)), meta, batch_size)

    def to(self, device: Any, dtype: str | None = None) -> RewardScorer:
        """Move the model (GRPO: onto the trainer's device once the trainer has placed the policy)."""
        self.model.to(device=device, dtype=pick_dtype(dtype, str(device)) if dtype else None)
        return self

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> Any:
        return next(self.model.parameters()).dtype

    @property
    def thresholds(self) -> dict[str, float]:
        return self.meta["thresholds"]

    def _forward(self, conversations: list[list[dict[str, Any]]]) -> list[list[float]]:
        import torch

        max_length = self.meta.get("max_length")
        enc = [self.tokenizer.apply_chat_template(c, tokenize=True, return_dict=True)["input_ids"]
               for c in conversations]
        enc = [ids[:max_length] if max_length else ids for ids in enc]
        order = sorted(range(len(enc)), key=lambda i: -len(enc[i]))
        out: list[list[float]] = [[] for _ in enc]
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            batch = self.tokenizer.pad({"input_ids": [enc[i] for i in chunk]}, return_tensors="pt")
            with torch.inference_mode():
                logits = self.model(input_ids=batch["input_ids"].to(self.device),
                                    attention_mask=batch["attention_mask"].to(self.device)).logits
            for i, row in zip(chunk, logits.float().cpu().tolist(), strict=True):
                out[i] = row
        return out

    def raw_scores(self, items: list[tuple[list[dict[str, Any]], str, Rubric]]) -> list[dict[str, float]]:
        """Per-criterion score (higher = better on it) for each (conversation, response, rubric)."""
        if self.meta["variant"] == "multihead":
            logits = self._forward([[*conv, {"role": "assistant", "content": resp}] for conv, resp, _ in items])
            heads = self.meta["heads"]
            return [{c.id: row[head_index(heads, c.kind.value, c.dimension)] for c in rubric.criteria}
                    for row, (_, _, rubric) in zip(logits, items, strict=True)]
        convs, where = [], []
        for n, (conv, resp, rubric) in enumerate(items):
            for c in rubric.criteria:
                convs.append(criterion_input(conv, resp, c.kind.value, c.text, self.meta["criterion_template"]))
                where.append((n, c.id))
        out: list[dict[str, float]] = [{} for _ in items]
        for (n, cid), row in zip(where, self._forward(convs), strict=True):
            out[n][cid] = row[0]
        return out

    def score_many(self, items: list[tuple[str | list[dict[str, Any]], str, Rubric | dict]]) -> list[RMScore]:
        ready = [(as_messages(i), r, rb if isinstance(rb, Rubric) else Rubric.model_validate(rb)) for i, r, rb in items]
        raw = self.raw_scores(ready)
        return [rm_score(rb, r, self.thresholds) for (_, _, rb), r in zip(ready, raw, strict=True)]

    def score(self, instruction: str | list[dict[str, Any]], response: str, rubric: Rubric | dict) -> RMScore:
        """Per-criterion scores, verdicts and S1/S2/S3 of one response under one rubric."""
        return self.score_many([(instruction, response, rubric)])[0]


def criterion_input(conv: list[dict[str, Any]], response: str, kind: str, text: str,
                    template: str) -> list[dict[str, Any]]:
    """What the criteria variant reads for r(y | x, c): the conversation x with the criterion c
    injected, then the response y as the assistant turn (the same shape it was trained on)."""
    return [*inject(conv, kind, text, template), {"role": "assistant", "content": response}]


# -- calibration and evaluation on held-out pairs -----------------------------------------------
def _judged(pairs: list[SelectedPair], verdicts: dict[int, dict[str, CriterionVerdict]],
            rubrics: dict[int, dict[str, Any]]):
    """Held-out (pair, rubric, chosen verdicts, rejected verdicts) with a rubric and verdicts on both sides."""
    for p in pairs:
        rubric = rubrics.get(p.item_id) if p.item_id is not None else None
        a, b = verdicts.get(p.chosen_candidate_id or -1), verdicts.get(p.rejected_candidate_id or -1)
        if rubric and a and b:
            yield p, Rubric.model_validate(rubric), a, b


def threshold_samples(scorer: RewardScorer, store: Store, pairs: list[SelectedPair]):
    """(judged pairs, their raw scores chosen/rejected interleaved, per-kind (score, good) samples)."""
    verdicts = load_verdicts(store, pairs)
    judged = list(_judged(pairs, verdicts, item_rubrics(store, {p.item_id for p in pairs})))
    raw = scorer.raw_scores([(p.prompt, text, rb) for p, rb, _, _ in judged for text in (p.chosen, p.rejected)])
    samples: dict[str, list[tuple[float, bool]]] = {}
    for n, (_, rubric, a, b) in enumerate(judged):
        for side, vs in ((raw[2 * n], a), (raw[2 * n + 1], b)):
            for c in rubric.criteria:
                v = vs.get(c.id) or vs.get(c.text)
                if v is not None:
                    samples.setdefault(c.kind.value, []).append((side[c.id], v.good >= 0.5))
    return judged, raw, samples


def calibrate_and_evaluate(scorer: RewardScorer, store: Store, calibration: list[SelectedPair],
                           test: list[SelectedPair], rows: CriterionRows) -> dict[str, Any]:
    """Thresholds from the calibration pairs' judged candidates (set on ``scorer``); then, on the
    test pairs only, pairwise accuracy (whole pairs, and criterion rows per kind) and safety P/R/F1
    with those thresholds. The two splits are disjoint, so no figure is measured on the pairs that
    chose its threshold. Without judged calibration pairs the thresholds stay at 0.0 (uncalibrated)
    and the report says so."""
    cal_judged, _, samples = threshold_samples(scorer, store, calibration) if calibration else ([], [], {})
    cal = calibrate(samples)
    scorer.meta.update(cal)
    report: dict[str, Any] = {**cal, "calibration_pairs": len(calibration), "calibration_judged_pairs": len(cal_judged),
                              "test_pairs": len(test)}
    if not cal_judged:
        report["notes"] = ["no judged calibration pairs: thresholds are the uncalibrated 0.0; raise "
                           "calibration_fraction for calibrated S1/S2/S3"]
    judged, raw, _ = threshold_samples(scorer, store, test) if test else ([], [], {})
    report["test_judged_pairs"] = len(judged)
    records = []
    for n, (_, rubric, a, b) in enumerate(judged):
        sa, sb = rm_score(rubric, raw[2 * n], scorer.thresholds), rm_score(rubric, raw[2 * n + 1], scorer.thresholds)
        vetoes = [c for c in rubric.criteria if c.kind.value == "veto" and (a.get(c.id) or a.get(c.text))
                  and (b.get(c.id) or b.get(c.text))]
        gold = [(a.get(c.id) or a.get(c.text)).good < 0.5 for c in vetoes] + \
               [(b.get(c.id) or b.get(c.text)).good < 0.5 for c in vetoes]
        pred = [sa.verdicts[c.id] for c in vetoes] + [sb.verdicts[c.id] for c in vetoes]
        order = prefer(sa.rubric_score, sb.rubric_score)
        records.append(PairRecord("a", {1: "a", -1: "b", 0: "tie"}[order], "pair", gold, pred))
    if records:
        r = pairwise_report(records)
        report.update(pair_accuracy=r.accuracy, pairs_evaluated=r.n, safety={
            "precision": r.safety.precision, "recall": r.safety.recall, "f1": r.safety.f1,
            "tp": r.safety.tp, "fp": r.safety.fp, "fn": r.safety.fn})
    report.update(criterion_row_accuracy(scorer, rows))
    return report


def criterion_row_accuracy(scorer: RewardScorer, rows: CriterionRows) -> dict[str, Any]:
    """Share of (pair, criterion) rows whose better answer on the criterion scores higher, overall
    and per kind (no threshold involved); empty when there are no rows."""
    if not rows.rows:
        return {}
    row_raw = scorer.raw_scores([(r["base_prompt"], resp, _single(r)) for r in rows.rows
                                 for resp in (r["chosen"][0]["content"], r["rejected"][0]["content"])])
    crit = [PairRecord("a", "a" if row_raw[2 * i]["c"] > row_raw[2 * i + 1]["c"] else "b", r["criterion_kind"])
            for i, r in enumerate(rows.rows)]
    cr = pairwise_report(crit)
    per_kind = {k: {"accuracy": g.accuracy, "n": g.n} for k, g in cr.per_kind.items()}
    return {"criterion_accuracy": cr.accuracy, "criterion_rows": cr.n, "criterion_accuracy_per_kind": per_kind}


def _single(row: dict[str, Any]) -> Rubric:
    """A one-criterion rubric standing for the criterion of a held-out row (id ``c``)."""
    from agents.rubric import RubricCriterion

    text, kind = row["criterion_text"], row["criterion_kind"]
    weight = 1.0 if kind == "proficiency" else None
    return Rubric(criteria=[RubricCriterion(id="c", text=text, kind=kind, weight=weight)])


def build_rows(store: Store, pairs: list[SelectedPair], cfg: RMConfig) -> CriterionRows:
    """The (pair, criterion) rows of ``pairs`` from their stored verdicts, as the criteria variant
    trains on them; both variants evaluate on the held-out pairs' rows."""
    return criterion_rows(pairs, load_verdicts(store, pairs), cfg.criterion_template, cfg.tie_policy)
