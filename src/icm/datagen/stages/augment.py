"""Stage augment: one judged image becomes samples under every rule set of its policy family.

Policy augmentation (as LlavaGuard does): the same image is asked about under each rule set of
the family (``icm-r1`` .. ``icm-r4``) with its label recomputed for each, and under the primary
policy with its violated rules left out (so the answer flips to "complies"). One model trained
on this learns to follow the rules it is given, not one fixed notion of "unsafe".
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from icm.datagen.instructions import instruction, multiple_choice_prompt
from icm.datagen.records import ExplainedImage, QuestionedImage
from icm.datagen.sample import Sample, SampleKind, SampleMeta
from icm.datagen.stages.base import StageResult
from icm.datagen.stages.qa import explanation_text
from icm.policy.categories import policy_labels
from icm.policy.schema import Policy
from icm.prompts.moderation import explain_prompt, verdict_prompt
from icm.tables import MCRow, QARow


def _meta(record: ExplainedImage, kind: SampleKind, policy: Policy, label: bool, **extra: Any) -> SampleMeta:
    return SampleMeta(kind=kind, image_id=record.image_id, category=record.label, policy=policy.id,
                      policy_version=policy.version, label="violates" if label else "complies", **extra)


def explanation_samples(record: ExplainedImage, policy: Policy, image: str, relax: bool) -> list[Sample]:
    labels = record.labels
    explanation = record.explanation
    violated = any(labels.values())
    samples = [
        Sample.single_turn(
            explain_prompt(policy, policy.rules),
            json.dumps(explanation.model_dump(), ensure_ascii=False),
            _meta(record, SampleKind.explanation, policy, violated, extra={"format": "json"}),
            image=image,
        ),
        Sample.single_turn(
            instruction(policy, record.image_id),
            explanation_text(explanation),
            _meta(record, SampleKind.explanation, policy, violated, extra={"format": "text"}),
            image=image,
        ),
    ]
    kept = [r for r in policy.rules if not labels[r.id]]
    if relax and violated and kept:
        relaxed = policy.model_copy(update={"rules": kept})
        answer = explanation.model_copy(update={"rules": [e for e in explanation.rules if not labels[e.rule_id]]})
        samples.append(
            Sample.single_turn(
                explain_prompt(relaxed, kept),
                json.dumps(answer.model_dump(), ensure_ascii=False),
                _meta(record, SampleKind.explanation, policy, False,
                      extra={"format": "json", "augmentation": "relaxed",
                             "dropped_rules": [r.id for r in policy.rules if labels[r.id]]}),
                image=image,
            )
        )
    return samples


def verdict_samples(record: ExplainedImage, family: list[Policy], image: str) -> list[Sample]:
    """One Yes/No sample per rule of every rule set, with the label recomputed under each; the
    question is the one a model backend asks (:func:`icm.prompts.moderation.verdict_prompt`)."""
    samples = []
    for policy in family:
        labels = policy_labels(policy, record.criteria)
        for rule in policy.rules:
            meta = _meta(record, SampleKind.verdict, policy, labels[rule.id], rule_id=rule.id)
            prompt = verdict_prompt(policy, rule)
            samples.append(Sample.single_turn(prompt, "Yes" if labels[rule.id] else "No", meta, image=image))
    return samples


def question_samples(record: ExplainedImage, policy: Policy, image: str, questions: list[QARow],
                     choices: list[MCRow]) -> list[Sample]:
    violated = any(record.labels.values())
    samples = [
        Sample.single_turn(q.question, q.answer, _meta(record, SampleKind(q.kind), policy, violated), image=image)
        for q in questions
    ]
    samples += [
        Sample.single_turn(multiple_choice_prompt(m), m.answer,
                           _meta(record, SampleKind.multiple_choice, policy, violated), image=image)
        for m in choices
    ]
    return samples


class AugmentStage:
    """Every sample of one image: explanations (and the relaxed variant), verdicts under each rule
    set of the family, and its filtered questions. Counts images in, samples out."""

    name = "augment"
    calls_model = False

    def __init__(self, policy: Policy, family: list[Policy], out: Path, relax: bool = True) -> None:
        self.policy = policy
        self.family = family
        self.out = out
        self.relax = relax

    def run(self, item: QuestionedImage) -> StageResult[list[Sample]]:
        record = item.image
        image = os.path.relpath(record.path, self.out)  # the dataset refers to its images relatively
        samples = explanation_samples(record, self.policy, image, self.relax)
        samples += verdict_samples(record, self.family, image)
        samples += question_samples(record, self.policy, image, item.questions, item.choices)
        return StageResult(record=samples, outputs=len(samples))
