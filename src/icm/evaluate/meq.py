"""MEQ: explanation quality, judged by an LLM against a human reference.

A judge scores a model's explanation against the reference on Accuracy, Preciseness,
Comprehensiveness and Fluency (0-100); the paper's MEQ is the mean Accuracy / 100. Judgements
are made here with any :class:`Judge` (``icm.evaluate.judge.ModelJudge`` for a chat model)
using the versioned prompt ``prompts/judge.v1.jinja`` and a JSON answer, or read from judgements
already made: the release's ``meq_judge/`` text files (reference, explanation and a markdown score
table) or our own JSONL.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, Field, ValidationError
from pydantic.json_schema import SkipJsonSchema

from icm.errors import ModelOutputError
from icm.evaluate.records import EvalInputError, read_text
from icm.jsonl import read_jsonl
from icm.llm import iter_json_objects
from icm.prompts import render, template_id
from icm.validation import describe_validation_error

CRITERIA = ("accuracy", "preciseness", "comprehensiveness", "fluency")
JUDGE_PROMPT = "judge"


class JudgeScores(BaseModel):
    """One judgement: four 0-100 scores and the judge's reason."""

    accuracy: float = Field(ge=0, le=100)
    preciseness: float = Field(ge=0, le=100)
    comprehensiveness: float = Field(ge=0, le=100)
    fluency: float = Field(ge=0, le=100)
    rationale: str = ""
    #: the judge's answer as written, kept for audit (not part of what the judge is asked for)
    raw: SkipJsonSchema[str | None] = Field(None, description="the judge's answer as written, kept for audit")


class JudgeAnswerError(ModelOutputError):
    """A judge answer with neither a valid JSON object nor a readable score table."""


@runtime_checkable
class Judge(Protocol):
    """Scores a candidate explanation against a reference explanation."""

    name: str
    #: the id of the prompt template it asks with (``judge.v1``), None when it uses none of ours
    prompt: str | None

    def judge(self, reference: str, candidate: str) -> JudgeScores: ...


def render_judge_prompt(reference: str, candidate: str, rule: str | None = None,
                        version: int | None = None) -> str:
    """The judge prompt, from the versioned template ``prompts/judge.vN.jinja`` (the newest
    unless ``version`` is given); :func:`judge_prompt_id` names it."""
    return render(JUDGE_PROMPT, version, reference=reference.strip(), candidate=candidate.strip(),
                  rule=rule) + "\n"


def judge_prompt_id(version: int | None = None) -> str:
    """The id (``judge.v1``) of the template :func:`render_judge_prompt` renders."""
    return template_id(JUDGE_PROMPT, version)


_SCORE_LINE = re.compile(
    r"^[\s|*#-]*(accuracy|preciseness|precision|comprehensiveness|fluency)[\s*]*[|:=]\s*\**\s*"
    r"(\d{1,3}(?:\.\d+)?)",
    re.IGNORECASE | re.MULTILINE,
)


def parse_judge_answer(text: str) -> JudgeScores:
    """Read a judge's answer: a JSON object (bare, fenced or inside prose), else a markdown table
    or ``Criterion: score`` lines, the way weaker models answer."""
    json_error = None
    for data in iter_json_objects(text):
        data = {str(k).lower(): v for k, v in data.items()}
        data.pop("raw", None)
        try:
            return JudgeScores.model_validate({**data, "raw": text})
        except ValidationError as exc:
            json_error = json_error or describe_validation_error(exc, "answer")
    found: dict[str, float] = {}
    for match in _SCORE_LINE.finditer(text):
        name = match.group(1).lower()
        name = "preciseness" if name == "precision" else name
        found.setdefault(name, float(match.group(2)))
    if set(found) == set(CRITERIA):
        rationale = _after_table(text)
        try:
            return JudgeScores(**found, rationale=rationale, raw=text)
        except ValidationError as exc:
            raise JudgeAnswerError(f"scores out of range: {describe_validation_error(exc)}", text) from exc
    missing = [c for c in CRITERIA if c not in found]
    reason = json_error or f"no JSON object and no score for {', '.join(missing)}"
    raise JudgeAnswerError(reason, text)


def _after_table(text: str) -> str:
    lines = text.strip().splitlines()
    last = max((i for i, line in enumerate(lines) if line.strip().startswith("|")), default=-1)
    return "\n".join(lines[last + 1 :]).strip()


# -- judgements already made ------------------------------------------------------------------


@dataclass
class MEQJudgement:
    """One image's reference and candidate explanation, and (once judged) the judge's scores."""

    image: str
    reference: str
    candidate: str
    scores: JudgeScores | None = None
    raw: str | None = None  # the judge's answer as written, for audit
    judge: str | None = None
    error: str | None = None
    prompt: str | None = None  # the judge's prompt template id (judge.v1), where it used ours

    def as_dict(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "reference": self.reference,
            "candidate": self.candidate,
            "scores": self.scores.model_dump(exclude={"raw"}) if self.scores else None,
            "raw": self.raw,
            "judge": self.judge,
            "prompt": self.prompt,
            "error": self.error,
        }


_SECTIONS = ("Human content:", "Algorithm content:", "ChatGPT evaluation:")


def parse_release_judgement(text: str, where: str) -> MEQJudgement:
    """One release ``meq_judge`` file: image name, ``Human content:`` (reference), ``Algorithm
    content:`` (the model's explanation) and ``ChatGPT evaluation:`` (a score table)."""
    positions = []
    for section in _SECTIONS:
        index = text.find(section)
        if index == -1:
            raise EvalInputError(f"{where}: no {section!r} section")
        positions.append(index)
    if positions != sorted(positions):
        raise EvalInputError(f"{where}: sections out of order (expected {', '.join(_SECTIONS)})")
    image = text[: positions[0]].strip().splitlines()[0].strip() if text[: positions[0]].strip() else ""
    reference = text[positions[0] + len(_SECTIONS[0]) : positions[1]].strip()
    candidate = text[positions[1] + len(_SECTIONS[1]) : positions[2]].strip()
    answer = text[positions[2] + len(_SECTIONS[2]) :].strip()
    try:
        scores = parse_judge_answer(answer)
    except JudgeAnswerError as exc:
        line = text[: positions[2]].count("\n") + 1
        raise EvalInputError(f"{where}:{line}: cannot read the judge's scores: {exc}") from exc
    return MEQJudgement(image or Path(where).stem, reference, candidate, scores, answer, "release")


def load_judgements(path: str | Path) -> list[MEQJudgement]:
    """Judgements from a release folder of ``*.txt`` files, or from our JSONL output."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.txt"))
        if not files:
            raise EvalInputError(f"{path}: no *.txt judgement files")
        return [parse_release_judgement(read_text(f), str(f)) for f in files]
    judgements = []
    for number, row in read_jsonl(path, error=EvalInputError):
        where = f"{path}:{number}"
        try:
            scores = JudgeScores.model_validate(row["scores"]) if row.get("scores") else None
        except ValidationError as exc:
            raise EvalInputError(f"{where}: bad scores: {describe_validation_error(exc, 'scores')}") from exc
        judgements.append(
            MEQJudgement(str(row.get("image", "")), str(row.get("reference", "")),
                      str(row.get("candidate", "")), scores, row.get("raw"), row.get("judge"),
                      row.get("error"), row.get("prompt"))
        )
    if not judgements:
        raise EvalInputError(f"{path}: no judgements")
    return judgements


def load_pairs(path: str | Path) -> list[MEQJudgement]:
    """Explanations to judge: JSONL ``{"image", "reference", "candidate"}`` or a release folder."""
    path = Path(path)
    if path.is_dir():
        return [MEQJudgement(j.image, j.reference, j.candidate) for j in load_judgements(path)]
    pairs = []
    for number, row in read_jsonl(path, error=EvalInputError):
        where = f"{path}:{number}"
        missing = [k for k in ("reference", "candidate") if not str(row.get(k) or "").strip()]
        if missing:
            raise EvalInputError(f"{where}: missing {', '.join(missing)}")
        pairs.append(MEQJudgement(str(row.get("image") or row.get("id") or f"#{number}"),
                               str(row["reference"]), str(row["candidate"])))
    if not pairs:
        raise EvalInputError(f"{path}: no explanations to judge")
    return pairs


def run_judge(judge: Judge, pairs: Iterable[MEQJudgement], concurrency: int = 1) -> list[MEQJudgement]:
    """Judge every pair, ``concurrency`` at a time, in order; a failed judgement is kept with its
    error (not dropped, not scored)."""

    def one(pair: MEQJudgement) -> MEQJudgement:
        try:
            scores = judge.judge(pair.reference, pair.candidate)
            return MEQJudgement(pair.image, pair.reference, pair.candidate, scores, scores.raw, judge.name,
                             prompt=judge.prompt)
        except JudgeAnswerError as exc:
            return MEQJudgement(pair.image, pair.reference, pair.candidate, None, exc.raw, judge.name,
                             f"unreadable answer: {exc}", judge.prompt)

    with ThreadPoolExecutor(max(1, concurrency), thread_name_prefix="icm-judge") as pool:
        return list(pool.map(one, pairs))


# -- summary ----------------------------------------------------------------------------------


@dataclass
class MEQSummary:
    n: int
    judged: int
    means: dict[str, float | None]
    meq: float | None  # mean accuracy / 100, the paper's MEQ
    failed: int
    reference_metrics: dict[str, float | None] = field(default_factory=dict)
    per_item: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "judged": self.judged,
            "failed": self.failed,
            **{c: self.means[c] for c in CRITERIA},
            "meq": self.meq,
            "reference_metrics": self.reference_metrics,
            "per_item": self.per_item,
        }


def summarise_judgements(judgements: list[MEQJudgement]) -> MEQSummary:
    """Mean of each criterion over the judged items; failures are counted, not averaged in."""
    scored = [j.scores for j in judgements if j.scores is not None]
    means: dict[str, float | None] = {
        c: (sum(getattr(s, c) for s in scored) / len(scored) if scored else None) for c in CRITERIA
    }
    accuracy = means["accuracy"]
    return MEQSummary(
        n=len(judgements),
        judged=len(scored),
        means=means,
        meq=accuracy / 100 if accuracy is not None else None,
        failed=len(judgements) - len(scored),
        per_item=[
            {"image": j.image,
             **(j.scores.model_dump(exclude={"rationale", "raw"}) if j.scores else {}),
             "error": j.error}
            for j in judgements
        ],
    )


def evaluate_meq(
    judgements: list[MEQJudgement], *, lexical: bool = True, embeddings: bool = True
) -> MEQSummary:
    """Judge-score means plus, beside them, the offline reference metrics of each explanation
    (ROUGE-L, BLEU, embedding similarity, repetition); ``lexical=False`` and
    ``embeddings=False`` leave out the ones that need the ``eval`` extra."""
    from icm.evaluate.textmetrics import reference_metrics

    summary = summarise_judgements(judgements)
    pairs, overall = reference_metrics(
        [j.reference for j in judgements], [j.candidate for j in judgements],
        lexical=lexical, embeddings=embeddings,
    )
    summary.reference_metrics = overall
    for item, pair in zip(summary.per_item, pairs, strict=True):
        item.update({k: v for k, v in vars(pair).items() if v is not None})
    return summary
