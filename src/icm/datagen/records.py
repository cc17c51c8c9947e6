"""The typed records that flow between the data engine's stages, one per image.

    LabelledImage    --explain-->  ExplainedImage  --filter_explanations-->  ExplainedImage
    ExplainedImage   --qa-->       AnsweredImage   --filter_questions-->     QuestionedImage
    QuestionedImage  --augment-->  list[Sample]    --export-->               the dataset directory

The model stages cache what they produce on disk: an :class:`ExplainedImage` or a
:class:`QuestionSet`, or a :class:`Rejection` when the model's answer could not be used. These
are the JSON objects in ``OUT/cache/<stage>/*.json``; a cached file that no longer validates
(written by an incompatible version) is recomputed, never half-read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from icm.explanation import ImageExplanation
from icm.tables import MCRow, QARow


class LabelledImage(BaseModel):
    """An image that carries only a short label, and the criteria that label stands for."""

    model_config = ConfigDict(frozen=True)

    image_id: str
    path: Path
    label: str
    criteria: tuple[str, ...]


class ExplainedImage(BaseModel):
    """The explain stage's record: the image, its labels under the primary policy, the explanation."""

    image_id: str
    path: str
    label: str
    criteria: list[str]
    sha256: str
    labels: dict[str, bool] = Field(description="rule id -> violated, under the primary policy")
    explanation: ImageExplanation
    attempts: int = Field(description="model calls it took (a refused first answer is asked again once)")
    tokens: int
    model: str
    prompt: str = Field(description="the template id of the prompt that produced it")


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


class QuestionSet(BaseModel):
    """The Q-A stage's record: the questions a text model wrote from one explanation."""

    image_id: str
    explanation_text: str = Field(description="the prose the questions were written from")
    questions: list[Question]
    multiple_choice: list[MultipleChoice]
    form: Literal["json", "markdown"] = Field(description="how the model wrote them")
    tokens: int
    model: str
    prompt: str


class AnsweredImage(BaseModel):
    """An explained image and its questions; ``questions`` is None when the model gave none usable
    (the image still yields its explanation and verdict samples)."""

    image: ExplainedImage
    questions: QuestionSet | None


class QuestionedImage(BaseModel):
    """An explained image and the questions that passed the filter, ready to become samples."""

    image: ExplainedImage
    questions: list[QARow] = Field(default_factory=list)
    choices: list[MCRow] = Field(default_factory=list)


class Rejection(BaseModel):
    """A cached refusal: the model answered, but no answer could be used (asked again only when
    the stage's inputs, prompt or model change). The raw answers are kept for audit."""

    rejected: str
    answers: list[str] = Field(default_factory=list)
