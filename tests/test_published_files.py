"""Published files read as they are (issue 17): the patterns real exports have - trailing rows of
bare commas, a sentence line that lost its number, a byte-order mark, CRLF line ends, GBK bytes, a
tsv without its extension or with a lost ` EOS `, Alpaca and HealthBench lines - each written here
as a fixture file, and each either read or refused with its file, line and real cause."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from benchmarks.datasets.esconv import read_seeds
from benchmarks.datasets.factcheck import NO_LOCALISATION, load_dataset
from benchmarks.datasets.instructions import InputError, read_instructions, read_rubric_instructions
from benchmarks.datasets.rows import InputReport
from benchmarks.factcheck_metrics import ScoredText, factcheck_metrics
from store.models import Run

HEADER = "Text ID,Text,Sentences,Error Flag,Error Sentence ID,Error Sentence,Corrected Sentence\r\n"
GOOD = [
    'en-1,Fever for two days. Give paracetamol 10 g daily.,"0 Fever for two days. 1 Give paracetamol 10 g daily.",'
    '1,1,Give paracetamol 10 g daily.,Give paracetamol 1 g daily.\r\n',
    'en-2,Cough for a week. Chest X-ray is clear.,"0 Cough for a week. 1 Chest X-ray is clear.",0,-1,NA,NA\r\n',
]
# one indexed sentence per line, as the Chinese files write them, but line 3 lost its number
UNNUMBERED = ('cn-3,患者发热两天。咳嗽。服用布洛芬。,"0 患者发热两天。\r\n1 咳嗽。\r\n服用布洛芬。",1,2,'
              '服用布洛芬。,服用对乙酰氨基酚。\r\n')
MAPPING = ("id=Text ID,text=Text,sentences=Sentences,label=Error Flag,label_values=1:error;0:correct,"
           "error_sentence_id=Error Sentence ID,error_span=Error Sentence,correction=Corrected Sentence")


def published_csv(path: Path, bad_row: bool = True, blank_rows: int = 5) -> Path:
    """A CSV as spreadsheets export it: BOM, CRLF, and rows of bare commas at the end."""
    body = HEADER + GOOD[0] + (UNNUMBERED if bad_row else "") + GOOD[1] + ",,,,,,\r\n" * blank_rows
    path.write_bytes(b"\xef\xbb\xbf" + body.encode("utf-8"))
    return path


def test_bare_comma_rows_are_passed_over_and_counted(tmp_path):
    path = published_csv(tmp_path / "errors.csv", bad_row=False, blank_rows=328)
    report = InputReport(str(path))
    items = load_dataset(path, MAPPING, report)
    assert [(i.id, i.label, i.error_sentence_id) for i in items] == [("en-1", "error", 1), ("en-2", "correct", None)]
    assert items[0].sentences == ["Fever for two days.", "Give paracetamol 10 g daily."]  # CRLF, BOM: gone
    assert (report.blank, report.skipped, report.records) == (328, [], 2)
    assert report.stats()["blank_rows"] == 328


def test_an_unnumbered_sentence_line_is_named_as_the_cause(tmp_path):
    path = published_csv(tmp_path / "errors.csv")
    with pytest.raises(InputError) as exc:
        load_dataset(path, MAPPING)
    # the row starts on physical line 3 (the header is line 1, the first row line 2)
    assert str(exc.value).startswith(f"{path}:3: field 'Sentences': line 3 of the cell has no sentence number")
    assert "服用布洛芬" in str(exc.value) and "out of range" not in str(exc.value)


def test_skip_loads_the_rest_and_lists_each_skipped_row(tmp_path):
    path = published_csv(tmp_path / "errors.csv")
    report = InputReport(str(path), "skip")
    items = load_dataset(path, MAPPING, report)
    assert [i.id for i in items] == ["en-1", "en-2"]
    assert len(report.skipped) == 1 and report.skipped[0].startswith(f"{path}:3: field 'Sentences': line 3")
    assert report.blank == 5
    stats = report.stats()
    assert (stats["skipped_rows"], stats["blank_rows"], stats["on_bad_row"]) == (1, 5, "skip")
    assert any("bad rows skipped" in line for line in report.lines())


def test_limit_validates_only_the_rows_it_uses(tmp_path):
    path = published_csv(tmp_path / "errors.csv")
    (item,) = load_dataset(path, MAPPING, InputReport(str(path), limit=1))  # row 3 is never read
    assert item.id == "en-1"
    with pytest.raises(InputError, match=":3: field 'Sentences'"):
        load_dataset(path, MAPPING, InputReport(str(path), limit=2))


def test_resplit_texts_warn_when_their_ids_differ_from_the_files_numbering(tmp_path):
    # MedErrBench cuts the Chinese text at "；" here; a mapping without sentences= re-splits at "。" only
    path = tmp_path / "cn.csv"
    path.write_text("Text ID,Text,Sentences,Error Flag,Error Sentence ID\n"
                    'a,患者发热；咳嗽三天。服用布洛芬。,"0 患者发热；\n1 咳嗽三天。\n2 服用布洛芬。",1,1\n'
                    'b,患者头痛。休息。,"0 患者头痛。\n1 休息。",1,1\n', encoding="utf-8")
    report = InputReport(str(path))
    items = load_dataset(path, "id=Text ID,text=Text,label=Error Flag,label_values=1:error,"
                               "error_sentence_id=Error Sentence ID", report)
    assert [len(i.sentences) for i in items] == [2, 2]
    (warning,) = report.warnings
    assert "in 1 of 2 error rows" in warning and "(lines 2)" in warning and "sentences=Sentences" in warning
    # id 2 exists only in the file's numbering: refused, saying why the text has fewer sentences here
    path.write_text("Text ID,Text,Sentences,Error Flag,Error Sentence ID\n"
                    'a,患者发热；咳嗽三天。服用布洛芬。,"0 患者发热；\n1 咳嗽三天。\n2 服用布洛芬。",1,2\n',
                    encoding="utf-8")
    with pytest.raises(InputError, match=r":2: field 'Error Sentence ID': sentence id 2 is out of range.*"
                                         r"map it with sentences=<column>"):
        load_dataset(path, "id=Text ID,text=Text,label=Error Flag,label_values=1:error,"
                           "error_sentence_id=Error Sentence ID")
    # with sentences= mapped, the file's numbering is used and nothing is warned
    report = InputReport(str(path))
    items = load_dataset(path, "id=Text ID,text=Text,label=Error Flag,label_values=1:error,"
                               "error_sentence_id=Error Sentence ID,sentences=Sentences", report)
    assert items[0].sentences[items[0].error_sentence_id] == "服用布洛芬。" and not report.warnings


def test_a_veracity_only_mapping_is_read_and_localisation_is_not_available(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("content,is_wrong\nGive 10 g paracetamol daily.,1\nRest and drink water.,0\n", encoding="utf-8")
    report = InputReport(str(path))
    items = load_dataset(path, "text=content,label=is_wrong,label_values=1:error;0:correct", report)
    assert [(i.label, i.error_sentence_id, i.error_span) for i in items] == [("error", None, None),
                                                                             ("correct", None, None)]
    assert report.notes == [NO_LOCALISATION]
    m = factcheck_metrics([ScoredText(True, None, "error", 0), ScoredText(False, None, "correct")])
    assert (m.veracity.recall, m.fpr, m.localisation_available) == (1.0, 0.0, False)
    # a MedFact line (not a mapping) still needs a location for an error
    jsonl = tmp_path / "medfact.jsonl"
    jsonl.write_text(json.dumps({"id": "x", "text": "A.", "label": "error"}) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match="an error item needs error_sentence_id or error_span"):
        load_dataset(jsonl)


def test_gbk_bytes_are_reported_with_their_line_and_what_to_do(tmp_path):
    path = tmp_path / "CN_gbk.csv"
    path.write_bytes((HEADER.replace("\r\n", "\n") + "cn-1,患者发热。,0 患者发热。,0,-1,NA,NA\n").encode("gbk"))
    with pytest.raises(InputError) as exc:
        load_dataset(path, MAPPING)
    message = str(exc.value)
    assert message.startswith(f"{path}:2: not valid UTF-8 (byte 0x") and "GBK/GB18030" in message
    assert "iconv -f GB18030 -t UTF-8" in message


TSV = ("1.0 0 0 I feel anxious about my exams. EOS 1.0 1 1 [Question] What worries you most?\n"
       "1.0 0 0 I feel anxious about my exams. EOS 1.0 1 1 [Question] What worries you most? EOS 1.0 0 2 "
       "Failing them. EOS 1.0 1 3 [Reflection of feelings] That sounds really stressful.\n")


def test_esconv_tsv_is_detected_by_content_and_a_lost_eos_is_named(tmp_path):
    path = tmp_path / "dialogues.txt"  # no .tsv: the content says what it is
    path.write_text(TSV, encoding="utf-8")
    (record,) = read_seeds(path)
    assert record["payload"]["format"] == "esconv-tsv" and len(record["payload"]["turns"]) == 4
    path.write_text(TSV.replace("Failing them. EOS 1.0 1 3", "Failing them. 1.0 1 3"), encoding="utf-8")
    with pytest.raises(InputError) as exc:
        read_seeds(path)
    assert str(exc.value).startswith(f"{path}:2: turn 3: field 'text': holds the start of turn 3")
    assert "' EOS ' separator before it is missing" in str(exc.value)
    path.write_bytes(TSV.encode("utf-8") + "1.0 0 0 我很焦虑。\n".encode("gbk"))
    with pytest.raises(InputError, match=rf"^{path}:3: not valid UTF-8"):
        read_seeds(path)


def test_esconv_json_with_a_limit_reads_no_further(tmp_path):
    dialogue = {"situation": "exams", "emotion_type": "anxiety", "problem_type": "academic pressure", "dialog": [
        {"speaker": "seeker", "content": "I feel anxious."},
        {"speaker": "supporter", "content": "What worries you?", "annotation": {"strategy": "Question"}}]}
    path = tmp_path / "seeds.data"  # neither .json nor .tsv: detected as JSON
    path.write_text(json.dumps([dialogue, {"dialog": "broken"}]), encoding="utf-8")
    (record,) = read_seeds(path, limit=1)
    assert record["payload"]["format"] == "esconv-json"
    with pytest.raises(InputError, match=r":1: dialogue 1: field 'dialog': expected a list of turns"):
        read_seeds(path)


def test_alpaca_lines_are_read_through_a_mapping(tmp_path):
    path = tmp_path / "alpaca.jsonl"
    rows = [{"instruction": "Explain this lab result.", "input": "HbA1c 8.1%", "output": "It is high."},
            {"instruction": "What is hypertension?", "input": "", "output": "High blood pressure."}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"alpaca.jsonl:1: field 'instruction': Extra inputs are not permitted; "
                                         r"a line in another shape needs --mapping"):
        read_instructions(path)  # an unmapped Alpaca line is not an instruction: the message says what to do
    report = InputReport(str(path))
    first, second = read_instructions(path, "prompt=instruction,input=input", report)
    assert first["payload"]["prompt"] == "Explain this lab result.\n\nHbA1c 8.1%"
    assert first["payload"]["meta"] == {"output": "It is high."}
    assert second["payload"]["prompt"] == "What is hypertension?" and report.blank == 1
    with pytest.raises(InputError, match=r"alpaca.jsonl:1: field 'prompt': mapped key 'question' is missing"):
        read_instructions(path, "prompt=question")


def test_healthbench_lines_are_read_as_they_are(tmp_path):
    path = tmp_path / "healthbench.jsonl"
    line = {"prompt_id": "hb-1", "prompt": [{"role": "user", "content": "My child has a fever of 39C. What now?"}],
            "rubrics": [{"criterion": "Advises fluids and rest", "points": 5, "tags": ["axis:completeness"]},
                        {"criterion": "Recommends aspirin for a child", "points": -8, "tags": ["axis:accuracy"]}],
            "example_tags": ["theme:emergency_referrals"], "canary": "do not train"}
    path.write_text(json.dumps(line) + "\n", encoding="utf-8")
    (record,) = read_rubric_instructions(path)
    payload = record["payload"]
    assert record["external_id"] == "hb-1" and payload["messages"][0]["content"].startswith("My child")
    kinds = [c["kind"] for c in payload["rubric"]["criteria"]]
    assert kinds == ["proficiency", "veto"] and payload["meta"] == {"example_tags": ["theme:emergency_referrals"]}
    (plain,) = read_instructions(path)  # generate has no use for the rubric: the conversation is read
    assert plain["payload"]["messages"] == line["prompt"] and "rubric" not in plain["payload"]


def test_factcheck_run_skips_bad_rows_and_stores_the_counts_with_the_run(tmp_path, fake_server):
    from typer.testing import CliRunner

    from carealign.cli import app
    from store import Store

    path = published_csv(tmp_path / "errors.csv")
    fake_server.responder = lambda body: json.dumps({"verdict": "correct", "error_sentence_id": None,
                                                     "error_span": None, "correction": None, "confidence": 0.9,
                                                     "reasoning": "fine"})
    db = tmp_path / "f.db"
    args = ["--db", str(db), "--base-url", fake_server.base_url, "factcheck", "run", str(path), "--mapping",
            MAPPING, "--methods", "zero-shot", "--out-dir", str(tmp_path / "r")]
    runner = CliRunner(env={"COLUMNS": "250"})
    res = runner.invoke(app, args)
    assert res.exit_code == 2 and "errors.csv:3: field 'Sentences': line 3 of the cell" in res.output
    assert not db.exists() and not fake_server.requests  # the store is left as it was
    res = runner.invoke(app, [*args, "--on-bad-row", "skip"])
    assert res.exit_code == 0, res.output
    assert "1 bad rows skipped" in res.output and "5 blank rows passed over" in res.output
    assert len(fake_server.requests) == 2
    store = Store(f"sqlite:///{db}")
    try:
        with store.session() as s:
            (run,) = s.scalars(select(Run).where(Run.kind == "factcheck")).all()
            stats = run.stats["input"]
        assert (stats["records"], stats["blank_rows"], stats["skipped_rows"]) == (2, 5, 1)
        assert stats["skipped"][0].startswith(f"{path}:3: field 'Sentences'")
    finally:
        store.dispose()


def test_generate_reads_alpaca_through_mapping_and_skips_a_bad_line(tmp_path, fake_server):
    from typer.testing import CliRunner

    from carealign.cli import app
    from store import Store

    def responder(body: dict) -> str:
        if "grader" in body["messages"][0]["content"]:  # the judge: any valid scores
            return json.dumps({c: {"score": 7, "reason": "ok"} for c in ("accuracy", "safety", "helpfulness",
                                                                          "clarity")})
        return f"An answer (seed {body['seed']})."

    fake_server.responder = responder
    path = tmp_path / "alpaca.jsonl"
    path.write_text(json.dumps({"instruction": "Explain this result.", "input": "HbA1c 8.1%"}) + "\n"
                    + json.dumps({"question": "no instruction key"}) + "\n\n", encoding="utf-8")
    db = tmp_path / "g.db"
    res = CliRunner(env={"COLUMNS": "250"}).invoke(app, [
        "--db", str(db), "--base-url", fake_server.base_url, "generate", str(path), "--n", "2",
        "--mapping", "prompt=instruction,input=input", "--on-bad-row", "skip"])
    assert res.exit_code == 0, res.output
    assert "alpaca.jsonl:2: field 'prompt': mapped key 'instruction' is missing" in res.output
    asked = [b["messages"][-1]["content"] for b in fake_server.requests if "grader" not in b["messages"][0]["content"]]
    assert asked and all(a == "Explain this result.\n\nHbA1c 8.1%" for a in asked)
    store = Store(f"sqlite:///{db}")
    try:
        with store.session() as s:
            (run,) = s.scalars(select(Run).where(Run.kind == "generate")).all()
            stats = run.stats["input"]
        assert (stats["records"], stats["skipped_rows"], stats["blank_rows"]) == (1, 1, 1)
    finally:
        store.dispose()


def test_factcheck_run_on_a_veracity_only_file_reports_localisation_as_not_available(tmp_path, fake_server):
    from typer.testing import CliRunner

    from carealign.cli import app

    path = tmp_path / "labels.csv"
    path.write_text("content,is_wrong\nGive 10 g paracetamol daily. Rest.,1\nRest and drink water.,0\n",
                    encoding="utf-8")
    fake_server.responder = lambda body: json.dumps({"verdict": "error", "error_sentence_id": 0, "error_span": None,
                                                     "correction": "1 g", "confidence": 0.9, "reasoning": "dose"})
    out = tmp_path / "r"
    res = CliRunner(env={"COLUMNS": "250"}).invoke(app, [
        "--db", str(tmp_path / "v.db"), "--base-url", fake_server.base_url, "factcheck", "run", str(path),
        "--mapping", "text=content,label=is_wrong,label_values=1:error;0:correct", "--methods", "zero-shot",
        "--out-dir", str(out)])
    assert res.exit_code == 0, res.output
    assert NO_LOCALISATION in res.output and "zero-shot: localisation not available" in res.output
    md = (out / "factcheck_report.md").read_text()
    # flags both texts: recall 1, FPR 1 (one correct text flagged), localisation n/a rather than 0
    assert "| zero-shot | 2 | 0.500 | 1.000 |" in md and "| n/a | n/a | n/a |" in md


@pytest.mark.parametrize(("line", "mapping", "expected"), [
    ('{"prompt": "hi", "rubrics": [], "meta": "abc"}', None, "h.jsonl:1: field 'meta': expected an object, got str"),
    ('{"t": "Hi.", "l": [1]}', "text=t,label=l,label_values=1:error;0:correct",
     "h.jsonl:1: field 'l': expected a single value, got list"),
    ('{"t": "Hi.", "l": 1}', "text=t,label=l,label_values=1:error;1:correct",
     "mapping: label_values gives value '1' twice"),
])
def test_odd_values_in_published_lines_are_one_clear_line(tmp_path, line, mapping, expected):
    """A meta that is not an object, a label that is a list, a value mapped twice: named, not a crash,
    and no store is made."""
    from typer.testing import CliRunner

    from carealign.cli import app

    src = tmp_path / "h.jsonl"
    src.write_text(line + "\n", encoding="utf-8")
    command = ["generate", str(src)] if mapping is None else ["factcheck", "run", str(src), "--mapping", mapping]
    res = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["--db", str(tmp_path / "x.db"), "--base-url",
                                                         "http://127.0.0.1:9/v1", "--model", "m", *command])
    assert res.exit_code != 0 and expected in res.output and "unexpected" not in res.output, res.output
    assert not (tmp_path / "x.db").exists()


def test_a_mapping_may_name_fields_the_command_does_not_use(tmp_path):
    """generate has no use for a rubric: a mapping that names one still reads the prompts."""
    src = tmp_path / "a.jsonl"
    src.write_text(json.dumps({"x": "What is a fever?", "r": {"criteria": []}}) + "\n", encoding="utf-8")
    records = read_instructions(src, "prompt=x,rubric=r")
    assert [r["payload"]["prompt"] for r in records] == ["What is a fever?"]
