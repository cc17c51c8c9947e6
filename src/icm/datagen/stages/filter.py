"""Stage filter: drop prior leaks, looping or mis-sized explanations and bad questions, by reason."""

from __future__ import annotations

from collections import Counter
from typing import Any

from icm.datagen import filters
from icm.tables import MCRow, QARow


def filter_explanation(record: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None, int]:
    """(the record with leaking sentences removed, or None; the rejection reason; sentences removed)."""
    explanation = dict(record["explanation"])
    removed = 0
    for field in ("description", "implicit_content"):
        explanation[field], dropped = filters.remove_prior_leaks(explanation[field])
        removed += dropped
    rules = []
    for entry in explanation["rules"]:
        conclusion, dropped = filters.remove_prior_leaks(entry["conclusion"])
        removed += dropped
        rules.append({**entry, "conclusion": conclusion or entry["conclusion"]})
    explanation["rules"] = rules
    pieces = [explanation["description"], explanation["implicit_content"], *(r["conclusion"] for r in rules)]
    problem = filters.explanation_problem(pieces)
    if problem is not None:
        return None, problem, removed
    return {**record, "explanation": explanation}, None, removed


def filter_questions(qa: dict[str, Any]) -> tuple[list[QARow], list[MCRow], Counter[str]]:
    """Questions that are well formed, distinct and answerable from the explanation."""
    reasons: Counter[str] = Counter()
    source = qa["explanation_text"]
    rows = []
    for q in qa["questions"]:
        if q["type"] == "yes_no" and q["answer"] not in ("Yes.", "No."):
            reasons["yes/no answer is neither yes nor no"] += 1
        elif q["type"] != "yes_no" and not filters.answerable(q["answer"], source):
            reasons["not answerable from the explanation"] += 1
        elif not q["question"].strip():
            reasons["empty question"] += 1
        else:
            rows.append(QARow(kind=q["type"], question=q["question"].strip(), answer=q["answer"].strip()))
    kept_qa, problems = filters.qa_problems(rows)
    reasons.update(problems)
    mcs = [MCRow(question=m["question"].strip(), choices=dict(m["choices"]), answer=m["answer"])
           for m in qa["multiple_choice"] if m["question"].strip()]
    kept_mc, problems = filters.mc_problems(mcs)
    reasons.update(problems)
    return kept_qa, kept_mc, reasons
