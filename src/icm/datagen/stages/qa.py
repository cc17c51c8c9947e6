"""Stage Q-A: a text LLM turns an explanation into yes/no, what, how and multiple-choice questions.

JSON with a schema is asked for; where a model writes markdown tables instead, they are parsed.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from icm.datagen.cache import StageCache, cache_key
from icm.datagen.stages.explain import StageResult
from icm.llm import ChatModel, LLMError, parse_json_as
from icm.prompts import render, template_id
from icm.tables import normalise_letter, normalise_yes_no, parse_mc_table, parse_qa_table

DEFAULT_COUNTS = {"yes_no": 3, "what": 2, "how": 1, "multiple_choice": 2}


class Question(BaseModel):
    type: Literal["yes_no", "what", "how"]
    question: str
    answer: str


class Choices(BaseModel):
    A: str
    B: str
    C: str
    D: str


class MultipleChoice(BaseModel):
    question: str
    choices: Choices
    answer: Literal["A", "B", "C", "D"]


class QAAnswer(BaseModel):
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


def explanation_text(explanation: dict[str, Any]) -> str:
    """The explanation as prose: description, implicit content, then each rule's conclusion."""
    parts = [explanation["description"], explanation["implicit_content"]]
    parts += [r["conclusion"] for r in explanation["rules"]]
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
    name = "qa"

    def __init__(self, model: ChatModel, cache: StageCache, counts: dict[str, int] | None = None,
                 max_tokens: int = 768) -> None:
        self.model = model
        self.max_tokens = max_tokens
        self.cache = cache
        self.counts = counts or DEFAULT_COUNTS
        self.template = template_id("qa")
        self._schema = qa_schema(self.counts)

    def run(self, record: dict[str, Any]) -> StageResult:
        text = explanation_text(record["explanation"])
        key = cache_key(stage=self.name, template=self.template, model=self.model.spec, text=text, counts=self.counts)
        cached = self.cache.get(key)
        if cached is not None:
            return StageResult(record=cached if not cached.get("rejected") else None,
                               rejected=cached.get("rejected"), cached=True)
        prompt = render("qa", explanation=text, counts=self.counts)
        try:
            generation = self.model.complete(prompt, schema=self._schema, max_tokens=self.max_tokens)
        except LLMError as exc:
            # A failed call is not an answer: not cached, so --resume asks again.
            return StageResult(record=None, rejected="model error", error=f"{record['image_id']}: {exc}")
        try:
            answer, form = parse_qa_answer(generation.text)
        except ValueError:
            self.cache.put(key, {"rejected": "questions unreadable", "raw": generation.text})
            return StageResult(record=None, rejected="questions unreadable", tokens=generation.tokens)
        questions = []
        for q in answer.questions:
            if q.type == "yes_no":
                yes_no = normalise_yes_no(q.answer)
                q = q.model_copy(update={"answer": f"{yes_no}." if yes_no else q.answer})
            questions.append(q.model_dump())
        result = {
            "image_id": record["image_id"],
            "explanation_text": text,
            "questions": questions,
            "multiple_choice": [m.model_dump() for m in answer.multiple_choice
                                if normalise_letter(m.answer) is not None],
            "form": form,
            "tokens": generation.tokens,
            "model": self.model.spec,
            "prompt": self.template,
        }
        self.cache.put(key, result)
        return StageResult(record=result, tokens=generation.tokens)
