"""MEDIQA-CORR 2024's official metrics, over run-file rows and gold rows (``benchmarks.datasets.mediqa_run``).

The rules are those of the shared task's evaluation scripts, repository abachaa/MEDIQA-CORR-2024:
``evaluation/mediqa-corr-2024-eval-script-1-acc-rouge.ipynb.py`` (accuracies, ROUGE) and
``evaluation/mediqa-corr-2024-eval-script-2-all-metrics.py`` (BERTScore, BLEURT, aggregate), with
the composite scores defined in its ``README.md``:

- Error Flags Accuracy: texts whose predicted flag equals the gold flag, over all gold texts (a text
  missing from the run counts as wrong).
- Error Sentence Detection Accuracy: texts whose predicted sentence id equals the gold one, over all
  gold texts; a correct text's gold id is -1, so predicting -1 for it is a match.
- Corrections, per gold text: a prediction with flag 0 is ``NA`` whatever it says; leading and
  trailing double quotes of a correction are stripped. Both ``NA``: 1 point; only one ``NA`` (a missed
  error, or a correction of a correct text): 0; both sentences: the NLG metric. The composite score is
  the sum over all gold texts divided by their number (``R1FC``, ``R2FC``, ``RLFC``, ``BERTC``,
  ``BLEURTC``); the pair mean is the metric over the sentence pairs alone (``*_subset_check``).
  Note the rule's consequence: a correct text flagged without a correction (``NA``) scores 1.
- ROUGE: F of the ``rouge`` package (pltrdy, 1.0.1) that the scripts import, reimplemented here
  without recursion: the text is cut into sentences at every ".", words are split on spaces, case and
  other punctuation are kept, n-grams are counted as sets (each distinct n-gram once), F =
  2PR / (P + R + 1e-8), and ROUGE-L is the summary-level union LCS over distinct words. It differs
  from Google's ``rouge-score`` (lower-cased, punctuation dropped, counted n-grams, sentence-level
  LCS). A sentence left with no words (".") raises in that package; here it scores 0.
- BERTScore (F1 of microsoft/deberta-xlarge-mnli, rescaled with its baseline) and BLEURT (BLEURT-20)
  are clipped to [0, 1]; Aggregate is the mean of ROUGE-1 F, BERTScore and BLEURT per pair. They
  need model files, so they come in as optional ``scorers`` (``benchmarks.mediqa_scorers``); the
  Aggregate-Composite (the task's ranking score) is given only when both are there.

Differences from the script, all on input it would mis-read: ids are compared as read (the script
drops lines whose id is not ``[a-z0-9-]+``), sentence ids as integers (it compares strings), and a
run id absent from the gold texts is an error here (the script ignores it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from benchmarks.datasets.mediqa_run import NA, GoldRow, RunRow

# a scorer maps (candidates, references) to one score per pair
Scorer = Callable[[list[str], list[str]], list[float]]
ROUGE = ("ROUGE-1", "ROUGE-2", "ROUGE-L")
BERTSCORE, BLEURT, AGGREGATE = "BERTScore", "BLEURT", "Aggregate"


# -- ROUGE as the ``rouge`` package computes it ------------------------------------------------------
def _sentences(text: str) -> list[str]:
    # the emptiness test comes before the whitespace is collapsed: " " survives as an empty sentence
    return [" ".join(part.split()) for part in text.split(".") if len(part) > 0]


def _words(sentences: Sequence[str]) -> list[str]:
    return [w for s in sentences for w in s.split(" ")]


def _f(p: float, r: float) -> float:
    return 2.0 * ((p * r) / (p + r + 1e-8))


def rouge_n_f(candidate: str, reference: str, n: int) -> float:
    """ROUGE-N F of one pair (distinct n-grams, as the ``rouge`` package counts them)."""
    cand, ref = _sentences(candidate), _sentences(reference)
    if not cand or not ref:
        return 0.0
    cw, rw = _words(cand), _words(ref)
    c = {tuple(cw[i:i + n]) for i in range(len(cw) - n + 1)}
    r = {tuple(rw[i:i + n]) for i in range(len(rw) - n + 1)}
    overlap = len(c & r)
    return _f(overlap / len(c) if c else 0.0, overlap / len(r) if r else 0.0)


def _lcs_words(x: list[str], y: list[str]) -> set[str]:
    """The words of one longest common subsequence, traced back the way the ``rouge`` package does."""
    table = [[0] * (len(y) + 1) for _ in range(len(x) + 1)]
    for i in range(1, len(x) + 1):
        for j in range(1, len(y) + 1):
            table[i][j] = table[i - 1][j - 1] + 1 if x[i - 1] == y[j - 1] else max(table[i - 1][j], table[i][j - 1])
    words, i, j = set(), len(x), len(y)
    while i > 0 and j > 0:
        if x[i - 1] == y[j - 1]:
            words.add(x[i - 1])
            i, j = i - 1, j - 1
        elif table[i - 1][j] > table[i][j - 1]:
            i -= 1
        else:
            j -= 1
    return words


def rouge_l_f(candidate: str, reference: str) -> float:
    """Summary-level ROUGE-L F of one pair: the union of the LCS words of each reference sentence
    with each candidate sentence, over the distinct words of each side."""
    cand, ref = _sentences(candidate), _sentences(reference)
    if not cand or not ref:
        return 0.0
    union: set[str] = set()
    for ref_sentence in ref:
        for cand_sentence in cand:
            union |= _lcs_words(ref_sentence.split(" "), cand_sentence.split(" "))
    return _f(len(union) / len(set(_words(cand))), len(union) / len(set(_words(ref))))


def rouge_scores(candidates: list[str], references: list[str]) -> dict[str, list[float]]:
    """ROUGE-1, -2 and -L F of each pair."""
    pairs = list(zip(candidates, references, strict=True))
    return {"ROUGE-1": [rouge_n_f(c, r, 1) for c, r in pairs], "ROUGE-2": [rouge_n_f(c, r, 2) for c, r in pairs],
            "ROUGE-L": [rouge_l_f(c, r) for c, r in pairs]}


# -- the official figures ------------------------------------------------------------------------------
def official_candidate(row: RunRow) -> str:
    """A predicted correction as the official parser keeps it: NA for flag 0, outer quotes stripped."""
    if row.flag == 0:
        return NA
    text = row.correction
    while text.startswith('"') and len(text) > 1:
        text = text[1:]
    while text.endswith('"') and len(text) > 1:
        text = text[:-1]
    return text


@dataclass(frozen=True)
class CorrectionPairs:
    """The corrections to score: sentence pairs, and the texts the NA rule settles."""

    candidates: list[str]
    references: list[str]
    correct_na: int  # both NA: one point each
    total: int  # all gold texts (the composite's denominator)


def correction_pairs(run: Sequence[RunRow], gold: Sequence[GoldRow]) -> CorrectionPairs:
    by_id = {r.text_id: r for r in run}
    candidates, references, correct_na = [], [], 0
    for g in gold:
        row = by_id.get(g.text_id)
        if row is None:  # missing from the run: no point
            continue
        candidate = official_candidate(row)
        if candidate == NA and g.correction == NA:
            correct_na += 1
        elif candidate != NA and g.correction != NA:
            candidates.append(candidate)
            references.append(g.correction)
    return CorrectionPairs(candidates, references, correct_na, len(gold))


@dataclass(frozen=True)
class NLGScore:
    composite: float  # (sum over pairs + both-NA texts) / all texts: the official figure
    pair_mean: float | None  # mean over the sentence pairs (None when there are none)


@dataclass
class OfficialMetrics:
    n_texts: int  # gold texts
    n_unanswered: int | None  # in the run as 0 -1 NA because the method gave no answer (None: not known)
    n_missing: int  # gold texts absent from the run (counted wrong)
    flag_accuracy: float
    sentence_accuracy: float | None  # None when an erroneous gold text has no sentence id
    n_pairs: int  # texts whose gold and predicted corrections are both sentences
    n_correct_na: int
    corrections: dict[str, NLGScore] = field(default_factory=dict)  # ROUGE-1/2/L, BERTScore, BLEURT, Aggregate
    notes: list[str] = field(default_factory=list)  # what was not computed, and why


def _nlg(scores: list[float], pairs: CorrectionPairs) -> NLGScore:
    return NLGScore((sum(scores) + pairs.correct_na) / pairs.total, sum(scores) / len(scores) if scores else None)


def _clip(x: float) -> float:
    return max(0.0, min(1.0, float(x)))


def official_metrics(run: Sequence[RunRow], gold: Sequence[GoldRow], scorers: Mapping[str, Scorer] | None = None,
                     notes: Sequence[str] = ()) -> OfficialMetrics:
    """All official figures of a run against the gold texts. ``scorers`` may hold ``BERTScore`` and
    ``BLEURT`` (clipped to [0, 1]); ``notes`` say why one is absent and are passed through."""
    if not gold:
        raise ValueError("no gold texts to score against")
    gold_ids = {g.text_id for g in gold}
    stray = [r.text_id for r in run if r.text_id not in gold_ids]
    if stray:
        raise ValueError(f"{len(stray)} run text ids are not gold texts (e.g. {stray[:3]})")
    by_id = {r.text_id: r for r in run}
    n = len(gold)
    flags = sum(g.text_id in by_id and by_id[g.text_id].flag == g.flag for g in gold)
    unlocated = sum(g.sentence_id is None for g in gold)
    sentences = sum(g.text_id in by_id and by_id[g.text_id].sentence_id == g.sentence_id for g in gold)
    notes = list(notes)
    if unlocated:
        notes.append(f"Error Sentence Detection Accuracy: not computed ({unlocated} erroneous texts have no gold "
                     "sentence id)")
    pairs = correction_pairs(run, gold)
    per_pair = rouge_scores(pairs.candidates, pairs.references)
    for name, scorer in (scorers or {}).items():
        per_pair[name] = [_clip(x) for x in scorer(pairs.candidates, pairs.references)] if pairs.candidates else []
    if BERTSCORE in per_pair and BLEURT in per_pair:
        parts = [per_pair["ROUGE-1"], per_pair[BERTSCORE], per_pair[BLEURT]]
        per_pair[AGGREGATE] = [sum(xs) / 3 for xs in zip(*parts, strict=True)]
    else:
        notes.append("Aggregate-Composite (the task's ranking score): not computed (needs BERTScore and BLEURT)")
    return OfficialMetrics(
        n_texts=n, n_unanswered=None if any(r.answered is None for r in run) else sum(not r.answered for r in run),
        n_missing=sum(g.text_id not in by_id for g in gold),
        flag_accuracy=flags / n, sentence_accuracy=None if unlocated else sentences / n,
        n_pairs=len(pairs.candidates), n_correct_na=pairs.correct_na,
        corrections={name: _nlg(scores, pairs) for name, scores in per_pair.items()}, notes=notes)
