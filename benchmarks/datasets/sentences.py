"""Sentence segmentation that reproduces MedErrBench's, so sentence ids mean the same thing everywhere.

Error localisation is scored by sentence-ID match (PROTOCOLS.md section 4), so a text we split
ourselves (MedFact JSONL without ``sentences``, a mapped CSV) must be cut where MedErrBench cuts,
or "sentence 3" would point at different words. The rules below were fitted to, and are checked
against, every row of the four MedErrBench files (``tests/test_factcheck_data.py``):

- Chinese: a sentence ends after 。！？!? unless a closing quote or bracket follows (a question quoted
  inside a sentence does not end it), and at a line break; ；and ， never end one.
- English: after . ? ! plus closing quotes (also their mojibake forms) and whitespace, whatever follows
  (MedErrBench's edited sentences often start in lower case);
  not after abbreviations followed by a lower-case word (``U.S. from``, ``17 lb. unintended``,
  ``E. coli``); also at a full stop glued to a capital (``months.Compression``); inside a block of
  lines (lab tables), a new sentence starts only at a line that reads as prose (capitalised, at
  least three words, ending in . ? !).

MedErrBench's English ``Sentences`` column is one line with inline indices (``0 A... 1 B...``),
apostrophes and double quotes removed and newlines written as a literal backslash-n; the Chinese
one has one indexed sentence per line. ``parse_numbered`` reads both and maps the sentences back
onto the text, so the sentences it returns are the text's own words cut at MedErrBench's boundaries.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from agents.language import detect_lang  # one rule for the readers and the prompts

_CLOSERS = r"(?:[\"'”’」』）)\]]|‚Äù|‚Äô)*"  # closing quotes and brackets, and their mojibake
_ZH_END = re.compile(r"[。！？!?]+(?![”’」』）)\]\"'])")
_EN_END = re.compile(rf"[.?!]{_CLOSERS}(\s+)(?=\S)")
_EN_GLUED = re.compile(r"(?:(?<=[a-z]{2})|(?<=[%)]))[.?!](?=[A-Z])")
_ABBREV = re.compile(r"(?:^|\s)(?:U\.S|lbs?|e\.g|i\.e|vs|Dr|Mr|Mrs|Ms|approx|etc|Fig|No|St)\.$")
# a capital initial such as "E." in "E. coli", unless it names a figure or panel ("Figure A. most")
_INITIAL = re.compile(r"(?:^|\s)(?!(?:Figure|figure|Image|image|Panel|panel|Table|table)\s)\S+\s+[A-Z]\.$")
_PROSE_LINE = re.compile(rf"[A-Z]\S*(?:\s+\S+){{2,}}[.?!]{_CLOSERS}$")
def _zh_cuts(text: str) -> list[tuple[int, int]]:
    cuts = [(m.end(), m.end()) for m in _ZH_END.finditer(text)]
    cuts += [(m.start(), m.end()) for m in re.finditer(r"\s*\n\s*", text)]
    return cuts


def _en_cuts(text: str) -> list[tuple[int, int]]:
    cuts = []
    for m in _EN_END.finditer(text):
        head = text[: m.start() + 1]
        if text[m.end()].islower() and (_ABBREV.search(head) or _INITIAL.search(head)):
            continue
        cuts.append((m.start(1), m.end()))
    cuts += [(m.end(), m.end()) for m in _EN_GLUED.finditer(text)]
    return cuts


def _line_cuts(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Cuts inside one sentence that spans several lines: before each line that reads as prose."""
    cuts = []
    for m in re.finditer(r"[ \t]*\n\s*", text[start:end]):
        line_end = text.find("\n", start + m.end())
        line = text[start + m.end(): end if line_end < 0 or line_end > end else line_end].strip()
        if _PROSE_LINE.match(line):
            cuts.append((start + m.start(), start + m.end()))
    return cuts


def _spans_from_cuts(text: str, cuts: list[tuple[int, int]]) -> list[tuple[int, int]]:
    spans, pos = [], 0
    for a, b in sorted(set(cuts)):
        if a >= pos:
            spans.append((pos, a))
            pos = b
    spans.append((pos, len(text)))
    out = []
    for a, b in spans:
        piece = text[a:b]
        lead = len(piece) - len(piece.lstrip())
        if piece.strip():
            out.append((a + lead, a + lead + len(piece.strip())))
    return out


def sentence_spans(text: str, lang: str | None = None) -> list[tuple[int, int]]:
    """(start, end) character offsets of each sentence, surrounding whitespace excluded."""
    if (lang or detect_lang(text)) == "zh":
        return _spans_from_cuts(text, _zh_cuts(text))
    cuts = _en_cuts(text)
    spans = _spans_from_cuts(text, cuts)
    inner = [c for a, b in spans if "\n" in text[a:b] for c in _line_cuts(text, a, b)]
    return _spans_from_cuts(text, cuts + inner) if inner else spans


def split_sentences(text: str, lang: str | None = None) -> list[str]:
    """The text's sentences as MedErrBench would number them (index 0 first), whitespace stripped."""
    return [text[a:b] for a, b in sentence_spans(text, lang)]


def _norm(s: str) -> str:
    """What MedErrBench's Sentences column keeps of a text: no whitespace, apostrophes or double quotes."""
    return re.sub(r"[\s'\"]+", "", s)


_MARK_CONTEXT = 12  # characters either side of a candidate index used to check it against the text


def _inline(column: str, text: str | None) -> list[str]:
    """Split ``0 First. 1 Second.`` into sentences. Numbers inside sentences (``for 3 days``) look
    like indices too, so the best increasing chain 0, 1, 2, ... is chosen: an index is trusted when
    the text reads on without it, and otherwise by whether it follows the end of a sentence."""
    first = re.match(r"\s*0 ?", column)
    if first is None:
        raise ValueError("does not start with sentence index 0")
    nt = _norm(text) if text else None
    layers: list[dict[tuple[int, int], tuple[int, tuple[int, int] | None]]] = [{(0, first.end()): (0, None)}]
    k = 1
    while True:
        layer: dict[tuple[int, int], tuple[int, tuple[int, int] | None]] = {}
        for m in re.finditer(rf"(?<!\d){k} ", column):
            p, e = m.start(), m.end()
            before = column[max(0, p - 6):p]
            if re.search(rf"[.?!:;]{_CLOSERS}\s+$", before):
                score = 2
            elif before[-1:] in (".", "?", "!", ":", ";"):
                score = 1
            elif before[-1:].isspace():
                score = -1
            else:
                continue
            if nt is not None:
                left, right = _norm(column[max(0, p - _MARK_CONTEXT):p]), _norm(column[e:e + _MARK_CONTEXT])
                absent, present = left + right in nt, f"{left}{k}{right}" in nt
                if absent and not present:
                    score = 3
                elif present and not absent:
                    score = 1 if score == 2 else -3
                elif not absent and left in nt and right in nt and f"{left}{k}" not in nt and f"{k}{right}" not in nt:
                    score = 2
            best = max(((v, key) for key, (v, _) in layers[-1].items() if key[1] <= p), default=None)
            if best is not None:
                layer[(p, e)] = (best[0] + score, best[1])
        if not layer:
            break
        layers.append(layer)
        k += 1
    _, depth, key = max((v, i, key) for i, lay in enumerate(layers) for key, (v, _) in lay.items())
    chain = [key]
    for i in range(depth, 0, -1):
        prev = layers[i][chain[-1]][1]
        assert prev is not None
        chain.append(prev)
    chain.reverse()
    ends = [p for p, _ in chain[1:]] + [len(column)]
    return [column[b:end].strip() for (_, b), end in zip(chain, ends, strict=True)]


def _lines(column: str) -> list[str] | None:
    """One indexed sentence per line (the Chinese files), or None when the column is not in that
    form. A column most of whose lines carry their index, but not every one, is that form with a
    line that lost its number: said so, rather than read as inline indices and misnumbered."""
    lines = [ln for ln in column.split("\n") if ln.strip()]
    out: list[str] = []
    unnumbered: list[tuple[int, str]] = []
    for n, line in enumerate(lines, start=1):
        m = re.match(rf"\s*{len(out)}(?: |$)(.*)$", line, re.S)
        if m is None:
            unnumbered.append((n, line.strip()))
        else:
            out.append(m.group(1).strip())
    if not unnumbered:
        return out
    if len(out) >= 2 and len(out) >= len(lines) / 2:
        n, line = unnumbered[0]
        more = f" ({len(unnumbered)} such lines)" if len(unnumbered) > 1 else ""
        raise ValueError(f"line {n} of the cell has no sentence number (expected it to start "
                         f"with {n - 1}): {line[:60]!r}{more}")
    return None


def _align(sentences: list[str], text: str) -> list[str] | None:
    """The text's own words for each sentence (apostrophes and quotes back, escapes undone); None
    when the column's wording strays from the text so far that the boundaries cannot be placed.
    Punctuation the column dropped stays with the sentence it closes, other text the column left
    out goes to the sentence that follows it, and a sentence the column reworded covers the gap
    between its neighbours (so two reworded sentences in a row cannot be placed)."""
    keep = [i for i, ch in enumerate(text) if not (ch.isspace() or ch in "'\"")]
    nt = "".join(text[i] for i in keep)
    found: list[tuple[int, int] | None] = []
    cursor = 0
    for s in sentences:
        n = _norm(s)
        at = nt.find(n, cursor) if n else -1
        found.append(None if at < 0 else (keep[at], keep[at + len(n) - 1] + 1))
        cursor = cursor if at < 0 else at + len(n)
    ends = []
    for j, f in enumerate(found[:-1]):
        if f is not None:
            ends.append(f[1] + len(re.match(r"[\"'.?!:;,”’)\]]*", text[f[1]:]).group()))
        elif found[j + 1] is not None:
            ends.append(found[j + 1][0])
        else:
            return None
    ends.append(len(text))
    out = [text[a:b].strip() for a, b in zip([0, *ends[:-1]], ends, strict=True)]
    return out if all(out) else None


def parse_numbered(column: str, text: str | None = None) -> list[str]:
    """Sentences from an indexed sentence list (MedErrBench's ``Sentences`` column), index i at
    position i. With the text, the boundaries are placed on the text itself, so the sentences are
    the text's words exactly whenever the column's wording can be matched to it."""
    column = column.replace("\\n", "\n")
    raw = _lines(column) if "\n" in column.strip() else None
    if raw is None:
        raw = _inline(column, text)
    if not all(raw):
        raise ValueError("has an empty sentence")
    aligned = _align(raw, text) if text else None
    return aligned if aligned is not None else raw


def numbered_columns(header: list[str], columns: dict[str, str]) -> list[str]:
    """Unmapped columns that may number the sentences (a 'Sentences' column the mapping left out)."""
    used = set(columns.values())
    return [h for h in header if h not in used and "sentence" in h.casefold() and "id" not in h.casefold().split()]


class ResplitCheck:
    """Without ``sentences`` in the mapping the texts are split here; when the file has its own
    numbered sentence column, count the rows whose numbering differs (their ids may then point at
    other words) and warn once, naming the column to map."""

    def __init__(self, candidates: list[str]) -> None:
        self.candidates = candidates
        self.differ: dict[str, list[int]] = {c: [] for c in candidates}
        self.compared = 0

    def compare(self, line: int, record: dict[str, Any], item: Any) -> None:
        if item.label != "error":
            return
        self.compared += 1
        for column in self.candidates:
            value = record.get(column)
            if not isinstance(value, str) or not value.strip():
                continue
            try:
                theirs = parse_numbered(value, item.text)
            except ValueError:  # not a numbered list (an 'Error Sentence' column): nothing to compare
                continue
            if theirs != item.sentences:
                self.differ[column].append(line)

    def warnings(self, path: Path) -> list[str]:
        out = []
        for column, lines in self.differ.items():
            if lines:
                shown = ", ".join(map(str, lines[:5])) + (" ..." if len(lines) > 5 else "")
                out.append(f"{path}: the mapping has no 'sentences', so texts were split here, and in {len(lines)} of "
                           f"{self.compared} error rows the sentences differ from the file's column {column!r} "
                           f"(lines {shown}): their sentence ids may point at other sentences; map it with "
                           f"sentences={column}")
        return out
