"""The error injector: turns a correct medical text into one with exactly one error of a given type.

The model only names the edit (sentence id, the original span, its replacement); the erroneous text
is built here from the source text, never taken from the model, and then verified: the sentence is
located in the text, the span in the sentence, offsets are checked against both texts, and a
character diff of source and variant must show one contiguous change inside the claimed span. A
replacement that rewrites two separate places (``10 mg ... 5 days`` -> ``20 mg ... 9 days``) passes
the string checks but fails the diff, and is rejected with that reason: a variant with two edits is
not a single-error item, whatever the model claims. The diff is taken between the claimed span and
its replacement, so an insertion, deletion or replacement inside the claimed sentence is accepted
however a character diff would align it (``aspirin`` -> ``aspirin and warfarin``).

Error types are data (``agents/data/error_types.json``: name + definition), so a taxonomy is a file.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from difflib import SequenceMatcher
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, create_model

from agents.data_files import load_entries
from agents.engine import CallContext, LLMEngine
from agents.fact_checker import numbered, sentence_id_type
from agents.language import PromptLanguage
from agents.prompts import prompt_for, prompt_hash, render

ERROR_TYPES_FILE = Path(__file__).parent / "data" / "error_types.json"


@dataclass(frozen=True)
class ErrorType:
    name: str
    definition: str


def load_error_types(path: str | Path = ERROR_TYPES_FILE) -> list[ErrorType]:
    """A taxonomy file: a JSON list of ``{"name", "definition"}``; names must be unique."""
    return [ErrorType(e["name"], e["definition"])
            for e in load_entries(path, "error type", ("name", "definition"), "name")]


@cache
def injection_model(n_sentences: int) -> type[BaseModel]:
    """The reply for a text of ``n_sentences`` sentences: the sentence id is an enum of the ids (the
    decoder keeps to it) and checked by pydantic."""
    return create_model(
        f"Injection{n_sentences}",
        sentence_id=(sentence_id_type(n_sentences), ...),
        original_span=(str, Field(min_length=1, max_length=2000)),
        replacement_span=(str, Field(min_length=1, max_length=2000)),
        correction=(str, Field(max_length=2000)),
        rationale=(str, Field(max_length=1000)),
    )


@dataclass(frozen=True)
class InjectionReply:
    sentence_id: int
    original: str
    replacement: str
    correction: str
    rationale: str
    call_id: int | None


@dataclass(frozen=True)
class Variant:
    """A verified edit: ``text`` is the source with ``text[start:end]`` (``original``) replaced, so
    ``variant_text[start:start + len(replacement)] == replacement``."""

    text: str
    sentences: list[str]
    sentence_id: int
    original: str
    replacement: str
    start: int  # offsets of the original span in the source text
    end: int
    variant_start: int  # offsets of the replacement in the erroneous text
    variant_end: int
    correction: str  # the original words: they correct the error
    rationale: str
    model_correction: str

    def details(self) -> dict[str, Any]:
        """What is kept with the stored variant (everything but the texts)."""
        d = asdict(self)
        d.pop("text")
        d.pop("sentences")
        return d


class Rejected(ValueError):
    """An injection that failed verification; the message is the recorded reason."""


def sentence_offsets(text: str, sentences: list[str]) -> list[int]:
    """Where each sentence starts in the text (searched in order); a sentence that is not the
    text's own words verbatim (a reworded MedErrBench sentence) cannot carry an edit."""
    starts, cursor = [], 0
    for n, s in enumerate(sentences):
        at = text.find(s, cursor)
        if at < 0:
            raise Rejected(f"sentence {n} does not occur verbatim in the text, so an edit cannot be placed there")
        starts.append(at)
        cursor = at + len(s)
    return starts


def changed_regions(source: str, variant: str, gap_chars: int) -> list[tuple[int, int]]:
    """Source-text regions a character diff changes; changes separated by fewer than ``gap_chars``
    unchanged characters are one region (``5 days`` -> ``7 weeks`` is one edit, not two)."""
    regions: list[tuple[int, int]] = []
    for tag, i1, i2, _, _ in SequenceMatcher(None, source, variant, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        if regions and i1 - regions[-1][1] < gap_chars:
            regions[-1] = (regions[-1][0], i2)
        else:
            regions.append((i1, i2))
    return regions


def _words(text: str, a: int, b: int) -> str:
    """The source words a changed region touches, for a readable reason (``reduc`` -> ``reduce``)."""
    while a > 0 and text[a - 1].isascii() and text[a - 1].isalnum():
        a -= 1
    while b < len(text) and text[b].isascii() and text[b].isalnum():
        b += 1
    return text[a:b] or "(insertion)"


def build_variant(text: str, sentences: list[str], reply: InjectionReply, gap_chars: int = 6) -> Variant:
    """The erroneous text built from the reply, verified; raises ``Rejected`` with the reason."""
    sid = reply.sentence_id
    if not 0 <= sid < len(sentences):
        raise Rejected(f"sentence id {sid} is out of range (ids 0 to {len(sentences) - 1})")
    if reply.original == reply.replacement:
        raise Rejected("the replacement is the original span: nothing would change")
    sentence = sentences[sid]
    within = sentence.find(reply.original)
    if within < 0:
        raise Rejected(f"the original span {reply.original!r} does not occur in sentence {sid} ({sentence!r})")
    start = sentence_offsets(text, sentences)[sid] + within
    end = start + len(reply.original)
    if text[start:end] != reply.original:  # the offsets must point at the claimed words in the source
        raise Rejected(f"offsets {start}..{end} do not hold the original span in the text")
    variant = text[:start] + reply.replacement + text[end:]
    v_end = start + len(reply.replacement)
    if variant[start:v_end] != reply.replacement or variant[:start] != text[:start] or variant[v_end:] != text[end:]:
        raise Rejected(f"offsets {start}..{v_end} do not hold the replacement in the erroneous text")
    # The variant is the source with the located span replaced, so the edit lies inside the claimed
    # sentence by construction; what is left to verify is that it is one change. It is counted on the
    # span and its replacement: a diff of the whole texts may align an insertion anywhere along a run
    # of equal characters ("aspirin" -> "aspirin and warfarin" before " and ..." lands past the span).
    regions = [(start + a, start + b) for a, b in changed_regions(reply.original, reply.replacement, gap_chars)]
    if len(regions) != 1:
        spans = ", ".join(repr(_words(text, a, b)) for a, b in regions)
        raise Rejected(f"the edit changes {len(regions)} separate places ({spans}); exactly one is allowed")
    new_sentences = list(sentences)
    new_sentences[sid] = sentence[:within] + reply.replacement + sentence[within + len(reply.original):]
    return Variant(variant, new_sentences, sid, reply.original, reply.replacement, start, end, start, v_end,
                   reply.original, reply.rationale.strip(), reply.correction)


class ErrorInjector:
    role = "error_injector"
    prompt = "factbench_inject"

    def __init__(self, engine: LLMEngine, temperature: float = 0.7, language: PromptLanguage = "auto"):
        self.engine, self.temperature, self.language = engine, temperature, language

    async def inject(self, sentences: list[str], error_type: ErrorType, ctx: CallContext,
                     seed: int = 0, lang: str | None = None) -> InjectionReply:
        """The model's edit (not yet verified), asked in the text's language (``lang``, else detected
        from the sentences). Raises ``LLMCallFailed``."""
        name = prompt_for(self.prompt, self.language, lang, sentences)
        messages = render(name, sentences=numbered(sentences), error_type=error_type)
        ctx = replace(ctx, role=self.role, prompt_name=name, prompt_hash=prompt_hash(name))
        res = await self.engine.chat(messages, schema=injection_model(len(sentences)), ctx=ctx, seed=seed,
                                     temperature=self.temperature)
        v = res.value
        return InjectionReply(v.sentence_id, v.original_span, v.replacement_span, v.correction, v.rationale,
                              res.call_id)
