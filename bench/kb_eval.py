"""Top-1 accuracy and hand-off/decline rates of the robot's retrieval on the labelled query set, against a plain
rapidfuzz baseline.

    python bench/kb_eval.py          # evaluate (eval split) with the shipped calibration
    python bench/kb_eval.py --fit    # first refit knowledge/data/calibration.json on the calibration split

Run from the project root with the project's venv active. The query set is ``tests/data/kb_queries.jsonl``
(``{"q","expect","lay","split","batch"}``; ``expect`` an entry id, ``decline`` or ``handoff``), written apart from the
knowledge base's variants. Calibration is fitted only on ``split == "calibration"``; every figure printed is on
``split == "eval"``, a disjoint set of queries, for all batches and for each batch alone.

The decision rule is the robot's: an explicit request for a person → hand-off; chit-chat → decline; confidence
below RELEVANT_AT → decline; two entries of different devices within CLARIFY_MARGIN → clarify; below ANSWER_AT →
unsure (the robot asks back "您是想问…吗？" and answers on "是", hands off on "不是"); one device's entries
confidently tied → clarify (which problem); otherwise the top entry (``retrieval.decide``, the robot's own function).
A covered question counts as right only when the robot settles on its entry at once (confidence ≥ ANSWER_AT); an
uncovered one when the robot declines.
The baseline is ``rapidfuzz.process.extractOne(q, questions, scorer=WRatio)``: always an entry, never declines.

How the query set was written and split (``batch``; rows without it are batch 1):

- Batch 1 (330 queries) was written together with the first engine. Parts of the typo/lay-word map were written
  with those queries in view, so its eval split overstates accuracy; it is kept for continuity, reported apart.
- Batch 2 (252 queries) was written before any scoring change of the second round, from each entry's meaning as
  ward nurses, lab technicians and sterile-supply staff type it: colloquial, typos, error codes in several
  spellings, lay names for devices and parts (``"lay": true``), chatter; uncovered questions about the same
  devices (maintenance, settings, data export), about other equipment (syringe pumps, endoscopes, thermometers…),
  clinical questions and small talk (``"decline"``); requests for a person (``"handoff"``). Queries within a fuzz
  ratio of 85 of a knowledge-base question or variant were reworded before use. The split was drawn once, by a
  seeded shuffle within each label, alternating eval/calibration (126 each).
- Everything tuned in the second round (synonyms, variants, features, the logistic fit) was chosen from misses on
  the calibration split (``--misses`` lists only those). New variants were written from the entries' meaning and
  any that came within a fuzz ratio of 80 of any labelled query was left out, so variants cannot copy the set.
- Batch 2's eval figures showed that round overfitted the calibration split (fresh questions gained nothing), so
  batch 3 (155 queries, written the same way, split the same way) was added: its calibration rows are never listed
  as misses; their aggregate figures alone chose how to fit the confidence (fitting on every calibration row and
  answering at 0.7 kept wrong answers near 3 %; answering at 0.5 doubled them), and its eval rows are fresh.
- Caveat: one author wrote both batch 2 and the second-round lexicon, so batch 2 is not a fully independent test;
  questions logged by real users (the review queue) are the next, independent set.
- Third round (the knowledge base, not the engine): a second author who never saw this query set, the bench or
  their history wrote 12–14 more variants per entry (lay wording, shorthand, typos, brands and codes) and more
  typo/lay-word pairs, from the entries' answers alone, checking each variant against the rest of the base. Of those
  variants, every one within a fuzz ratio of 80 of any labelled query was dropped unread (143 of 775), as in the
  second round; two that named the central station (a device of its own) were dropped because a retrieval test
  showed them answering a central-station software question. The calibration was refitted on the calibration
  split; the eval split was then run for the figures. Two retrieval fixes that author reported went in with it:
  "哈…" at the start of a message is a laugh only as a word of its own ("哈美顿" is a ventilator brand), and "AED"
  names the defibrillator. One engine change followed, chosen by 5-fold cross-validation inside the calibration
  split (answered right 92.7 % → 93.5 %, wrong answers equal, uncovered not answered 92.5 % → 94.3 %) before the
  eval split was run: a seventh confidence feature, ``support`` (the entry's second-best wording's score).
- Batch 4 (222 written, 185 kept) came from a third author who saw only each entry's id, device, question and
  answer — not the variants, the engine, this set or the figures: covered questions for every entry (46 in lay
  words), uncovered ones (near misses, other equipment, clinical questions, small talk) and requests for a person.
  Lines within a fuzz ratio of 85 of any knowledge-base text were dropped unread (37); the split was drawn by a
  seeded shuffle within each label, alternating eval/calibration. Its eval rows were first scored with the
  calibration of batches 1–3 (covered 78.3 %, raw top-1 96.7 %, no wrong answer); the calibration was then refitted
  with its calibration rows (never listed as misses) and the figures printed are after that refit.
- Fourth round (the knowledge base again, and the decision rule): a third variant author, who saw only the knowledge
  base (not this set, the engine or any figure), wrote 13–15 more wordings per entry (voice-to-text, lay descriptions
  of what is seen or heard, fragments, short stories, brands and codes) and 23 typo/lay-word pairs; every wording
  within a fuzz ratio of 80 of any labelled query was dropped unread (61 of 831), two pairs were left out (a room
  humidifier and a substring of English words), and three folds that author showed misrouting other devices'
  questions were removed. Choices were made by 5-fold cross-validation on the calibration split only: decline below
  0.55 instead of 0.5; a question too vague for one entry (one device's entries tied, or nothing but "报警"/"坏了"
  besides the device) is clarified, not answered (no labelled row changes). The eval split was run once after these.
- Batch 5 (213 written, 207 kept) came from a fourth author who saw only each entry's id, device, question, answer
  and tier, after the fourth round; split as batch 4. Its eval rows were scored first with the calibration of
  batches 1–4 (covered 72.7 %, lay 40.7 %, decline 83.3 %, hand-off 75 %, raw top-1 97.4 %, no wrong answer), then
  the calibration was refitted with its calibration rows (never listed as misses). Person requests are the one
  exception to "unread": the calibration rows of batches 4 and 5 that the hand-off rules missed were read (three:
  "找维修", "找个懂的人来", "找个活人"), and the author's notes named two kinds ("设备科值班电话", "我要投诉 叫负责人");
  the rules gained those kinds. Batch 5's eval hand-off figure did not change (9 of 12): its misses were not read.
  The rules were then rewritten as "a request verb and a person, or the person and coming or calling" rather than
  "a word like 工程师 anywhere", from 140 messages another author wrote for that purpose (``person_requests.jsonl``:
  the old rules missed 21 of 90 requests and took 16 of 50 look-alikes for requests). The eval split's aggregate
  hand-off counts were printed while the rules were revised, so its hand-off figure (98.1 %, batch 5 11 of 12) is
  not blind; no eval row was read.
- Batch 6 (217 written, 184 kept: lines within a fuzz ratio of 85 of any knowledge-base text or earlier query dropped
  unread) came from a fifth author who saw only the entries; split as batch 4. Its calibration rows were read (like
  batches 1–2), its eval rows never. Fifth round, each change chosen by 5-fold cross-validation on the calibration
  split: a numbered bed, floor or hour is not part of the question; clinical questions (a second rule, from 160
  questions written apart for it, ``tests/data/clinical_questions.jsonl``) rank every entry down and are never asked
  back about; a kind of question no wording of an entry asks (price, schedule, supplies, configuration, material,
  assembly, export, upgrade) ranks that entry down; a device described, not named, is read as named (from 258
  descriptions written apart, ``tests/data/device_descriptions.jsonl``); two more typo pairs (报井, 泄露) and "做B超"
  as an examination, from batch 6's calibration misses; 660 lay wordings from two more authors who saw only the
  entries (47 within a fuzz ratio of 80 of a labelled query dropped unread); answer from 0.6 instead of 0.7; one
  device's entries tied only when their raw scores are close as well. The person-request rules were widened from 160
  messages written apart (``person_requests.jsonl``); checking them on the calibration split showed one batch-4
  calibration row the widened rules took for a request ("…巡检什么时候来"), and the rules were narrowed for it. The eval
  split was then run once: covered 94.0 % (the code of round four: 85.8 % on the same 711 rows), lay 88.8 % (69.7 %),
  decline 87.5 % (85.5 %), hand-off 98.3 % (96.6 %); batch 6 alone, fresh to both: covered 94.0 % (73.1 %), lay
  90.3 % (54.8 %), decline 90.0 % (85.0 %), hand-off 6 of 6 (5 of 6).
- Batch 7 (210 written, 176 kept, as batch 6) came from a sixth author, after that run; its calibration rows are
  unread. Chosen by cross-validation before the eval split was run again: configuration questions are answered only
  by an entry whose question asks one; a part's lifespan, a normal value and upkeep are kinds of question too (from
  160 near misses written apart, ``tests/data/near_misses.jsonl``); a clinical question is answered only above 0.9.
  Second run: all 567 covered 94.4 %, lay 90.3 %, decline 87.0 %, hand-off 98.4 %, wrong 1.2 %; batch 7 alone,
  fresh to both: covered 91.0 % (the code of round four: 71.6 %), lay 86.2 % (51.7 %), decline 82.4 % (82.4 %),
  hand-off 5 of 5, wrong 2 of 67 (none). A third run followed one change only, the person-request rules widened from
  160 more messages written apart: hand-off unchanged, one batch-5 uncovered eval row now handed off instead of
  declined (decline 86.4 %); that row was not read.
- A sixth knowledge-base round (508 wordings kept, written as non-technical staff would: porters, night-shift
  nurses, fragments) was tried and not kept: cross-validation on the calibration split fell from 97.1 % to 96.0 %
  covered and from 93.3 % to 91.8 % lay, with more wrong answers.
- Batch 8 (212 written, 161 kept, as batch 6) came from a seventh author after the last change, and was scored once,
  all its rows, with the shipped calibration (fitted before it existed): covered 86.6 % (the code of round four:
  66.9 %), lay 78.7 % (49.2 %), decline 88.0 % (76.0 %), hand-off 9 of 9 (8 of 9), raw top-1 95.3 % (91.3 %), wrong
  entry answered 2 of 127 (1 of 127). It was the plainest estimate of a new author's questions at that point.
- Then batch 8's calibration misses were read (as batches 1, 2 and 6), and two rules came of them: "做CT的路上" names
  the examination, not a machine, unless a machine word follows; "控制输液的机器" describes the infusion pump; one
  typo pair (消毒贵). The calibration was refitted with batch 8's calibration rows.
- Batch 9 (212 written, 151 kept, as batch 6) came from an eighth author and was scored once, all its rows, after
  that: covered 92.6 % (the code of round four: 73.6 %), lay 94.7 % (59.6 %), hand-off 9 of 9 (9 of 9), wrong entry
  answered 1 of 121 (none), but decline 66.7 % (71.4 %): 7 of its 21 uncovered questions were answered (4 before).
  Near misses remain the weak side. Its calibration rows are unread and not yet fitted.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rapidfuzz import fuzz, process  # noqa: E402

from knowledge import retrieval  # noqa: E402
from knowledge.retrieval import KBEntry, Index  # noqa: E402

SEED = ROOT / "knowledge" / "data" / "kb_seed.json"
QUERIES = ROOT / "tests" / "data" / "kb_queries.jsonl"
BATCHES = {1: "written with the first engine", 2: "written before any scoring change of the second round",
           3: "written after the second round's lexicon, before the refit",
           4: "written by an author who never saw the engine, the variants or the set",
           5: "written by a fourth author, after the fourth knowledge-base round, seeing only the entries",
           6: "written by a fifth author, seeing only the entries, before the fifth round's changes were scored",
           7: "written by a sixth author, seeing only the entries, after the fifth round's first eval run",
           8: "written by a seventh author, seeing only the entries; scored once, after the fifth round, before any fit",
           9: "written by an eighth author, seeing only the entries; scored once, at the end of the fifth round"}
# Calibration rows whose misses nobody reads (``--misses`` skips them): they score as a question the lexicon was never
# tuned to would, so their aggregate figures could choose how to fit the confidence without touching the eval split.
UNREAD_BATCHES = {3, 4, 5, 7, 9}


def load_entries(path: Path = SEED) -> list[KBEntry]:
    return [KBEntry(id=e["id"], device_type=e["device_type"], question=e["question"], variants=tuple(e["variants"]),
                    answer=e["answer"], tier=e["tier"], docs=tuple(e["docs"]), videos=tuple(e["videos"]))
            for e in json.loads(path.read_text(encoding="utf-8"))]


def load_queries(path: Path = QUERIES) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def decide(index: Index, text: str, device_type: str | None = None) -> tuple[str, str | None]:
    """(kind, entry id): kind is answer | unsure | clarify | handoff | decline — the robot's rule
    (``retrieval.decide`` over the same matches; "which device" and "which problem" both count as clarify)."""
    if not retrieval.normalise_for_check(text):
        return "decline", None
    if retrieval.wants_person(text):
        return "handoff", None
    if retrieval.is_chitchat(text):
        return "decline", None
    matches = index.search(text, device_type=device_type, limit=retrieval.CONSIDERED)
    decision = retrieval.decide(matches, device_known=device_type is not None, clinical=retrieval.is_clinical(text))
    kind = {"which_device": "clarify", "which_problem": "clarify"}.get(decision.kind, decision.kind)
    return kind, decision.options[0].entry.id if decision.options else None


def fit(index: Index, rows: list[dict], *, steps: int = 4000, rate: float = 0.5, l2: float = 1e-3) -> dict:
    """Logistic regression (plain gradient descent) from the score features to "the top entry is right"."""
    xs, ys = [], []
    for row in rows:
        if row["expect"] == "handoff" or retrieval.wants_person(row["q"]) or retrieval.is_chitchat(row["q"]):
            continue  # never reaches the index in the robot
        scored = index.score(row["q"])
        if not scored:
            continue
        xs.append(retrieval.features(scored[0], scored[1] if len(scored) > 1 else None))
        ys.append(1.0 if index.entries[scored[0].entry].id == row["expect"] else 0.0)
    k = len(retrieval.FEATURES)
    w, b = [0.0] * k, 0.0
    for _ in range(steps):
        gw, gb = [0.0] * k, 0.0
        for x, y in zip(xs, ys):
            p = retrieval.probability({"weights": w, "bias": b}, x)
            for j in range(k):
                gw[j] += (p - y) * x[j]
            gb += p - y
        n = len(xs)
        w = [wj - rate * (g / n + l2 * wj) for wj, g in zip(w, gw)]
        b -= rate * gb / n
    brier = sum((retrieval.probability({"weights": w, "bias": b}, x) - y) ** 2 for x, y in zip(xs, ys)) / len(xs)
    return {"features": list(retrieval.FEATURES), "weights": [round(v, 4) for v in w], "bias": round(b, 4),
            "fitted_on": "tests/data/kb_queries.jsonl split=calibration",
            "samples": len(xs),
            "positives": int(sum(ys)), "brier": round(brier, 4)}


def evaluate(index: Index, rows: list[dict]) -> dict:
    covered = [r for r in rows if r["expect"] not in ("decline", "handoff")]
    lay = [r for r in covered if r["lay"]]
    uncovered = [r for r in rows if r["expect"] == "decline"]
    person = [r for r in rows if r["expect"] == "handoff"]
    outcome = {id(r): decide(index, r["q"]) for r in rows}
    raw_top = {id(r): (index.search(r["q"], limit=1) or [None])[0] for r in covered}

    def right(r):
        kind, eid = outcome[id(r)]
        return kind == "answer" and eid == r["expect"]

    def rate(subset, ok):
        return sum(1 for r in subset if ok(r)) / max(1, len(subset))

    return {
        "covered": (rate(covered, right), len(covered)),
        "lay": (rate(lay, right), len(lay)),
        "covered_top1_raw": (rate(covered, lambda r: raw_top[id(r)] is not None
                                  and raw_top[id(r)].entry.id == r["expect"]), len(covered)),
        "covered_wrong_answer": (rate(covered, lambda r: outcome[id(r)][0] == "answer" and not right(r)),
                                 len(covered)),
        # An unsure basic match is asked back ("您是想问…吗？"): right after one "是" when it names the entry.
        "covered_after_confirm": (rate(covered, lambda r: outcome[id(r)][0] in ("answer", "unsure")
                                       and outcome[id(r)][1] == r["expect"]), len(covered)),
        "decline": (rate(uncovered, lambda r: outcome[id(r)][0] == "decline"), len(uncovered)),
        "not_answered": (rate(uncovered, lambda r: outcome[id(r)][0] != "answer"), len(uncovered)),
        "handoff": (rate(person, lambda r: outcome[id(r)][0] == "handoff"), len(person)),
        "misses": [(r["q"], r["expect"], outcome[id(r)]) for r in rows
                   if (r["expect"] == "decline" and outcome[id(r)][0] != "decline")
                   or (r["expect"] == "handoff" and outcome[id(r)][0] != "handoff")
                   or (r["expect"] not in ("decline", "handoff") and not right(r))],
    }


def baseline(entries: list[KBEntry], rows: list[dict]) -> dict:
    questions = [e.question for e in entries]

    def top(q):
        return entries[process.extractOne(q, questions, scorer=fuzz.WRatio)[2]].id

    covered = [r for r in rows if r["expect"] not in ("decline", "handoff")]
    lay = [r for r in covered if r["lay"]]
    return {"covered": (sum(top(r["q"]) == r["expect"] for r in covered) / len(covered), len(covered)),
            "lay": (sum(top(r["q"]) == r["expect"] for r in lay) / max(1, len(lay)), len(lay)),
            "decline": (0.0, sum(r["expect"] == "decline" for r in rows)),
            "handoff": (0.0, sum(r["expect"] == "handoff" for r in rows))}


def print_table(title: str, ours: dict, base: dict) -> None:
    print(title)
    print(f"{'metric':<44}{'medwx':>10}{'baseline':>10}{'n':>6}  target")
    lines = [("top-1 answered right, covered", "covered", "≥ 95%"),
             ("top-1 answered right, lay wording", "lay", "≥ 85%"),
             ("correct decline, uncovered", "decline", "≥ 90%"),
             ("hand-off, explicit person requests", "handoff", "100%")]
    for label, key, target in lines:
        value, n = ours[key]
        print(f"{label:<44}{value:>10.1%}{base[key][0]:>10.1%}{n:>6}  {target}")
    for label, key in (("  (right at once or after one confirmation)", "covered_after_confirm"),
                       ("  (raw top-1 ignoring thresholds, covered)", "covered_top1_raw"),
                       ("  (wrong entry answered, covered)", "covered_wrong_answer"),
                       ("  (not answered, uncovered)", "not_answered")):
        value, n = ours[key]
        print(f"{label:<44}{value:>10.1%}{'':>10}{n:>6}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fit", action="store_true", help="refit knowledge/data/calibration.json first")
    parser.add_argument("--misses", action="store_true",
                        help="list the CALIBRATION-split queries the engine gets wrong (eval misses stay unread)")
    args = parser.parse_args()
    entries = load_entries()
    rows = load_queries()
    calibration_rows = [r for r in rows if r["split"] == "calibration"]
    eval_rows = [r for r in rows if r["split"] == "eval"]
    assert not {r["q"] for r in calibration_rows} & {r["q"] for r in eval_rows}, "splits overlap"
    index = Index.build(entries)
    if args.fit:
        fitted = fit(index, calibration_rows)
        retrieval.CALIBRATION.write_text(json.dumps(fitted, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        index = Index.build(entries, calibration=fitted)
        print(f"fitted {retrieval.CALIBRATION.relative_to(ROOT)}: {fitted}")
    print(f"$ python bench/kb_eval.py{' --fit' if args.fit else ''}")
    print(f"knowledge base: {len(entries)} entries; queries: {len(rows)} "
          f"(calibration split {len(calibration_rows)}, eval split {len(eval_rows)}, disjoint; figures on eval)")
    print(f"thresholds: ANSWER_AT={retrieval.ANSWER_AT} RELEVANT_AT={retrieval.RELEVANT_AT} "
          f"CLARIFY_MARGIN={retrieval.CLARIFY_MARGIN}; calibration {index.calibration.get('weights')} "
          f"bias {index.calibration.get('bias')}")
    print_table("eval split, all batches", evaluate(index, eval_rows), baseline(entries, eval_rows))
    for batch in sorted({r.get("batch", 1) for r in eval_rows}):
        subset = [r for r in eval_rows if r.get("batch", 1) == batch]
        print_table(f"eval split, batch {batch} only ({BATCHES.get(batch, '')})", evaluate(index, subset),
                    baseline(entries, subset))
    if args.misses:
        inspectable = [r for r in calibration_rows if r.get("batch", 1) not in UNREAD_BATCHES]
        for q, expect, got in evaluate(index, inspectable)["misses"]:
            print(f"  calibration miss: {q!r} expected {expect} got {got}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
