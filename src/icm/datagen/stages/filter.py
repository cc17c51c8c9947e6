"""Stage filter: drop prior leaks, looping or mis-sized explanations and bad questions, by reason."""

from __future__ import annotations

from collections import Counter

from icm.datagen import filters
from icm.datagen.records import AnsweredImage, ExplainedImage, QuestionedImage, QuestionSet
from icm.datagen.stages.base import StageResult
from icm.tables import MCRow, QARow

#: the explanation filter's note: sentences that revealed the prior and were cut
PRIOR_SENTENCES = "prior sentences removed"


def filter_explanation(record: ExplainedImage) -> tuple[ExplainedImage | None, str | None, int]:
    """(the record with leaking sentences removed, or None; the rejection reason; sentences removed)."""
    explanation = record.explanation
    description, removed = filters.remove_prior_leaks(explanation.description)
    implicit, dropped = filters.remove_prior_leaks(explanation.implicit_content)
    removed += dropped
    rules = []
    for entry in explanation.rules:
        conclusion, dropped = filters.remove_prior_leaks(entry.conclusion)
        removed += dropped
        rules.append(entry.model_copy(update={"conclusion": conclusion or entry.conclusion}))
    cleaned = explanation.model_copy(update={"description": description, "implicit_content": implicit,
                                             "rules": rules})
    pieces = [cleaned.description, cleaned.implicit_content, *(r.conclusion for r in cleaned.rules)]
    problem = filters.explanation_problem(pieces)
    if problem is not None:
        return None, problem, removed
    return record.model_copy(update={"explanation": cleaned}), None, removed


def filter_questions(qa: QuestionSet) -> tuple[list[QARow], list[MCRow], Counter[str]]:
    """Questions that are well formed, distinct and answerable from the explanation."""
    reasons: Counter[str] = Counter()
    source = qa.explanation_text
    rows = []
    for q in qa.questions:
        if q.type == "yes_no" and q.answer not in ("Yes.", "No."):
            reasons["yes/no answer is neither yes nor no"] += 1
        elif q.type != "yes_no" and not filters.answerable(q.answer, source):
            reasons["not answerable from the explanation"] += 1
        elif not q.question.strip():
            reasons["empty question"] += 1
        else:
            rows.append(QARow(kind=q.type, question=q.question.strip(), answer=q.answer.strip()))
    kept_qa, problems = filters.qa_problems(rows)
    reasons.update(problems)
    mcs = []
    for m in qa.multiple_choice:
        if m.question.strip():
            mcs.append(MCRow(question=m.question.strip(), choices=m.choices.model_dump(), answer=m.answer))
        else:
            reasons["empty question"] += 1
    kept_mc, problems = filters.mc_problems(mcs)
    reasons.update(problems)
    return kept_qa, kept_mc, reasons


class ExplanationFilter:
    name = "filter_explanations"
    calls_model = False

    def run(self, item: ExplainedImage) -> StageResult[ExplainedImage]:
        cleaned, problem, removed = filter_explanation(item)
        return StageResult(record=cleaned, rejected=problem, notes=Counter({PRIOR_SENTENCES: removed}))


class QuestionFilter:
    """Counts questions, not images: an image whose questions are all rejected still goes on."""

    name = "filter_questions"
    calls_model = False

    def run(self, item: AnsweredImage) -> StageResult[QuestionedImage]:
        if item.questions is None:
            return StageResult(record=QuestionedImage(image=item.image), inputs=0, outputs=0)
        questions, choices, reasons = filter_questions(item.questions)
        asked = len(item.questions.questions) + len(item.questions.multiple_choice)
        return StageResult(record=QuestionedImage(image=item.image, questions=questions, choices=choices),
                           inputs=asked, outputs=len(questions) + len(choices), rejections=reasons)
