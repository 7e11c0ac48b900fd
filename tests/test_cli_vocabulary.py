"""The command line speaks one vocabulary: the same option for the same idea, --limit wherever an
input file is read, defaults in --help, -h, --version, completion, deprecated names that still work."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import typer
from sqlalchemy import select
from typer.core import TyperArgument, TyperGroup
from typer.testing import CliRunner

from carealign.cli import GRAPHS, app
from store import Store
from store.models import Run

runner = CliRunner(env={"COLUMNS": "200"})


INPUT_ARGUMENTS = {"input_file", "data_file", "labels_file", "sources", "csv_file"}


def commands(group: TyperGroup, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], object]]:
    out = []
    for name, cmd in group.commands.items():
        if isinstance(cmd, TyperGroup):
            out += commands(cmd, (*path, name))
        else:
            out.append(((*path, name), cmd))
    return out


ALL = commands(typer.main.get_command(app))


def test_version_short_help_and_completion():
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and re.fullmatch(r"carealign \S+\n", res.stdout)
    res = runner.invoke(app, ["-h"])
    assert res.exit_code == 0 and "--install-completion" in res.stdout and "Usage:" in res.stdout
    assert runner.invoke(app, ["generate", "-h"]).exit_code == 0


def test_every_command_that_reads_an_input_file_takes_limit():
    readers = [(path, cmd) for path, cmd in ALL
               if any(isinstance(p, TyperArgument) and p.name in INPUT_ARGUMENTS for p in cmd.params)]
    assert {("generate",), ("rubric-prefs",), ("esc-search",), ("factcheck", "run"), ("bench", "rubric"),
            ("rubrics", "draft"), ("factbench", "build")} <= {p for p, _ in readers}
    missing = [" ".join(p) for p, cmd in readers if not any("--limit" in getattr(o, "opts", []) for o in cmd.params)]
    assert missing == []


def test_grading_roles_use_judge_model_and_strategy_sets_one_name():
    old_names = {"--grader-model", "--grader-base-url", "--writer-model", "--checker-base-url", "--strategies",
                 "--prompt-strategies", "--run-id"}
    for path, cmd in ALL:
        shown = {o for p in cmd.params if not getattr(p, "hidden", False) for o in getattr(p, "opts", [])}
        assert not shown & old_names, f"{' '.join(path)} shows {shown & old_names}"


def test_help_shows_each_settings_default_and_where_it_is_set():
    res = runner.invoke(app, ["generate", "-h"])
    text = " ".join(res.stdout.replace("│", " ").split())
    assert "[default: 4; setting generate.n_candidates]" in text
    assert "[default: generic_medical; setting generate.rubric]" in text
    res = runner.invoke(app, ["esc-search", "-h"])
    text = " ".join(res.stdout.replace("│", " ").split())
    assert "setting esc.iterations]" in text and "[default: 100" in text


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_graph_prints_each_pipeline_as_mermaid(name):
    res = runner.invoke(app, ["graph", name])
    assert res.exit_code == 0, res.output
    assert "graph TD;" in res.stdout and "__start__" in res.stdout and "__end__" in res.stdout


def test_graph_of_an_unknown_pipeline_names_the_known_ones():
    res = runner.invoke(app, ["graph", "nope"])
    assert res.exit_code == 2 and "choose one of generate" in res.stderr


def test_deprecated_option_names_still_work_for_one_release_and_warn(fake_server, tmp_path):
    src = tmp_path / "q.jsonl"
    src.write_text(json.dumps({"prompt": "Is 39 C a fever?", "rubric": {"criteria": [
        {"id": "c1", "text": "Says yes", "kind": "proficiency", "dimension": "accuracy", "weight": 1.0}]}}) + "\n")
    def reply(body: dict) -> str:
        if "json" in json.dumps(body.get("response_format", "")):
            return json.dumps({"explanation": "ok", "criteria_met": True})
        return f"Yes ({body.get('seed')})."

    fake_server.responder = reply
    db = str(tmp_path / "d.db")
    with pytest.warns(UserWarning, match="--grader-model is deprecated .* use --judge-model"):
        res = runner.invoke(app, ["--db", db, "--base-url", fake_server.base_url, "rubric-prefs", str(src), "--n", "2",
                                  "--grader-model", "old-name-grader"])
    assert res.exit_code == 0, res.output
    with Store(db).session() as s:
        assert s.scalars(select(Run)).one().config["resolved"]["judge"]["model"] == "old-name-grader"
    assert "old-name-grader" in {b["model"] for b in fake_server.requests}


def test_the_readme_shows_each_pipelines_current_diagram():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    shown = dict(re.findall(r"<summary><code>([\w-]+)</code></summary>\s*```mermaid\n(.*?)\n```", readme, re.S))
    assert set(shown) == set(GRAPHS)
    for name, diagram in shown.items():
        assert runner.invoke(app, ["graph", name]).stdout.strip() == diagram.strip(), f"README diagram of {name}"
