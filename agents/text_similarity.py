"""The one text-similarity measure: Jaccard similarity of token shingles, for English and Chinese.

Tokens are lower-cased words; a run of CJK characters (written without spaces) becomes overlapping
character bigrams, so Chinese text is compared by content rather than as one long "word". Used to
pick the most similar few-shot examples (single tokens) and to find near-duplicate answers and
benchmark items (``size`` > 1 compares word order too).
"""

from __future__ import annotations

import re

_WORD = re.compile(r"\w+", re.UNICODE)
_CJK = re.compile(r"[\u3400-\u9fff]")


def tokens(text: str) -> list[str]:
    out: list[str] = []
    for word in _WORD.findall(text.casefold()):
        if _CJK.search(word):
            out.extend(word[i:i + 2] for i in range(max(len(word) - 1, 1)))
        else:
            out.append(word)
    return out


def shingles(text: str, size: int = 1) -> set[tuple[str, ...]]:
    """Runs of ``size`` consecutive tokens (a text shorter than that is one shingle; no token: none)."""
    toks = tokens(text)
    return {tuple(toks[i:i + size]) for i in range(max(len(toks) - size + 1, 1))} if toks else set()


def jaccard(sa: set, sb: set) -> float:
    """Jaccard similarity of two shingle sets (computed once per text when many pairs are compared),
    0.0 when either is empty."""
    return len(sa & sb) / len(sa | sb) if sa and sb else 0.0


def similarity(a: str, b: str, size: int = 1) -> float:
    """Jaccard similarity of the two texts' shingles, 0.0 when either has no token."""
    return jaccard(shingles(a, size), shingles(b, size))
