"""ESConv dialogues: the ESConv JSON and the ESConv tsv formats (seeds of the strategy search).

Both readers validate the whole file before anything is stored; an error names the file, the line
and the field. Strategy names are normalised to ESConv's ``strategy.json`` spelling through the
ESConv set's aliases (``[Questions]`` -> Question, ``[Other]`` -> Others, the early-annotation
names Direct Guidance, Approval and Reassurance, Restatement): never dropped; an unknown name is an
error. Consecutive utterances of one speaker form one turn; a supporter turn keeps each utterance
with its own strategy (``parts``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agents.esc import load_strategy_set
from benchmarks.datasets.instructions import InputError
from benchmarks.datasets.limits import check_size
from benchmarks.datasets.rows import decode_utf8

FORMATS = ("esconv-json", "esconv-tsv")
AUTO = "auto"
_TSV_TURN = re.compile(r"^(\d+(?:\.\d+)?) ([01]) (\d+) (.*)$", re.DOTALL)
_TSV_LINE = re.compile(rb"^\s*\d+(?:\.\d+)? [01] \d+ ")
_EOS = re.compile(r"\s+EOS\s+")
_TAG = re.compile(r"^\[([^\]]+)\]\s*(.*)$", re.DOTALL)


def _strategy(raw: Any, where: str) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise InputError(f"{where}: missing strategy")
    try:
        return load_strategy_set("esconv").normalise(raw)
    except ValueError as exc:
        raise InputError(f"{where}: {exc}") from None


def _merge(utterances: list[tuple[str, str, str | None]]) -> list[dict[str, Any]]:
    """(speaker, text, strategy) utterances -> turns; one speaker's consecutive utterances join."""
    turns: list[dict[str, Any]] = []
    for speaker, text, strategy in utterances:
        if turns and turns[-1]["speaker"] == speaker:
            if speaker == "seeker":
                turns[-1]["text"] = f"{turns[-1]['text']} {text}"
            else:
                turns[-1]["parts"].append({"strategy": strategy, "text": text})
            continue
        turns.append({"speaker": "seeker", "text": text} if speaker == "seeker"
                     else {"speaker": "supporter", "parts": [{"strategy": strategy, "text": text}]})
    return turns


def _check_dialogue(turns: list[dict[str, Any]], where: str) -> None:
    if not any(t["speaker"] == "seeker" for t in turns):
        raise InputError(f"{where}: the dialogue has no seeker turn")
    if not any(t["speaker"] == "supporter" for t in turns):
        raise InputError(f"{where}: the dialogue has no supporter turn")


def read_esconv_json(path: str | Path, limit: int | None = None) -> list[dict[str, Any]]:
    """ESConv JSON (a list of dialogues with ``situation``, ``emotion_type``, ``problem_type`` and
    ``dialog`` = [{speaker: seeker|usr|speaker / supporter|sys|listener, content, annotation}])."""
    path = Path(path)
    text = _read_text(path)
    records = []
    for index, (line, conv) in enumerate(_json_array_items(path, text)):
        where = f"{path}:{line}: dialogue {index}"
        _check_size(where, None, conv)
        if not isinstance(conv, dict) or not isinstance(conv.get("dialog"), list):
            raise InputError(f"{where}: field 'dialog': expected a list of turns")
        utterances = []
        for i, turn in enumerate(conv["dialog"]):
            at = f"{where}: field 'dialog[{i}]"
            if not isinstance(turn, dict):
                raise InputError(f"{at}': expected an object")
            speaker = {"seeker": "seeker", "usr": "seeker", "speaker": "seeker",
                       "supporter": "supporter", "sys": "supporter", "listener": "supporter"}.get(turn.get("speaker"))
            if speaker is None:
                raise InputError(f"{at}.speaker': unknown speaker {turn.get('speaker')!r}")
            content = turn.get("content")
            if not isinstance(content, str) or not content.strip():
                raise InputError(f"{at}.content': missing or empty")
            strategy = None
            if speaker == "supporter":
                strategy = _strategy((turn.get("annotation") or {}).get("strategy"), f"{at}.annotation.strategy'")
            utterances.append((speaker, " ".join(content.split()), strategy))
        turns = _merge(utterances)
        _check_dialogue(turns, where)
        payload = {"format": "esconv-json", "situation": str(conv.get("situation") or "").strip(),
                   "emotion": str(conv.get("emotion_type") or "").strip(),
                   "problem": str(conv.get("problem_type") or "").strip(), "turns": turns}
        records.append({"payload": payload, "external_id": f"{path.name}#{index}", "source": f"{path.name}:{line}"})
        if limit is not None and len(records) >= limit:  # --limit: the dialogues after these are not read
            break
    if not records:
        raise InputError(f"{path}: no dialogues (the list is empty)")
    return records


def read_esconv_tsv(path: str | Path, limit: int | None = None) -> list[dict[str, Any]]:
    """The ESConv tsv (``devWithStrategy_short.tsv``): one line per supporter response, holding a
    window of the dialogue so far as ``<flag> <speaker 0|1> <turn index> <text>`` chunks joined by
    `` EOS ``; a supporter text starts with its ``[strategy]``. Consecutive lines of one dialogue
    overlap (a turn index the file skips stays missing); a line that does not continue the previous
    one starts the next dialogue (the file's first turns of a dialogue may be missing too).
    The leading flag is not used. ``limit`` keeps the first dialogues and parses no line after the
    one that starts the next (the last kept dialogue is only complete there); the file's text is
    loaded whole, as for JSON, so its encoding is checked throughout."""
    path = Path(path)
    text = _read_text(path)
    dialogues: list[tuple[int, dict[int, tuple[str, str, str | None]]]] = []
    current: dict[int, tuple[str, str, str | None]] = {}
    for lineno, raw in enumerate(text.split("\n"), start=1):  # physical lines, as editors number them
        if not raw.strip():
            continue
        _check_size(f"{path}:{lineno}", len(raw.encode("utf-8")), raw)
        turns = []
        for k, chunk in enumerate(_EOS.split(raw.strip())):
            m = _TSV_TURN.match(chunk.strip())
            where = f"{path}:{lineno}: turn {k + 1}"
            if m is None:
                raise InputError(f"{where}: expected '<flag> <speaker 0|1> <turn index> <text>'")
            speaker = "seeker" if m.group(2) == "0" else "supporter"
            body, strategy = " ".join(m.group(4).split()), None
            _check_not_merged(body, int(m.group(3)), where)
            if speaker == "supporter":
                tag = _TAG.match(body)
                if tag is None:
                    raise InputError(f"{where}: field 'strategy': a supporter text must start with [strategy]")
                strategy, body = _strategy(tag.group(1), f"{where}: field 'strategy'"), tag.group(2).strip()
            if not body:
                raise InputError(f"{where}: field 'text': empty")
            turns.append((int(m.group(3)), (speaker, body, strategy)))
        indices = [i for i, _ in turns]
        if indices != list(range(indices[0], indices[0] + len(indices))):
            raise InputError(f"{path}:{lineno}: field 'turn index': not consecutive ({indices})")
        continues = bool(current) and indices[-1] > max(current) and all(
            current[i] == t for i, t in turns if i in current)
        if not continues:
            if limit is not None and len(dialogues) >= limit:  # --limit: the dialogues after these are not read
                break
            current = {}
            dialogues.append((lineno, current))
        current.update((i, t) for i, t in turns if i not in current)
    records = []
    for index, (lineno, utterances) in enumerate(dialogues):
        turns = _merge([utterances[i] for i in sorted(utterances)])
        _check_dialogue(turns, f"{path}:{lineno}: dialogue {index}")
        payload = {"format": "esconv-tsv", "situation": "", "emotion": "", "problem": "", "turns": turns}
        records.append({"payload": payload, "external_id": f"{path.name}#{index}",
                        "source": f"{path.name}:{lineno}"})
    if not records:
        raise InputError(f"{path}: no dialogues (the file is empty)")
    return records


def _check_not_merged(body: str, index: int, where: str) -> None:
    """A turn whose text holds the next turn's header (``... 0 0 5 Next``) lost the `` EOS `` between
    them: reading it as one turn would silently merge two speakers' words."""
    m = re.search(rf"(?:^|\s)\d+(?:\.\d+)? [01] {index + 1} \S", body)
    if m is not None:
        raise InputError(f"{where}: field 'text': holds the start of turn {index + 1} "
                         f"({body[m.start():m.start() + 30].strip()!r}...): the ' EOS ' separator before it is missing")


def detect_format(path: str | Path) -> str:
    """esconv-json or esconv-tsv, from the file's first non-blank bytes (a JSON list, or a
    ``<flag> <speaker> <index> `` turn), whatever the file's name."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file does not exist")
    with open(path, "rb") as fh:
        head = fh.read(65536).lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"["):
        return "esconv-json"
    if _TSV_LINE.match(head):
        return "esconv-tsv"
    raise InputError(f"{path}:1: neither ESConv JSON (a list of dialogues) nor the ESConv tsv "
                     "('<flag> <speaker 0|1> <turn index> <text>' turns joined by ' EOS '); give --format")


def read_seeds(path: str | Path, fmt: str = AUTO, limit: int | None = None) -> list[dict[str, Any]]:
    """Seed dialogues; ``fmt`` auto detects the format from the content. ``limit`` keeps the first
    dialogues and parses no further (in a tsv, up to the line that starts the next dialogue)."""
    if fmt == AUTO:
        fmt = detect_format(path)
    if fmt == "esconv-json":
        return read_esconv_json(path, limit)
    if fmt == "esconv-tsv":
        return read_esconv_tsv(path, limit)
    raise InputError(f"unknown format {fmt!r}; choose one of {', '.join((AUTO, *FORMATS))}")


def _check_size(where: str, n_bytes: int | None, record: Any) -> None:
    try:
        check_size(where, n_bytes, record)
    except ValueError as exc:
        raise InputError(str(exc)) from None


def _read_text(path: Path) -> str:
    if not path.exists():
        raise InputError(f"{path}: file does not exist")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, expected a file")
    return decode_utf8(path, path.read_bytes())


def _json_array_items(path: Path, text: str) -> Iterator[tuple[int, Any]]:
    """The elements of a top-level JSON array with the line each starts on."""
    decoder = json.JSONDecoder()
    pos = len(text) - len(text.lstrip())
    if not text.startswith("[", pos):
        raise InputError(f"{path}:1: expected a JSON list of dialogues")
    pos += 1
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text):
            raise InputError(f"{path}:{text.count(chr(10)) + 1}: invalid JSON: the list is not closed")
        if text[pos] == "]":
            return
        line = text.count("\n", 0, pos) + 1
        try:
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg} (column {exc.colno})") from None
        yield line, value
