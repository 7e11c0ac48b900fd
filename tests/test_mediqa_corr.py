"""MEDIQA-CORR 2024 run files and official metrics: hand-computed accuracies, ROUGE against the
packages (``rouge``, which the shared task's script imports, and Google's ``rouge-score``), the
optional model scorers, and export-run / score-run / report end to end on the fake server."""

from __future__ import annotations

import csv
import json
import re
import sys
import types
from pathlib import Path

import pytest
from rouge import Rouge
from rouge_score import rouge_scorer
from sqlalchemy import select
from typer.testing import CliRunner

from benchmarks.datasets.instructions import InputError
from benchmarks.datasets.mediqa_run import (
    NA,
    GoldRow,
    RunRow,
    format_line,
    gold_row,
    read_run_file,
    run_row,
    unofficial_ids,
    write_run_file,
)
from benchmarks.factcheck_report import _id_base
from benchmarks.mediqa_corr import (
    AGGREGATE,
    BERTSCORE,
    BLEURT,
    official_candidate,
    official_metrics,
    rouge_l_f,
    rouge_n_f,
)
from benchmarks.mediqa_scorers import model_scorers
from carealign.cli import app
from store import Store
from store.models import Run

REF_A = "Paracetamol may be taken at up to 4 g a day."
REF_B = "Case B: a stiff neck may mean meningitis."
GOLD = [GoldRow("t-1", 1, 2, REF_A), GoldRow("t-2", 1, 0, REF_B), GoldRow("t-3", 0, -1, NA),
        GoldRow("t-4", 0, -1, NA), GoldRow("t-5", 1, 1, "Metformin is a first-line drug.")]


def official_rouge(candidate: str, reference: str) -> dict[str, float]:
    """ROUGE F as the shared task's script gets it: the ``rouge`` package's get_scores."""
    s = Rouge().get_scores([candidate], [reference])[0]
    return {"ROUGE-1": s["rouge-1"]["f"], "ROUGE-2": s["rouge-2"]["f"], "ROUGE-L": s["rouge-l"]["f"]}


# -- the accuracies and the composite, by hand ---------------------------------------------------------
def test_flag_and_sentence_accuracy_with_unanswered_and_minus_one():
    run = [RunRow("t-1", 1, 2, "Paracetamol may be taken at up to 4 g daily."),  # flag ok, sentence ok
           RunRow("t-2", 1, 1, '"Case B: a stiff neck suggests meningitis."'),  # flag ok, wrong sentence
           RunRow("t-3", 0, -1, NA),  # correct text, -1: flag and sentence both match
           RunRow("t-4", 1, 3, "Something else."),  # over-criticism: both wrong, correction vs NA: 0
           run_row("t-5", None, None, None)]  # unanswered: 0 -1 NA, an erroneous text: all wrong
    m = official_metrics(run, GOLD)
    assert (m.n_texts, m.n_unanswered, m.n_missing) == (5, 1, 0)
    assert m.flag_accuracy == pytest.approx(3 / 5) and m.sentence_accuracy == pytest.approx(2 / 5)
    # pairs: t-1 and t-2 (quotes stripped); t-3 both NA = 1 point; t-4 and t-5 one NA = 0
    assert (m.n_pairs, m.n_correct_na) == (2, 1)
    a = official_rouge("Paracetamol may be taken at up to 4 g daily.", REF_A)
    b = official_rouge("Case B: a stiff neck suggests meningitis.", REF_B)
    for k in ("ROUGE-1", "ROUGE-2", "ROUGE-L"):
        assert m.corrections[k].composite == pytest.approx((a[k] + b[k] + 1) / 5, abs=1e-12)
        assert m.corrections[k].pair_mean == pytest.approx((a[k] + b[k]) / 2, abs=1e-12)
    assert any("BERTScore and BLEURT" in n for n in m.notes) and AGGREGATE not in m.corrections


def test_missing_texts_count_wrong_and_flag_zero_forces_na():
    run = [RunRow("t-3", 0, -1, "a correction the flag says is not there"), RunRow("t-4", 1, -1, NA)]
    m = official_metrics(run, GOLD)
    assert m.n_missing == 3 and m.n_unanswered == 0
    assert m.flag_accuracy == pytest.approx(1 / 5)  # only t-3; missing texts are wrong
    assert m.sentence_accuracy == pytest.approx(2 / 5)  # t-3 and t-4 predicted -1 on correct texts
    # t-3: flag 0 -> NA vs NA = 1; t-4: flagged without a correction, NA vs NA = 1 (the task's rule)
    assert m.n_correct_na == 2 and m.corrections["ROUGE-1"].composite == pytest.approx(2 / 5)
    assert m.corrections["ROUGE-1"].pair_mean is None
    assert official_candidate(RunRow("x", 0, 3, "text")) == NA and official_candidate(RunRow("x", 1, 3, '""')) == '"'
    with pytest.raises(ValueError, match="not gold texts"):
        official_metrics([RunRow("nope", 0, -1, NA)], GOLD)


def test_gold_without_sentence_id_leaves_sentence_accuracy_uncomputed():
    m = official_metrics([RunRow("a", 1, 0, "x")], [GoldRow("a", 1, None, "y")])
    assert m.sentence_accuracy is None and any("no gold sentence id" in n for n in m.notes)


# -- ROUGE ------------------------------------------------------------------------------------------
PAIRS = [
    ("The next best step in management is chest tube insertion.",
     "The next best step in management is to Chest tube insertion."),
    ("Patient is diagnosed with an epidural hematoma. It was seen on CT.",
     "Patient is diagnosed with a subdural hematoma."),
    ("the the the cat sat on the mat", "the cat sat on the the mat mat"),  # repeated words: sets, not counts
    ("Give 1,000 mg (oral) q6h; max 4 g/day.", "Give 1 g orally every 6 hours, max 4 g per day."),
    ("Dose. . Then rest.", "Dose then rest."),  # empty sentences between the dots
    ("A b c d e f. G h. I", "a B c. D e f g. h i"),  # case kept; summary-level LCS over sentences
    ("Suspected of asthma.", "Suspected of asthma"),
    ("nothing in common", "Completely different words here."),
    ("x. ", "x"),  # " " survives the split as an empty sentence, and an empty word
]


@pytest.mark.parametrize(("candidate", "reference"), PAIRS)
def test_rouge_equals_the_rouge_package_the_task_script_uses(candidate, reference):
    want = official_rouge(candidate, reference)
    got = {"ROUGE-1": rouge_n_f(candidate, reference, 1), "ROUGE-2": rouge_n_f(candidate, reference, 2),
           "ROUGE-L": rouge_l_f(candidate, reference)}
    assert got == pytest.approx(want, abs=1e-12)


def test_rouge_agrees_with_rouge_score_where_the_definitions_coincide():
    # lower case, no punctuation, no repeated word, one sentence: both packages count the same things
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"])
    for cand, ref in [("patient has acute bacterial meningitis", "the patient has bacterial meningitis"),
                      ("give four grams per day at most", "at most four grams per day"),
                      ("chest tube insertion", "needle decompression then chest tube")]:
        s = scorer.score(ref, cand)  # rouge-score takes (target, prediction)
        assert rouge_n_f(cand, ref, 1) == pytest.approx(s["rouge1"].fmeasure, abs=1e-7)
        assert rouge_n_f(cand, ref, 2) == pytest.approx(s["rouge2"].fmeasure, abs=1e-7)
        assert rouge_l_f(cand, ref) == pytest.approx(s["rougeL"].fmeasure, abs=1e-7)
    # where they do not: rouge-score lower-cases and drops punctuation, the task's package does not
    cand, ref = "Aspirin, 81 mg daily.", "aspirin 81 mg daily"
    assert scorer.score(ref, cand)["rouge1"].fmeasure == pytest.approx(1.0)
    assert rouge_n_f(cand, ref, 1) == pytest.approx(official_rouge(cand, ref)["ROUGE-1"]) != pytest.approx(1.0)


def test_rouge_l_handles_long_corrections_without_recursion():
    words = " ".join(f"w{i}" for i in range(1500))
    assert rouge_l_f(words, words) == pytest.approx(1.0, abs=1e-7)
    assert rouge_n_f("...", "a b", 1) == 0.0  # no words left: the package raises, scored 0 here


# -- optional model scorers ------------------------------------------------------------------------
def test_model_scorers_say_why_they_are_absent(tmp_path):
    scorers, notes = model_scorers()
    assert scorers == {}
    assert notes[0].startswith("BERTScore: not computed (no local model files; set factcheck.bertscore_model")
    assert notes[1].startswith("BLEURT: not computed (no local model files; set factcheck.bleurt_checkpoint")
    _, notes = model_scorers(str(tmp_path), 40, str(tmp_path))
    assert "holds no model files" in notes[0] and "holds no BLEURT checkpoint" in notes[1]


def test_bleurt_and_bertscore_scores_are_clipped_and_aggregated(tmp_path, monkeypatch):
    """BLEURT through google-research's API (a stand-in module here: the real one is TensorFlow and
    not on PyPI), a fixed BERTScore; the aggregate is the mean of ROUGE-1, BERTScore and BLEURT."""
    calls = []

    class BleurtScorer:
        def __init__(self, checkpoint):
            calls.append(checkpoint)

        def score(self, references, candidates, batch_size):
            return [1.3, -0.2][:len(candidates)]

    module = types.ModuleType("bleurt")
    module.score = types.SimpleNamespace(BleurtScorer=BleurtScorer)
    monkeypatch.setitem(sys.modules, "bleurt", module)
    (tmp_path / "bleurt_config.json").write_text("{}")
    scorers, notes = model_scorers(bleurt_checkpoint=str(tmp_path))
    assert set(scorers) == {BLEURT} and calls == [str(tmp_path)] and len(notes) == 1
    scorers[BERTSCORE] = lambda cands, refs: [0.5, 2.0][:len(cands)]
    run = [RunRow("t-1", 1, 2, REF_A), RunRow("t-2", 1, 0, "Meningitis."), RunRow("t-3", 0, -1, NA),
           RunRow("t-4", 0, -1, NA), RunRow("t-5", 0, -1, NA)]
    m = official_metrics(run, GOLD, scorers)
    assert m.corrections[BLEURT].composite == pytest.approx((1.0 + 0.0 + 2) / 5)
    assert m.corrections[BERTSCORE].composite == pytest.approx((0.5 + 1.0 + 2) / 5)
    r1 = [official_rouge(REF_A, REF_A)["ROUGE-1"], official_rouge("Meningitis.", REF_B)["ROUGE-1"]]
    agg = [(r1[0] + 0.5 + 1.0) / 3, (r1[1] + 1.0 + 0.0) / 3]
    assert m.corrections[AGGREGATE].composite == pytest.approx((sum(agg) + 2) / 5)


@pytest.mark.train
def test_bertscore_runs_on_a_local_model_folder(tmp_path):
    """The real bert-score path on a tiny random BERT saved locally (nothing downloaded): the scores
    are bert-score's own for that folder, layer and the task model's baseline, clipped to [0, 1]."""
    torch = pytest.importorskip("torch")
    bert_score = pytest.importorskip("bert_score")
    from transformers import BertConfig, BertModel, BertTokenizer

    words = sorted({w for t in (REF_A, REF_B, "Meningitis.") for w in re.findall(r"\w+|[^\w\s]", t.lower())})
    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    BertTokenizer(str(tmp_path / "vocab.txt"), model_max_length=512).save_pretrained(tmp_path)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(words) + 5, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=32)).save_pretrained(tmp_path)
    scorers, notes = model_scorers(str(tmp_path), 2)
    assert BERTSCORE in scorers and not any(n.startswith("BERTScore") for n in notes)
    run = [RunRow("t-1", 1, 2, REF_A), RunRow("t-2", 1, 0, "Meningitis.")]
    m = official_metrics(run, GOLD, scorers)
    got = scorers[BERTSCORE]([REF_A, "Meningitis."], [REF_A, REF_B])
    assert m.corrections[BERTSCORE].composite == pytest.approx(sum(min(max(x, 0), 1) for x in got) / 5)
    baseline = Path(bert_score.__file__).parent / "rescale_baseline/en/microsoft/deberta-xlarge-mnli.tsv"
    _, _, f1 = bert_score.score([REF_A], [REF_A], model_type=str(tmp_path), num_layers=2, lang="en",
                                rescale_with_baseline=True, baseline_path=str(baseline))
    assert got[0] == pytest.approx(float(f1[0]), abs=1e-5)


# -- the run file ----------------------------------------------------------------------------------
def test_run_rows_from_answers_and_the_file_round_trip(tmp_path):
    rows = [run_row("en-val-1", "error", 5, "The next step is\n chest tube insertion."),
            run_row("en-val-2", "error", None, None), run_row("en-val-3", "correct", None, None),
            run_row("en-val-4", "unsure", None, None), run_row("Case_5", None, None, None),
            run_row("en-val-6", "error", 0, "x", id_base=1)]
    path = tmp_path / "run.txt"
    assert write_run_file(path, rows) == 6
    assert path.read_text().splitlines() == [
        "en-val-1 1 5 The next step is chest tube insertion.", "en-val-2 1 -1 NA", "en-val-3 0 -1 NA",
        "en-val-4 0 -1 NA", "Case_5 0 -1 NA", "en-val-6 1 1 x"]
    back = read_run_file(path)
    assert [(r.text_id, r.flag, r.sentence_id, r.correction) for r in back] == \
        [(r.text_id, r.flag, r.sentence_id, r.correction) for r in rows]
    assert {r.answered for r in back} == {None}  # a file cannot tell an unanswered text from a "0 -1 NA" answer
    assert unofficial_ids(rows) == ["Case_5"] and not rows[4].answered
    assert gold_row("g", {"label": "error", "error_sentence_id": 2, "correction": " a  b "}, 1) == \
        GoldRow("g", 1, 3, "a b")
    assert gold_row("g", {"label": "correct"}) == GoldRow("g", 0, -1, NA)
    assert _id_base({"mapping": "text=t,label=l,error_sentence_id=s,sentence_id_base=1"}) == 1
    assert _id_base({}) == 0
    with pytest.raises(ValueError, match="whitespace"):
        format_line(RunRow("case 1", 0, -1, NA))


@pytest.mark.parametrize(("content", "message"), [
    ("en-1 1 3 fix\nen-2 2 -1 NA\n", r"run.txt:2: field 'flag': expected 0 or 1"),
    ("en-1 1 3 fix\u2028more\r\nen-2 2 -1 NA\r\n", r"run.txt:2: field 'flag'"),  # CRLF; U+2028 is no line end
    ("en-1 1 3\n", r"run.txt:1: expected 'TEXT_ID FLAG SENTENCE_ID CORRECTED_SENTENCE'"),
    ("\nen-1 1 x fix\n", r"run.txt:2: field 'sentence id'"),
    ("en-1 1 3 fix\n\nen-1 0 -1 NA\n", r"run.txt:3: field 'text id': duplicate id 'en-1' \(first at line 1\)"),
    ("en-9 0 -1 NA\n", r"run.txt:1: field 'text id': 'en-9' is not among the gold"),
    ("\n\n", r"run.txt: no run lines"),
    (b"en-1 0 -1 NA\nen-2 1 0 caf\xe9\n", r"run.txt:2: not valid UTF-8"),
])
def test_bad_run_files_name_the_line_and_field(tmp_path, content, message):
    path = tmp_path / "run.txt"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(InputError, match=message):
        read_run_file(path, {"en-1", "en-2"}, "the gold texts")


# -- end to end: run, export-run, report, score-run ---------------------------------------------------
HEADER = ["Text ID", "Text", "Sentences", "Error Flag", "Error Sentence ID", "Error Sentence", "Error Type",
          "Corrected Sentence", "Corrected Text", "Important Words", "Difficulty", "Reasoning Type"]
CASES = [  # id, sentences, gold sentence id (-1: correct), gold correction
    ("mx-0", ["Case A concerns fever.", "Paracetamol may be taken at 10 g a day."], 1, REF_A),
    ("mx-1", ["Case B: a stiff neck means appendicitis.", "See a doctor."], 0, REF_B),
    ("mx-2", ["Case C concerns asthma.", "Inhaled steroids reduce attacks."], -1, None),
    ("mx-3", ["Case D concerns diabetes.", "Metformin is a first-line drug."], -1, None),
    ("mx-4", ["Case E concerns gout.", "Allopurinol cures an acute attack."], 1, "Colchicine treats an acute attack."),
]
FIX_B = '"Case B: a stiff neck suggests meningitis."'


def write_mederrbench(path: Path) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(HEADER)
        for cid, sentences, sid, fix in CASES:
            text = " ".join(sentences)
            numbered = " ".join(f"{i} {s}" for i, s in enumerate(sentences))
            w.writerow([cid, text, numbered, int(sid >= 0), sid, sentences[sid] if sid >= 0 else "NA",
                        "Diagnosis" if sid >= 0 else "NA", fix or "NA", text, "", "Easy", ""])
    return path


def verdict(verdict_: str, sentence: int | None = None, correction: str | None = None) -> str:
    return json.dumps({"reasoning": "Checked each sentence.", "verdict": verdict_, "error_sentence_id": sentence,
                       "error_span": None, "correction": correction, "confidence": 0.9})


def checker(body: dict) -> str:
    prompt = body["messages"][-1]["content"]
    found = re.search(r"Case ([A-E])", prompt)
    if found is None:  # the server check's request
        return "ok"
    case, cot = found.group(1), "reason step by step" in prompt
    return {"A": verdict("error", 1, REF_A),
            "B": verdict("error", 1, FIX_B) if cot else verdict("correct"),
            "C": verdict("error", 0),  # over-criticism, no correction
            "D": verdict("correct"),
            "E": "this is not JSON"}[case]


def test_export_run_report_and_score_run_end_to_end(tmp_path, fake_server):
    fake_server.responder = checker
    data = write_mederrbench(tmp_path / "mini.csv")
    db, out = str(tmp_path / "m.db"), tmp_path / "report"
    runner = CliRunner(env={"COLUMNS": "250"})
    res = runner.invoke(app, ["--db", db, "--base-url", fake_server.base_url, "factcheck", "run", str(data),
                              "--methods", "zero-shot,cot", "--out-dir", str(out)])
    assert res.exit_code == 0, res.output
    assert "official metrics (MEDIQA-CORR 2024" in res.stdout

    res = runner.invoke(app, ["--db", db, "factcheck", "export-run", "cot", "--out", str(tmp_path / "cot.txt")])
    assert res.exit_code == 0, res.output
    assert "cot [fake-model]: 5 texts, 3 flagged, 1 unanswered" in res.stdout
    assert (tmp_path / "cot.txt").read_text(encoding="utf-8").splitlines() == [
        f"mx-0 1 1 {REF_A}", f"mx-1 1 1 {FIX_B}", "mx-2 1 0 NA", "mx-3 0 -1 NA", "mx-4 0 -1 NA"]

    res = runner.invoke(app, ["--db", db, "factcheck", "export-run", "--out", str(tmp_path / "runs")])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["cot.txt", "zero-shot.txt"]
    assert (tmp_path / "runs" / "zero-shot.txt").read_text().splitlines()[:2] == [f"mx-0 1 1 {REF_A}", "mx-1 0 -1 NA"]
    assert (tmp_path / "runs" / "cot.txt").read_text() == (tmp_path / "cot.txt").read_text()

    # cot: flags A B D right (3/5); sentences A and D (-1 on a correct text) right (2/5); corrections:
    # A and B are pairs (B's quotes stripped), C (flagged, no correction) and D are NA on a correct text
    a = official_rouge(REF_A, REF_A)
    b = official_rouge(FIX_B.strip('"'), REF_B)
    cot = ["cot", "5", "1", "0.600", "0.400", *(f"{(a[k] + b[k] + 2) / 5:.3f}" for k in a), "2",
           *(f"{(a[k] + b[k]) / 2:.3f}" for k in a)]
    zero = ["zero-shot", "5", "1", "0.400", "0.400", *(f"{(a[k] + 2) / 5:.3f}" for k in a), "1",
            *(f"{a[k]:.3f}" for k in a)]
    md = (out / "factcheck_report.md").read_text()
    assert "## Official metrics (MEDIQA-CORR 2024)" in md
    assert "| " + " | ".join(cot) + " |" in md and "| " + " | ".join(zero) + " |" in md, md
    assert "- BERTScore: not computed (no local model files; set factcheck.bertscore_model" in md

    res = runner.invoke(app, ["--db", db, "factcheck", "report", "--out-dir", str(tmp_path / "again")])
    assert res.exit_code == 0, res.output
    flat = re.sub(r"\s+", " ", res.stdout)
    assert re.search(r"cot │ 5 │ 1 │ 0\.600 │ 0\.400 │ " + re.escape(cot[5]), flat), flat
    assert "BERTScore: not computed (no local model files" in flat

    # the exported file scored on its own gives the report's figures (the texts the run got)
    res = runner.invoke(app, ["factcheck", "score-run", str(tmp_path / "cot.txt"), "--gold", str(data)])
    assert res.exit_code == 0, res.output
    assert re.search(r"cot\.txt │ 5 │ n/a │ 0\.600 │ 0\.400 │ " + re.escape(cot[5]), re.sub(r"\s+", " ", res.stdout))
    res = runner.invoke(app, ["factcheck", "score-run", str(tmp_path / "cot.txt"), "--gold", str(data),
                              "--limit", "3"])
    # --limit scores the first N gold texts; the file is still checked against every gold text
    assert res.exit_code == 0, res.output
    assert re.search(r"cot\.txt │ 3 │ n/a │", re.sub(r"\s+", " ", res.stdout)), res.stdout
    (tmp_path / "stray.txt").write_text((tmp_path / "cot.txt").read_text() + "nope 1 0 Fixed.\n")
    res = runner.invoke(app, ["factcheck", "score-run", str(tmp_path / "stray.txt"), "--gold", str(data),
                              "--limit", "3"])
    assert res.exit_code == 2 and "stray.txt:6: field 'text id': 'nope' is not among the 5 gold texts" in res.output


def test_export_run_names_what_it_cannot_resolve(tmp_path, fake_server):
    fake_server.responder = checker
    data = write_mederrbench(tmp_path / "mini.csv")
    db = str(tmp_path / "m.db")
    runner = CliRunner(env={"COLUMNS": "250"})
    assert runner.invoke(app, ["--db", db, "--base-url", fake_server.base_url, "factcheck", "run", str(data),
                               "--methods", "cot", "--limit", "2", "--out-dir", str(tmp_path / "r")]).exit_code == 0
    res = runner.invoke(app, ["--db", db, "factcheck", "export-run", "sc@6", "--out", str(tmp_path / "x.txt")])
    assert res.exit_code == 2 and "'sc@6' is neither a method of the newest batch (cot)" in res.output
    assert not (tmp_path / "x.txt").exists()
    store = Store(f"sqlite:///{db}")
    try:
        with store.session() as s:
            run_id = s.scalars(select(Run.id).where(Run.kind == "factcheck")).one()
    finally:
        store.dispose()
    res = runner.invoke(app, ["--db", db, "factcheck", "export-run", run_id[:8], "--out", str(tmp_path / "by-id.txt")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "by-id.txt").read_text().splitlines() == [f"mx-0 1 1 {REF_A}", f"mx-1 1 1 {FIX_B}"]


def test_one_based_sentence_ids_of_a_mapped_input_stay_one_based(tmp_path, fake_server):
    fake_server.responder = checker
    data = tmp_path / "one_based.csv"
    with open(data, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["key", "content", "flag", "where", "fix"])
        w.writerow(["a-1", " ".join(CASES[0][1]), "1", "2", REF_A])  # the error is the 2nd sentence, 1-based
        w.writerow(["d-1", " ".join(CASES[3][1]), "0", "", ""])
    mapping = "id=key,text=content,label=flag,label_values=1:error;0:correct,error_sentence_id=where," \
              "correction=fix,sentence_id_base=1"
    db, runner = str(tmp_path / "o.db"), CliRunner(env={"COLUMNS": "250"})
    res = runner.invoke(app, ["--db", db, "--base-url", fake_server.base_url, "factcheck", "run", str(data),
                              "--mapping", mapping, "--methods", "cot", "--out-dir", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    assert runner.invoke(app, ["--db", db, "factcheck", "export-run", "--out", str(tmp_path / "o.txt")]).exit_code == 0
    assert (tmp_path / "o.txt").read_text().splitlines() == [f"a-1 1 2 {REF_A}", "d-1 0 -1 NA"]
    res = runner.invoke(app, ["factcheck", "score-run", str(tmp_path / "o.txt"), "--gold", str(data),
                              "--mapping", mapping])
    assert res.exit_code == 0, res.output
    assert re.search(r"o\.txt │ 2 │ n/a │ 1\.000 │ 1\.000 │", re.sub(r"\s+", " ", res.stdout)), res.stdout
