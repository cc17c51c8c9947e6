"""Request and response bodies of the HTTP API: the native API (the CLI's ModerationResult plus its
stored id) and the OpenAI-compatible Moderations and Decisions shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from icm.backends.base import Explain
from icm.dsa import SourceType, StatementFacts
from icm.results import ModerationResult


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- errors -------------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    code: str = Field(description="machine-readable: bad_input, unauthorized, too_large, truncated ...")
    message: str
    type: str = Field(description="the error's branch: input_error, model_error, model_output, server_error")
    request_id: str | None = None
    result_id: str | None = Field(None, description="the stored error record, when one was written")


class ErrorBody(BaseModel):
    """Every error answer (OpenAI's shape: the openai client reads error.message)."""

    error: ErrorDetail


# -- native API ---------------------------------------------------------------------------------


class ModerateRequest(_Request):
    """``POST /v1/moderate`` as JSON (the other form is a multipart upload with the same fields)."""

    image: str = Field(description="the image as a data URL: data:image/png;base64,...")
    policy: str | None = Field(None, description="policy id or id@version; default: the first served")
    rules: list[str] | None = Field(None, description="judge only these rules of the policy")
    explain: Explain = Field(
        Explain.all, description="which rules' explanations the answer carries: all, violations, none"
    )
    fresh: bool = Field(False, description="judge again even if this image was judged before")
    source: SourceType | None = Field(
        None, description="where the case came from, for its DSA statement of reasons: voluntary (default: the "
        "platform's own initiative), article_16 (a notice), trusted_flagger, other_notification; a source other "
        "than voluntary is judged afresh and stored on its own",
    )
    dsa: StatementFacts | None = Field(
        None, description="facts for the DSA statement of reasons (territorial scope, account type, language, "
        "upload date, who sent the notice); the service's settings fill in the rest",
    )


class StoredModeration(ModerationResult):
    """The CLI's ModerationResult plus the id it is stored under."""

    id: str = Field(description="stored result id, for GET /v1/results/{id}")


class ResultPage(BaseModel):
    data: list[StoredModeration]
    next: str | None = Field(None, description="pass as ?after= for the next page; null on the last")


class PolicyVersionInfo(BaseModel):
    version: int
    created_at: datetime
    created_by: str | None = None


class PolicySummary(BaseModel):
    id: str
    name: str
    latest: int
    versions: list[PolicyVersionInfo]
    rules: list[str]


class PolicyList(BaseModel):
    data: list[PolicySummary]
    default: str


# -- OpenAI Moderations ---------------------------------------------------------------------------


class ImageUrl(BaseModel):
    url: str


class ModerationImageInput(BaseModel):
    type: Literal["image_url"]
    image_url: ImageUrl


class ModerationTextInput(BaseModel):
    type: Literal["text"]
    text: str


class ModerationsRequest(BaseModel):
    """``client.moderations.create(model=POLICY, input=[{"type": "image_url", ...}])``."""

    model_config = ConfigDict(extra="allow")

    input: str | list[str] | list[ModerationImageInput | ModerationTextInput]
    model: str | None = Field(None, description="policy id or id@version")


class Moderation(BaseModel):
    flagged: bool = Field(description="the decision is not allow")
    categories: dict[str, bool] = Field(
        description="rule id -> the image violates it; OpenAI category -> a rule mapped to it is violated"
    )
    category_scores: dict[str, float] = Field(
        description="rule id -> probability that it is violated; OpenAI category -> the highest of its rules"
    )
    category_applied_input_types: dict[str, list[str]]
    icm: StoredModeration


class ModerationsResponse(BaseModel):
    id: str
    model: str
    results: list[Moderation]


# -- OpenAI Decisions -----------------------------------------------------------------------------


class DecisionChoice(BaseModel):
    value: str | bool
    description: str | None = None


class DecisionLevel(BaseModel):
    label: str
    description: str | None = None


class DecisionQuestion(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["predicate", "choice", "score"]
    name: str | None = None
    instructions: str | list[dict[str, Any]]
    choices: list[DecisionChoice] | None = Field(None, min_length=2, max_length=255)
    levels: list[DecisionLevel] | None = Field(None, min_length=2, max_length=255)


class DecisionsRequest(BaseModel):
    """``client.decisions.create(model=POLICY, input=[{"role": "user", "content": [...]}],
    questions=[{"type": "predicate", "name": RULE, "instructions": TEXT}])``."""

    model_config = ConfigDict(extra="allow")

    model: str
    input: str | list[dict[str, Any]]
    questions: list[DecisionQuestion] = Field(min_length=1, max_length=400)


class PredicateAnswer(BaseModel):
    type: Literal["predicate"] = "predicate"
    name: str | None
    probability: float


class ChoiceProbability(BaseModel):
    value: str | bool
    probability: float


class ChoiceAnswer(BaseModel):
    type: Literal["choice"] = "choice"
    name: str | None
    choice: str | bool
    confidence: float
    probabilities: list[ChoiceProbability]


class ScoreProbability(BaseModel):
    label: str
    value: int
    probability: float


class ScoreAnswer(BaseModel):
    """``score`` is the probability-weighted level, the levels numbered 0, 1 ... in their order."""

    type: Literal["score"] = "score"
    name: str | None
    score: float
    confidence: float
    probabilities: list[ScoreProbability]


class RefusalAnswer(BaseModel):
    type: Literal["refusal"] = "refusal"
    name: str | None


class InputTokensDetails(BaseModel):
    cache_write_tokens: int = 0
    cached_tokens: int = 0


class OutputTokensDetails(BaseModel):
    reasoning_tokens: int = 0


class Usage(BaseModel):
    """Token counts; icm judges images with its backend, so these are zero unless a model counts."""

    input_tokens: int = 0
    input_tokens_details: InputTokensDetails = InputTokensDetails()
    output_tokens: int = 0
    output_tokens_details: OutputTokensDetails = OutputTokensDetails()
    total_tokens: int = 0


class DecisionResponse(BaseModel):
    answers: list[PredicateAnswer | ChoiceAnswer | ScoreAnswer | RefusalAnswer]
    model: str
    usage: Usage = Usage()
    icm: StoredModeration


class AppealRequest(_Request):
    """An uploader's appeal of a stored result."""

    result_id: str = Field(description="the `id` of the stored result appealed against")
    text: str = Field(min_length=1, max_length=4000, description="the uploader's reasons, in their words (white "
                      "space around them is dropped; white space alone is refused)")
    source: SourceType | None = Field(
        None, description="a notice against the result (article_16, trusted_flagger, other_notification) rather "
        "than the uploader's own appeal; a person's decision on it is then not automated in its DSA statement",
    )

    @field_validator("text")
    @classmethod
    def _not_blank(cls, text: str) -> str:
        if not text.strip():
            raise ValueError("the appeal's text is empty (only white space): say why the decision is wrong")
        return text.strip()


class AppealState(BaseModel):
    """An appeal; once decided by a reviewer other than the result's own, its final decision and
    statement of reasons."""

    id: str
    result_id: str
    text: str
    status: Literal["open", "decided"]
    created_at: datetime
    decision: str | None = None
    statement: str | None = None
    decided_at: datetime | None = None
