"""The model-based correction metrics of MEDIQA-CORR 2024, when their model files are on this machine.

The shared task scores corrections with BERTScore (F1 of microsoft/deberta-xlarge-mnli, layer 40,
rescaled with bert-score's shipped baseline for that model) and BLEURT-20 (google-research's
``bleurt`` package, a TensorFlow library installed from its repository). Nothing is ever
downloaded: each scorer exists only when its package imports and its local folder holds the model,
and otherwise a note says why it was not computed, so a report never shows a figure it did not
compute. Clipping and the composite rule are ``benchmarks.mediqa_corr``'s.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.mediqa_corr import BERTSCORE, BLEURT, Scorer

BERTSCORE_MODEL = "microsoft/deberta-xlarge-mnli"  # the task's choice (evaluation script 2)


def _bertscore(folder: Path, layers: int) -> Scorer:
    """F1 of bert-score on the local folder, the model loaded once, on the first pairs to score."""
    import bert_score

    baseline = Path(bert_score.__file__).parent / "rescale_baseline" / "en" / f"{BERTSCORE_MODEL}.tsv"
    loaded: list[bert_score.BERTScorer] = []

    def score(candidates: list[str], references: list[str]) -> list[float]:
        if not loaded:
            loaded.append(bert_score.BERTScorer(model_type=str(folder), num_layers=layers, lang="en",
                                                rescale_with_baseline=True, baseline_path=str(baseline)))
        _, _, f1 = loaded[0].score(candidates, references)
        return [float(x) for x in f1.tolist()]

    return score


def _bleurt(folder: Path) -> Scorer:
    from bleurt import score as bleurt_score

    scorer = bleurt_score.BleurtScorer(checkpoint=str(folder))

    def score(candidates: list[str], references: list[str]) -> list[float]:
        return [float(x) for x in scorer.score(references=references, candidates=candidates, batch_size=1)]

    return score


def _missing_package(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return True
    return False


def model_scorers(bertscore_model: str = "", bertscore_layers: int = 40,
                  bleurt_checkpoint: str = "") -> tuple[dict[str, Scorer], list[str]]:
    """The scorers whose model files are present (folder paths; empty: not configured), and one note
    per metric left out saying why and which setting would enable it."""
    scorers: dict[str, Scorer] = {}
    notes: list[str] = []
    bert = Path(bertscore_model) if bertscore_model else None
    if bert is None:
        notes.append(f"BERTScore: not computed (no local model files; set factcheck.bertscore_model to a folder "
                     f"holding {BERTSCORE_MODEL})")
    elif not (bert / "config.json").is_file():
        notes.append(f"BERTScore: not computed ({bert} holds no model files: no config.json)")
    elif _missing_package("bert_score"):
        notes.append("BERTScore: not computed (the bert-score package is not installed)")
    else:
        scorers[BERTSCORE] = _bertscore(bert, bertscore_layers)
    ckpt = Path(bleurt_checkpoint) if bleurt_checkpoint else None
    if ckpt is None:
        notes.append("BLEURT: not computed (no local model files; set factcheck.bleurt_checkpoint to a BLEURT-20 "
                     "checkpoint folder, scored with google-research's bleurt package)")
    elif not (ckpt / "bleurt_config.json").is_file():
        notes.append(f"BLEURT: not computed ({ckpt} holds no BLEURT checkpoint: no bleurt_config.json)")
    elif _missing_package("bleurt"):
        notes.append("BLEURT: not computed (google-research's bleurt package is not installed; it is not on PyPI)")
    else:
        scorers[BLEURT] = _bleurt(ckpt)
    return scorers, notes
