"""What the learning loop is worth: accuracy on fresh questions after agents save the robot's misses as variants.

    python bench/kb_learning.py

Run from the project root with the project's venv active. A simulation in memory, over the same data as
``bench/kb_eval.py``: the calibration split of ``tests/data/kb_queries.jsonl`` plays the questions staff ask, one
batch a "week" (batches 1–5); after each week every covered question the robot did not settle on its entry by
itself (answered wrong, asked back about another entry, declined, handed off) is saved by an agent as a variant of
the right entry — what ``knowledge.learning.save_reply(kind="variant")`` does from the console in one action. The
index is rebuilt with the shipped calibration (a site does not refit it) and scored on the eval split, which no
week ever sees. Uncovered questions teach nothing here: they need a new entry, with an answer only a person writes.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from kb_eval import decide, evaluate, load_entries, load_queries  # noqa: E402

from knowledge.retrieval import Index  # noqa: E402


def main() -> int:
    entries = load_entries()
    rows = load_queries()
    eval_rows = [r for r in rows if r["split"] == "eval"]
    weeks = sorted({r.get("batch", 1) for r in rows if r["split"] == "calibration"})
    print("$ python bench/kb_learning.py")
    print(f"knowledge base: {len(entries)} entries, {sum(len(e.variants) for e in entries)} variants; "
          f"eval split {len(eval_rows)} questions (never learnt from)")
    print(f"{'after':<28}{'saved':>6}{'covered':>9}{'lay':>8}{'decline':>9}{'wrong':>8}")
    index = Index.build(entries)
    saved_total = 0

    def line(label: str) -> None:
        result = evaluate(index, eval_rows)
        print(f"{label:<28}{saved_total:>6}{result['covered'][0]:>9.1%}{result['lay'][0]:>8.1%}"
              f"{result['decline'][0]:>9.1%}{result['covered_wrong_answer'][0]:>8.1%}")

    line("the shipped knowledge base")
    by_id = {e.id: i for i, e in enumerate(entries)}
    for week in weeks:
        asked = [r for r in rows if r["split"] == "calibration" and r.get("batch", 1) == week
                 and r["expect"] not in ("decline", "handoff")]
        missed = [r for r in asked if decide(index, r["q"]) != ("answer", r["expect"])]
        for r in missed:
            i = by_id[r["expect"]]
            if r["q"] not in entries[i].variants:
                entries[i] = replace(entries[i], variants=(*entries[i].variants, r["q"]))
        saved_total += len(missed)
        index = Index.build(entries)
        line(f"week {week} ({len(asked)} asked)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
