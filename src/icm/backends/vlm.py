"""What the model backends share: prompts, the explanation schema and its parsing, verdict assembly.

A model backend (transformers, openai, vllm) judges one image in two steps: one Yes/No question per
rule, scored from the first answer token; then, only for the rules ``explain`` selects, one JSON
explanation for the image, validated against :class:`ImageExplanation` and re-asked once.
"""

from __future__ import annotations

import base64
import io
import json
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from icm.backends.base import BackendError, Explain
from icm.errors import ModelOutputError
from icm.media import DecodedImage
from icm.policy.schema import Policy, Rule
from icm.prompts import render, template_id
from icm.results import BackendInfo, Evidence, RuleVerdict, Verdict
from icm.validation import describe_validation_error


class RuleExplanation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rule_id: str = Field(description="the id of the rule")
    criteria_met: list[str] = Field(description="ids of the rule's criteria that hold")
    violates: bool = Field(description="whether the image violates the rule")
    conclusion: str = Field(min_length=1, description="why, citing what is seen")


class ImageExplanation(BaseModel):
    """The JSON answer to the explain prompt; its JSON Schema is what constrained decoding uses."""

    model_config = ConfigDict(extra="forbid")

    description: str = Field(description="what the image shows, objectively")
    implicit_content: str = Field(description="the implied meaning or atmosphere")
    rules: list[RuleExplanation]


def explanation_schema() -> dict[str, Any]:
    return ImageExplanation.model_json_schema()


class ExplanationError(ModelOutputError):
    """A model answer that is not a valid explanation for the rules asked about."""


_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$")


def parse_explanation(text: str, rules: list[Rule]) -> ImageExplanation:
    """Validate a model's JSON answer; the error message is written for the re-ask."""
    body = _FENCE.sub("", text.strip())
    start, end = body.find("{"), body.rfind("}")
    if start < 0 or end <= start:
        raise ExplanationError("the answer holds no JSON object")
    try:
        parsed = ImageExplanation.model_validate_json(body[start : end + 1])
    except ValidationError as exc:
        problems = describe_validation_error(exc, "answer")
        raise ExplanationError(f"the JSON does not match the schema ({problems})") from exc
    by_id = {r.rule_id: r for r in parsed.rules}
    missing = [r.id for r in rules if r.id not in by_id]
    if missing:
        raise ExplanationError(f"no entry in 'rules' for rule ids {missing}")
    for rule in rules:
        known = {c.id for c in rule.criteria}
        unknown = sorted(set(by_id[rule.id].criteria_met) - known)
        if unknown:
            raise ExplanationError(
                f"rule {rule.id} has no criteria {unknown}; its criteria are {sorted(known)}"
            )
    return parsed


class PromptSet:
    """The templates one backend uses, and their ids for the result's backend info."""

    def __init__(self, with_signals: bool) -> None:
        self.verdict = "verdict_with_signals" if with_signals else "verdict"
        self.explain = "explain"

    @property
    def ids(self) -> str:
        return ",".join(template_id(n) for n in (self.verdict, self.explain, "reask"))

    def verdict_prompts(self, policy: Policy, facts: list[str]) -> list[str]:
        """One question per rule, in the policy's order. All share the text up to the rule."""
        return [render(self.verdict, policy=policy, rule=rule, facts=facts) for rule in policy.rules]

    def explain_prompt(self, policy: Policy, rules: list[Rule], facts: list[str]) -> str:
        schema = json.dumps(explanation_schema(), separators=(",", ":"))
        return render(self.explain, policy=policy, rules=rules, facts=facts, schema=schema)

    @staticmethod
    def reask_prompt(error: str) -> str:
        return render("reask", error=error)


class ModelBackend:
    """What every model backend keeps: which rules it explains, the verdict threshold, its prompt
    set and, with ``with_signals``, the local engine's findings to give the model as facts."""

    explain: Explain
    threshold: float
    prompts: PromptSet
    _facts: LocalFacts | None

    def _setup_judging(self, explain: Explain | str, with_signals: bool, threshold: float) -> None:
        if not 0.0 < threshold < 1.0:
            raise BackendError("threshold must lie strictly between 0 and 1")
        self.explain = Explain(explain)
        self.threshold = threshold
        self.prompts = PromptSet(with_signals)
        self._facts = LocalFacts() if with_signals else None

    def prepare(self, policy: Policy) -> None:
        if self._facts is not None:
            self._facts.prepare(policy)


class ModelDirectoryBackend(ModelBackend):
    """``info`` of the backends that load a model directory (transformers, vllm)."""

    name: str
    model_path: str
    adapter_path: Path | None

    def info(self) -> BackendInfo:
        models = {"model": self.model_path, "prompts": self.prompts.ids}
        if self.adapter_path is not None:
            models["adapter"] = str(self.adapter_path)
        return BackendInfo(name=self.name, models=models)


class LocalFacts:
    """The local engine's findings as sentences: the "explicit description" prior at inference."""

    def __init__(self) -> None:
        from icm.backends.local.engine import LocalBackend

        self._engine = LocalBackend()
        self._lock = threading.Lock()

    def prepare(self, policy: Policy) -> None:
        self._engine.prepare(policy)

    def __call__(self, image: DecodedImage, policy: Policy) -> list[str]:
        from icm.backends.local.assess import assess_criterion

        with self._lock:
            observations = self._engine.observe(image, policy)
        facts: list[str] = []
        for rule in policy.rules:
            for criterion in rule.criteria:
                assessment = assess_criterion(criterion, observations)
                if not assessment.holds:
                    continue
                details = ", ".join(_evidence_phrase(e) for e in assessment.evidence)
                fact = f"{criterion.description.rstrip('.')} (detected: {details})."
                if fact not in facts:
                    facts.append(fact)
        return facts


def _evidence_phrase(evidence: Evidence) -> str:
    phrase = evidence.signal or evidence.criterion
    if evidence.text:
        phrase += f' "{evidence.text}"'
    if evidence.score is not None:
        phrase += f" {evidence.score:.2f}"
    return phrase


def verdict_from_probability(rule_id: str, probability: float, threshold: float) -> RuleVerdict:
    """violates when p(violates) > threshold; a non-finite p is ``uncertain``, never ``complies``."""
    if probability != probability:  # NaN
        return RuleVerdict(
            rule_id=rule_id,
            verdict=Verdict.uncertain,
            explanation="The model's answer scores were not finite numbers.",
            raw="non-finite Yes/No logits",
        )
    verdict = Verdict.violates if probability > threshold else Verdict.complies
    return RuleVerdict(rule_id=rule_id, verdict=verdict, probability=round(probability, 4))


def uncertain(rule_id: str, why: str, raw: str | None) -> RuleVerdict:
    """An honest "could not assess", with the model's raw answer kept for audit."""
    return RuleVerdict(rule_id=rule_id, verdict=Verdict.uncertain, explanation=why, raw=raw)


def rules_to_explain(mode: Explain, policy: Policy, verdicts: list[RuleVerdict]) -> list[Rule]:
    if mode is Explain.none:
        return []
    if mode is Explain.all:
        return list(policy.rules)
    wanted = {v.rule_id for v in verdicts if v.verdict is Verdict.violates}
    return [r for r in policy.rules if r.id in wanted]


def explain_with_reask(
    ask: Callable[[list[tuple[str, str]]], str], first_prompt: str, rules: list[Rule]
) -> tuple[ImageExplanation | None, str, str | None]:
    """Ask for the explanation; on an invalid answer re-ask once with the error.

    ``ask`` takes the conversation so far as (role, text) turns (the image goes with the first
    user turn) and returns the model's answer. Returns (explanation or None, the raw answers,
    the last error or None).
    """
    turns = [("user", first_prompt)]
    answers: list[str] = []
    error: str | None = None
    for _attempt in range(2):
        answer = ask(turns)
        answers.append(answer)
        try:
            return parse_explanation(answer, rules), "\n---\n".join(answers), None
        except ExplanationError as exc:
            error = str(exc)
            turns = [*turns, ("assistant", answer), ("user", PromptSet.reask_prompt(error))]
    return None, "\n---\n".join(answers), error


def attach_explanations(
    verdicts: list[RuleVerdict],
    rules: list[Rule],
    explanation: ImageExplanation | None,
    raw: str,
    error: str | None,
) -> None:
    """Write each asked rule's explanation and criteria into its verdict; keep the raw answer.

    The verdict itself stays the scored one. A failed explanation leaves the verdict, says so in
    the explanation and keeps the raw answer for audit.
    """
    asked = {r.id for r in rules}
    for verdict in verdicts:
        if verdict.rule_id not in asked:
            continue
        verdict.raw = raw
        if explanation is None:
            verdict.explanation = f"The model's explanation could not be used: {error}."
            continue
        entry = next(r for r in explanation.rules if r.rule_id == verdict.rule_id)
        verdict.explanation = entry.conclusion
        verdict.evidence = [Evidence(criterion=c) for c in entry.criteria_met]
        scored_violation = verdict.verdict is Verdict.violates
        if verdict.verdict is not Verdict.uncertain and entry.violates != scored_violation:
            verdict.explanation += (
                " (Note: this explanation concludes the opposite of the scored verdict"
                f"{'' if verdict.probability is None else f', p={verdict.probability:.2f}'}.)"
            )


def data_url(frame: np.ndarray, max_side: int, max_bytes: int) -> str:
    """A JPEG data URL of the frame, no longer than ``max_side`` and no larger than ``max_bytes``.

    Oversized frames are scaled down by a quarter at a time until they fit.
    """
    image = Image.fromarray(frame)
    side = min(max_side, max(image.size))
    while True:
        scaled = image.copy()
        scaled.thumbnail((side, side), Image.Resampling.BICUBIC)
        buffer = io.BytesIO()
        scaled.save(buffer, format="JPEG", quality=90)
        encoded = base64.b64encode(buffer.getvalue())
        url_size = len(encoded) + len("data:image/jpeg;base64,")
        if url_size <= max_bytes:
            return "data:image/jpeg;base64," + encoded.decode("ascii")
        if side <= 64:
            raise ValueError(f"the image does not fit in {max_bytes:,} bytes even at {side}px")
        side = max(64, side * 3 // 4)


def chat_messages(turns: list[tuple[str, str]], image_urls: list[str]) -> list[dict[str, Any]]:
    """OpenAI-style chat messages; the images go with the first user turn.

    Without images every message's content is a plain string, which text-only chat templates need.
    """
    messages: list[dict[str, Any]] = []
    for i, (role, text) in enumerate(turns):
        if i == 0 and image_urls:
            content: Any = [{"type": "image_url", "image_url": {"url": u}} for u in image_urls]
            content.append({"type": "text", "text": text})
        else:
            content = text
        messages.append({"role": role, "content": content})
    return messages


def pick_frames(image: DecodedImage, max_frames: int) -> list[np.ndarray]:
    """Up to ``max_frames`` frames of an animated image, evenly spaced (the first always)."""
    frames = image.frames
    if len(frames) <= max_frames:
        return list(frames)
    step = (len(frames) - 1) / max(max_frames - 1, 1)
    return [frames[round(i * step)] for i in range(max_frames)]


def resolve_model_path(path: str) -> tuple[str, Path | None]:
    """(the model to load, the adapter directory or None) for a model or PEFT adapter directory."""
    directory = Path(path).expanduser()
    if not directory.is_dir():
        raise BackendError(f"no model directory at {path!r}")
    adapter_config = directory / "adapter_config.json"
    if not adapter_config.exists():
        return str(directory), None
    base = json.loads(adapter_config.read_text(encoding="utf-8")).get("base_model_name_or_path")
    if not base:
        raise BackendError(f"{adapter_config} names no base_model_name_or_path")
    # A relative base path was relative to wherever training ran; try the adapter's folder too.
    for candidate in (Path(base).expanduser(), directory / base):
        if candidate.is_dir():
            return str(candidate), directory
    return base, directory
