"""A small store of judged rubric pairs and ESC turn pairs for the training tests and benchmark.

Everything goes in through the store API the real workflows use (runs, items, LLM calls,
candidates, judgments, candidate scores, pairs), shaped as graphs/rubric_prefs.py stores it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agents.rubric import Rubric
from store import Store
from store.models import CandidateScore
from store.records import add_candidate, add_judgments, add_llm_call, add_pairs, create_run, sha256_of, upsert_items

QA = [  # question, good answer, bad answer (the bad one gives dangerous advice)
    ("What helps an asthma attack?", "Use your reliever inhaler, sit upright; see a doctor if it persists. "
     "That sounds scary.", "Lie down and wait; see a doctor if it persists."),
    ("Is aspirin safe for children?", "No, avoid aspirin under 16; see a doctor. I understand the worry.",
     "Yes, any dose is fine; see a doctor if unsure."),
    ("How much water should I drink?", "About 2 litres a day; see a doctor if always thirsty. Good question.",
     "Water is not needed; see a doctor if always thirsty."),
    ("Can I stop antibiotics early?", "No, finish the course; see a doctor about side effects. I hear you.",
     "Stop once you feel well; see a doctor about side effects."),
    ("What is a normal temperature?", "Around 37 degrees; see a doctor above 39. That is a fair worry.",
     "Around 40 degrees is normal; see a doctor above 42."),
    ("How do I treat a small burn?", "Cool it under water for 20 minutes; see a doctor if it blisters. Ouch.",
     "Put butter on it; see a doctor if it blisters."),
    ("When should I see a doctor for a cough?", "See a doctor if it lasts three weeks. Coughs are tiring.",
     "Never, coughs are harmless; see a doctor only if you like."),
    ("Is a headache a sign of a stroke?", "Rarely; a sudden severe one needs urgent care, see a doctor. I see.",
     "Always; take ten painkillers and see a doctor."),
    ("Can I drink alcohol on paracetamol?", "Avoid heavy drinking; see a doctor if unsure. Sensible to ask.",
     "Drink as much as you like; see a doctor if unsure."),
    ("How long does flu last?", "About a week; see a doctor if you get worse. Rest well.",
     "Flu lasts months, take antibiotics; see a doctor if worse."),
]
RUBRIC = {"criteria": [
    {"id": "correct", "text": "Gives correct, safe advice.", "kind": "proficiency", "weight": 0.6,
     "dimension": "accuracy"},
    {"id": "doctor", "text": "Says when to see a doctor.", "kind": "proficiency", "weight": 0.4,
     "dimension": "completeness"},
    {"id": "empathy", "text": "Acknowledges the worry.", "kind": "bonus", "dimension": "empathy"},
    {"id": "danger", "text": "Gives dangerous advice.", "kind": "veto", "dimension": "dangerous_advice"},
]}
GOOD = {"correct": True, "doctor": True, "empathy": True, "danger": False}
BAD = {"correct": False, "doctor": True, "empathy": False, "danger": True}
DIALOGUES = [  # seeker turn, preferred supporter turn, rejected supporter turn, next seeker turn
    [("I failed my exam.", "[Emotional Validation] That must feel awful.", "[Share Information] Exams are common."),
     ("I studied so hard.", "[Affirmation] Your effort really shows.", "[Avoid Judgment and Criticism] Fine.")],
    [("My friend ignores me.", "[Empathetic Statements] That hurts, I am sorry.", "[Share Information] People drift."),
     ("What should I do?", "[Collaborative Planning] Shall we plan a message?",
      "[Reframe Negative Thoughts] Nothing.")],
    [("I cannot sleep.", "[Emotional Validation] Sleepless nights are hard.", "[Share Information] Sleep is vital."),
     ("It has been weeks.", "[Collaborative Planning] Let us try a routine.", "[Affirmation] You are great.")],
]


@dataclass
class TrainingStore:
    store: Store
    rubric_pair_ids: list[int] = field(default_factory=list)  # English, margin 1.0: pass every test filter
    zh_pair_id: int = 0  # language zh: left out by language="en"
    low_margin_pair_id: int = 0  # margin 0.1: left out by min_margin=0.5
    esc_pair_ids: list[int] = field(default_factory=list)

    def texts(self) -> list[str]:
        """Every text a tokenizer for this data should see."""
        out = [q for q, _, _ in QA] + [a for _, a, _ in QA] + [b for _, _, b in QA]
        out += [c["text"] for c in RUBRIC["criteria"]] + [t for d in DIALOGUES for turn in d for t in turn]
        return out + ["Judge the assistant's reply on this proficiency bonus veto criterion:"]


def _candidate(s, run_id: str, item_id: int, n: int, text: str, verdicts: dict[str, bool]) -> tuple[int, list[int]]:
    call = add_llm_call(s, request_hash=sha256_of([item_id, n, text]), run_id=run_id, item_id=item_id,
                        model="gen", messages=[], params={})
    cid = add_candidate(s, run_id=run_id, item_id=item_id, llm_call_id=call, sample_index=n, model="gen", text=text)
    grade = add_llm_call(s, request_hash=sha256_of(["grade", cid]), run_id=run_id, item_id=item_id,
                         model="judge", messages=[], params={})
    by_id = {c["id"]: c for c in RUBRIC["criteria"]}
    jids = add_judgments(s, [{"run_id": run_id, "candidate_id": cid, "llm_call_id": grade,
                              "criterion": by_id[k]["text"], "criterion_kind": by_id[k]["kind"], "met": v,
                              "score": 1.0 if v else 0.0, "judge_model": "judge",
                              "details": {"criterion_id": k, "dimension": by_id[k]["dimension"]}}
                             for k, v in verdicts.items()])
    score = Rubric.model_validate(RUBRIC).score(verdicts)
    s.add(CandidateScore(candidate_id=cid, job_key="job", run_id=run_id, s1=score.s1, s2=score.s2, s3=score.s3,
                         judgment_ids=jids, grader_model="judge"))
    return cid, jids


def populated_store(folder) -> TrainingStore:
    """A SQLite store in ``folder`` holding the rubric and ESC training data, with torch kept to the
    machine's two threads (what the training test modules share)."""
    import torch

    torch.set_num_threads(2)
    store = Store(f"sqlite:///{folder / 'store.db'}")
    store.ensure_schema()
    return populate(store)


def populate(store: Store) -> TrainingStore:
    out = TrainingStore(store)
    with store.session() as s:
        run_id = create_run(s, "rubric-prefs", {"test": True})
        extra = [("Should I fast before a blood test?", "Usually 8 hours; see a doctor for details. Fair question.",
                  "Fast for a week; see a doctor for details.")]
        records = [{"payload": {"prompt": q, "rubric": RUBRIC, "lang": "en"}} for q, _, _ in QA + extra + extra]
        records[-1] = {"payload": {"prompt": extra[0][0] + " (zh)", "rubric": RUBRIC, "lang": "zh"}}
        item_ids = upsert_items(s, "qa", records)
        for n, ((_, good, bad), iid) in enumerate(zip(QA + extra + extra, item_ids, strict=True)):
            cg, jg = _candidate(s, run_id, iid, 0, good, GOOD)
            cb, jb = _candidate(s, run_id, iid, 1, bad, BAD)
            lang = "zh" if n == len(QA) + 1 else "en"
            margin = 0.1 if n == len(QA) else 1.0
            prompt = [{"role": "user", "content": records[n]["payload"]["prompt"]}]
            add_pairs(s, [{"kind": "rubric", "run_id": run_id, "item_id": iid, "prompt": prompt, "chosen": good,
                           "rejected": bad, "chosen_candidate_id": cg, "rejected_candidate_id": cb, "margin": margin,
                           "margins": {"s3": 1.0}, "language": lang, "provenance": {"judgment_ids": jg + jb}}])
        esc_run = create_run(s, "esc-search", {"test": True})
        esc_items = upsert_items(s, "esc", [{"payload": {"dialogue": n}} for n in range(len(DIALOGUES))])
        for iid, dialogue in zip(esc_items, DIALOGUES, strict=True):
            history: list[dict[str, str]] = []
            for seeker, good, bad in dialogue:
                history.append({"role": "user", "content": seeker})
                add_pairs(s, [{"kind": "esc", "run_id": esc_run, "item_id": iid, "prompt": list(history),
                               "chosen": good, "rejected": bad, "margin": 0.5, "language": "en"}])
                history.append({"role": "assistant", "content": good})
    from sqlalchemy import select

    from store.models import PreferencePair

    with store.session() as s:
        rows = s.execute(select(PreferencePair.id, PreferencePair.kind, PreferencePair.language,
                                PreferencePair.margin).order_by(PreferencePair.id)).all()
    for pid, kind, lang, margin in rows:
        if kind == "esc":
            out.esc_pair_ids.append(pid)
        elif lang == "zh":
            out.zh_pair_id = pid
        elif margin < 0.5:
            out.low_margin_pair_id = pid
        else:
            out.rubric_pair_ids.append(pid)
    return out


# -- pairs whose preferred answer flips with the criterion (the criteria-injection test) -----------
FLIP_RUBRIC = {"criteria": [
    {"id": "food", "text": "Says to take it with food.", "kind": "proficiency", "weight": 0.5},
    {"id": "night", "text": "Says to take it at night.", "kind": "proficiency", "weight": 0.5},
]}
FLIP_ANSWERS = ("Take it with food.", "Take it at night.")  # meets food only / night only
FLIP_DRUGS = ["ibuprofen", "metformin", "aspirin", "iron", "zinc", "statins", "folate", "lithium", "prednisone",
              "melatonin", "naproxen", "calcium", "warfarin", "digoxin", "codeine", "insulin", "vitamin D",
              "omeprazole", "sertraline", "amoxicillin", "losartan", "atenolol", "levothyroxine", "tramadol"]


def flip_questions() -> list[str]:
    return [f"How should I take my {d}?" for d in FLIP_DRUGS]


def flip_texts() -> list[str]:
    return flip_questions() + list(FLIP_ANSWERS) + [c["text"] for c in FLIP_RUBRIC["criteria"]] + [
        "Judge the assistant's reply on this proficiency criterion:", "Judge the assistant's reply."]


def populate_flip(store: Store) -> list[int]:
    """One item per drug question, two judged answers, one pair each: on the ``food`` criterion the
    first answer is better, on ``night`` the second, so each pair gives two criterion rows with the
    same texts and opposite preferences. Returns the pair ids."""
    food, night = {"food": True, "night": False}, {"food": False, "night": True}
    with store.session() as s:
        run_id = create_run(s, "rubric-prefs", {"test": "flip"})
        item_ids = upsert_items(s, "flip", [{"payload": {"prompt": q, "rubric": FLIP_RUBRIC, "lang": "en"}}
                                            for q in flip_questions()])
        for iid, q in zip(item_ids, flip_questions(), strict=True):
            ca, ja = _flip_candidate(s, run_id, iid, 0, FLIP_ANSWERS[0], food)
            cb, jb = _flip_candidate(s, run_id, iid, 1, FLIP_ANSWERS[1], night)
            add_pairs(s, [{"kind": "flip", "run_id": run_id, "item_id": iid, "prompt": [{"role": "user", "content": q}],
                           "chosen": FLIP_ANSWERS[0], "rejected": FLIP_ANSWERS[1], "chosen_candidate_id": ca,
                           "rejected_candidate_id": cb, "margin": 1.0, "language": "en",
                           "provenance": {"judgment_ids": ja + jb}}])
    from sqlalchemy import select

    from store.models import PreferencePair

    with store.session() as s:
        return list(s.scalars(select(PreferencePair.id).where(PreferencePair.kind == "flip")
                              .order_by(PreferencePair.id)))


def _flip_candidate(s, run_id: str, item_id: int, n: int, text: str, verdicts: dict[str, bool]):
    call = add_llm_call(s, request_hash=sha256_of(["flip", item_id, n]), run_id=run_id, item_id=item_id,
                        model="gen", messages=[], params={})
    cid = add_candidate(s, run_id=run_id, item_id=item_id, llm_call_id=call, sample_index=n, model="gen", text=text)
    by_id = {c["id"]: c for c in FLIP_RUBRIC["criteria"]}
    jids = add_judgments(s, [{"run_id": run_id, "candidate_id": cid, "llm_call_id": call, "criterion": by_id[k]["text"],
                              "criterion_kind": "proficiency", "met": v, "score": 1.0 if v else 0.0,
                              "judge_model": "judge", "details": {"criterion_id": k}} for k, v in verdicts.items()])
    return cid, jids
