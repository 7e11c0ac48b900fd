"""MedErrBench texts become rubric instructions that rubric-prefs reads (needs ../shared)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from agents.rubric import CriterionKind
from benchmarks.datasets.instructions import RubricInstruction, read_rubric_instructions
from benchmarks.datasets.mederrbench import mederrbench_instructions
from carealign.cli import app
from tests.conftest import needs_shared


@pytest.mark.parametrize("name,lang", [("EN_validation.csv", "en"), ("CN_validation.csv", "zh")])
def test_rubrics_follow_the_gold_labels(name, lang):
    rows = mederrbench_instructions(needs_shared(f"data/mederrbench/{name}"))
    assert len(rows) in (100, 108) and {r["lang"] for r in rows} == {lang}
    for r in rows:
        rubric = RubricInstruction.model_validate({"prompt": r["prompt"], "rubric": r["rubric"]}).parsed_rubric()
        prof = [c.id for c in rubric.of_kind(CriterionKind.PROFICIENCY)]
        assert prof == (["find", "fix"] if r["meta"]["error_flag"] else ["none"])
        assert [c.id for c in rubric.of_kind(CriterionKind.VETO)] == ["overcritical"]
    with_error = next(r for r in rows if r["meta"]["error_flag"])
    assert with_error["rubric"]["criteria"][0]["text"].count("\u201c" if lang == "zh" else '"') >= 1


def test_cli_writes_jsonl_that_rubric_prefs_reads(tmp_path):
    src = needs_shared("data/mederrbench/EN_validation.csv")
    out = tmp_path / "instructions.jsonl"
    res = CliRunner().invoke(app, ["data", "mederrbench-instructions", str(src), "--out", str(out), "--limit", "5"])
    assert res.exit_code == 0 and "wrote 5 instructions" in res.stdout
    records = read_rubric_instructions(out)
    assert len(records) == 5 and all(r["payload"]["rubric"]["criteria"] for r in records)


def test_a_file_that_is_not_mederrbench_is_refused(tmp_path):
    bad = tmp_path / "EN_x.csv"
    bad.write_text("a,b\n1,2\n")
    res = CliRunner().invoke(app, ["data", "mederrbench-instructions", str(bad), "--out", str(tmp_path / "o.jsonl")])
    assert res.exit_code == 2 and "not a MedErrBench file" in res.stderr


def test_a_non_utf8_file_names_the_file(tmp_path):
    bad = tmp_path / "EN_bad.csv"
    bad.write_bytes(b"\xff\xfeText ID,Text\n")
    res = CliRunner().invoke(app, ["data", "mederrbench-instructions", str(bad), "--out", str(tmp_path / "o.jsonl")])
    assert res.exit_code == 2 and "EN_bad.csv:1: not valid UTF-8" in res.stderr and "UTF-16" in res.stderr
