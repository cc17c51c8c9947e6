"""Stage Q-A: a text LLM turns an explanation into yes/no, what, how and multiple-choice questions.

JSON with a schema is asked for; where a model writes markdown tables instead, they are parsed.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from icm.datagen.cache import StageCache, cache_key
from icm.datagen.config import DEFAULT_COUNTS
from icm.datagen.records import (
    AnsweredImage,
    Choices,
    ExplainedImage,
    MultipleChoice,
    Question,
    QuestionSet,
    Rejection,
)
from icm.datagen.stages.base import StageResult
from icm.explanation import ImageExplanation
from icm.llm import ChatModel, LLMError, parse_json_as
from icm.prompts import render, template_id
from icm.tables import normalise_letter, normalise_yes_no, parse_mc_table, parse_qa_table


class QAAnswer(BaseModel):
    """The model's answer, as asked for (JSON) or read from its markdown tables."""

    questions: list[Question] = Field(default_factory=list)
    multiple_choice: list[MultipleChoice] = Field(default_factory=list)


def qa_schema(counts: dict[str, int], max_chars: int = 200) -> dict[str, Any]:
    """The answer's JSON Schema, bounded so that constrained decoding always finishes."""
    text = {"type": "string", "maxLength": max_chars}
    open_questions = counts.get("yes_no", 0) + counts.get("what", 0) + counts.get("how", 0)
    return {
        "type": "object",
        "properties": {
            "questions": {
                "type": "array",
                "maxItems": open_questions,
                "items": {
                    "type": "object",
                    "properties": {"type": {"enum": ["yes_no", "what", "how"]}, "question": text, "answer": text},
                    "required": ["type", "question", "answer"],
                },
            },
            "multiple_choice": {
                "type": "array",
                "maxItems": counts.get("multiple_choice", 0),
                "items": {
                    "type": "object",
                    "properties": {
                        "question": text,
                        "choices": {"type": "object", "properties": {k: text for k in "ABCD"},
                                    "required": list("ABCD")},
                        "answer": {"enum": list("ABCD")},
                    },
                    "required": ["question", "choices", "answer"],
                },
            },
        },
        "required": ["questions", "multiple_choice"],
    }


def explanation_text(explanation: ImageExplanation) -> str:
    """The explanation as prose: description, implicit content, then each rule's conclusion."""
    parts = [explanation.description, explanation.implicit_content]
    parts += [r.conclusion for r in explanation.rules]
    return " ".join(p.strip() for p in parts if p and p.strip())


def parse_qa_answer(text: str) -> tuple[QAAnswer, str]:
    """(answer, "json" | "markdown"); raises ValueError when neither form can be read."""
    try:
        return parse_json_as(text, QAAnswer), "json"
    except ValueError:
        pass
    qa, mc = parse_qa_table(text), parse_mc_table(text)
    if not qa.qa and not mc.mc:
        raise ValueError("neither JSON nor a markdown question table")
    answer = QAAnswer(
        questions=[Question(type=r.kind, question=r.question, answer=r.answer) for r in qa.qa],
        multiple_choice=[
            MultipleChoice(question=r.question, choices=Choices(**r.choices), answer=r.answer)
            for r in mc.mc
        ],
    )
    return answer, "markdown"


class QAStage:
    """Questions about one explained image. An image whose questions fail goes on without them."""

    name = "qa"
    calls_model = True

    def __init__(self, model: ChatModel, cache: StageCache, counts: dict[str, int] | None = None,
                 max_tokens: int = 768) -> None:
        self.model = model
        self.max_tokens = max_tokens
        self.cache = cache
        self.counts = counts or DEFAULT_COUNTS
        self.template = template_id("qa")
        self._schema = qa_schema(self.counts)

    def run(self, record: ExplainedImage) -> StageResult[AnsweredImage]:
        text = explanation_text(record.explanation)
        key = cache_key(stage=self.name, template=self.template, model=self.model.spec, text=text, counts=self.counts)
        unanswered = AnsweredImage(image=record, questions=None)
        cached = self.cache.get(key, QuestionSet)
        if isinstance(cached, Rejection):
            return StageResult(record=unanswered, rejected=cached.rejected, cached=True)
        if cached is not None:
            return StageResult(record=AnsweredImage(image=record, questions=cached), cached=True)
        prompt = render("qa", explanation=text, counts=self.counts)
        try:
            generation = self.model.complete(prompt, schema=self._schema, max_tokens=self.max_tokens)
        except LLMError as exc:
            # A failed call is not an answer: not cached, so --resume asks again.
            return StageResult(record=unanswered, rejected="model error", error=f"{record.image_id}: {exc}")
        try:
            answer, form = parse_qa_answer(generation.text)
        except ValueError:
            self.cache.put(key, Rejection(rejected="questions unreadable", answers=[generation.text]))
            return StageResult(record=unanswered, rejected="questions unreadable", tokens=generation.tokens)
        questions = []
        for q in answer.questions:
            if q.type == "yes_no":
                yes_no = normalise_yes_no(q.answer)
                q = q.model_copy(update={"answer": f"{yes_no}." if yes_no else q.answer})
            questions.append(q)
        result = QuestionSet(
            image_id=record.image_id,
            explanation_text=text,
            questions=questions,
            multiple_choice=[m for m in answer.multiple_choice if normalise_letter(m.answer) is not None],
            form=form,
            tokens=generation.tokens,
            model=self.model.spec,
            prompt=self.template,
        )
        self.cache.put(key, result)
        return StageResult(record=AnsweredImage(image=record, questions=result), tokens=generation.tokens)
