"""Reading predictions, and joining them with labels (:mod:`icm.labels`) into one outcome per label.

Predictions are ModerationResult JSONL as ``icm moderate --out`` writes it; only ``image``,
``verdicts[].rule_id``, ``verdicts[].verdict`` and ``verdicts[].probability`` are required. A
later line for the same image replaces an earlier one (a resumed run re-judges failed images and
appends them).

Every label gets an outcome: ``judged`` (violates or complies), or not covered: ``uncertain``,
``error`` (the image could not be judged) or ``missing`` (no prediction for it at all).
Nothing is dropped silently: a malformed line is an error that names its line.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from icm.errors import InputError
from icm.jsonl import read_jsonl
from icm.labels import ANY_RULE, Label
from icm.validation import describe_validation_error


class EvalInputError(InputError):
    """A labels, predictions or answers file that cannot be read; the message names the line."""


def read_text(path: Path) -> str:
    """A UTF-8 input file's text; one that cannot be read is an EvalInputError."""
    try:
        return path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise EvalInputError(f"{path}: cannot read: {exc}") from exc


class Status(StrEnum):
    judged = "judged"
    uncertain = "uncertain"
    error = "error"
    missing = "missing"


@dataclass(frozen=True)
class Outcome:
    """What the predictions say about one label."""

    label: Label
    status: Status
    predicted: bool | None = None  # violates? only when judged
    probability: float | None = None

    @property
    def covered(self) -> bool:
        return self.status is Status.judged

    @property
    def correct(self) -> bool:
        return self.covered and self.predicted == self.label.violates


# -- the minimal prediction schema: a lenient view of ModerationResult -------------------------


class _VerdictIn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    rule_id: str
    verdict: str = Field(pattern=r"^(violates|complies|uncertain)$")
    probability: float | None = Field(None, ge=0.0, le=1.0)


class _PredictionIn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    image: str = Field(min_length=1)
    verdicts: list[_VerdictIn] = Field(default_factory=list)
    error: dict[str, Any] | None = None


@dataclass(frozen=True)
class Prediction:
    """One image's verdicts, reduced to what evaluation needs."""

    image: str
    verdicts: dict[str, tuple[str, float | None]]  # rule_id -> (verdict, probability)
    error: bool = False

    def outcome(self, label: Label) -> Outcome:
        if self.error:
            return Outcome(label, Status.error)
        if label.rule_id == ANY_RULE:
            return self._image_outcome(label)
        found = self.verdicts.get(label.rule_id)
        if found is None:
            return Outcome(label, Status.missing)
        verdict, probability = found
        if verdict == "uncertain":
            return Outcome(label, Status.uncertain, probability=probability)
        return Outcome(label, Status.judged, verdict == "violates", probability)

    def _image_outcome(self, label: Label) -> Outcome:
        if not self.verdicts:
            return Outcome(label, Status.missing)
        kinds = [v for v, _ in self.verdicts.values()]
        probabilities = [p for _, p in self.verdicts.values()]
        # The image violates when any rule is violated, so its probability is the largest one;
        # it is unknown as soon as one rule has none.
        probability = None if None in probabilities else max(p for p in probabilities if p is not None)
        if "violates" in kinds:
            # An uncertain rule was not measured and cannot lower what a violated rule decided;
            # a violated rule without a probability leaves the image's unknown.
            violated = [p for v, p in self.verdicts.values() if v == "violates"]
            known = [p for v, p in self.verdicts.values() if v != "uncertain" and p is not None]
            probability = None if None in violated else max(known)
            return Outcome(label, Status.judged, True, probability)
        if "uncertain" in kinds:
            return Outcome(label, Status.uncertain, probability=probability)
        return Outcome(label, Status.judged, False, probability)


def load_predictions(path: str | Path) -> dict[str, Prediction]:
    """Read ModerationResult JSONL into ``image -> Prediction`` (a later line for an image wins)."""
    path = Path(path)
    predictions: dict[str, Prediction] = {}
    for number, row in read_jsonl(path, error=EvalInputError):
        try:
            parsed = _PredictionIn.model_validate(row)
        except ValidationError as exc:
            raise EvalInputError(
                f"{path}:{number}: not a moderation result: {describe_validation_error(exc, 'line')}"
            ) from exc
        verdicts: dict[str, tuple[str, float | None]] = {}
        for verdict in parsed.verdicts:
            if verdict.rule_id in verdicts:
                raise EvalInputError(
                    f"{path}:{number}: two verdicts for rule {verdict.rule_id!r} in one result"
                )
            verdicts[verdict.rule_id] = (verdict.verdict, verdict.probability)
        predictions[parsed.image] = Prediction(parsed.image, verdicts, parsed.error is not None)
    return predictions


def check_labels_match(
    labels: Sequence[Label], predictions: dict[str, Prediction], labels_path: str | Path,
    predictions_path: str | Path,
) -> None:
    """Raise on labels that cannot be meant for these predictions: a rule id that no result
    has (a typo, or another policy), or not one labelled image among the results (paths written
    differently). Some missing images are normal (a partial run) and count as not covered."""
    if not labels or not predictions:
        return
    if not any(label.image in predictions for label in labels):
        raise EvalInputError(
            f"{labels_path}: none of its images is in {predictions_path} (labels name "
            f"{labels[0].image!r}, results name {next(iter(predictions))!r}); write the image "
            "paths as the results do"
        )
    known = {rule for p in predictions.values() for rule in p.verdicts}
    if not known:  # no image was judged: nothing to check the rule ids against
        return
    unknown = sorted({label.rule_id for label in labels} - known - {ANY_RULE})
    if unknown:
        raise EvalInputError(
            f"{labels_path}: rule {', '.join(map(repr, unknown))} is in no result of "
            f"{predictions_path} (its rules: {', '.join(sorted(known))}, or * for the image)"
        )


def join(labels: Iterable[Label], predictions: dict[str, Prediction]) -> list[Outcome]:
    """One outcome per label; a label without a prediction is ``missing`` (not covered)."""
    outcomes = []
    for label in labels:
        prediction = predictions.get(label.image)
        outcomes.append(
            prediction.outcome(label) if prediction is not None else Outcome(label, Status.missing)
        )
    return outcomes
